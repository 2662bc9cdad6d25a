/**
 * opossum's own call timeout (10 s by default) is off: a slow attempt is
 * judged by the per-try timer, never failed by the breaker (STYLE.md trap).
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { AttemptResult, RequestContext } from '../../src/policy/context.js';
import { createUpstreamBreaker } from '../../src/policy/circuit-breaker.js';
import { Cancellation } from '../../src/policy/signal.js';
import { createMetrics } from '../../src/observe/metrics.js';
import { classifyStatus } from '../../src/upstream/classify.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('upstream breaker', () => {
  it('does not time out a call itself, however long it takes', async () => {
    vi.useFakeTimers();
    const breaker = createUpstreamBreaker(
      'slow',
      { failureRate: 50, minimumRequests: 1, window: 10_000, openFor: 30_000, failOn: ['5xx', 'timeout'] },
      { metrics: createMetrics({ defaultMetrics: false }), now: () => Date.now() },
    );
    const ctx = { flags: new Set() } as unknown as RequestContext;
    const next = () => new Promise<AttemptResult>((resolve) => setTimeout(() => resolve({ classification: classifyStatus(200) }), 15_000));
    const outcome = breaker.policy.run(ctx, new Cancellation(), next);
    await vi.advanceTimersByTimeAsync(15_000);
    await expect(outcome).resolves.toEqual({ classification: { outcome: 'success', status: 200 } });
    expect(breaker.state()).toBe('closed');
    breaker.close();
  });
});
