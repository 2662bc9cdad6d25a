/**
 * Circuit breakers (SPEC §3 `circuitBreaker`): one per upstream, opening
 * when more than `failureRate` % of the last `minimumRequests` calls failed,
 * refusing at once while open once `hold` is over (`hold: 0s` here, unless a
 * test is about holding), probes after `openFor` that ramp and close it.
 * The state machine on a virtual clock: test/unit/circuit-breaker.test.ts;
 * the defaults against a flaky and a dead upstream: do-no-harm.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { expectProblem } from '../helpers/problem.js';
import { metricValue, request, startProxy, type TestProxy } from '../helpers/proxy.js';

let flaky: FaultUpstream;
let healthy: FaultUpstream;
let proxy: TestProxy;
/** The status the flaky upstream answers with next. */
let status = 503;

async function start(breaker: string): Promise<void> {
  status = 503;
  flaky = await startFaultUpstream((_n, req) => {
    if (req.url === '/not-found') return { kind: 'respond', status: 404 };
    if (req.url === '/slow-probe') return { kind: 'slow-headers', delayMs: 300, status: 200 };
    return { kind: 'respond', status, body: `status ${status}` };
  });
  healthy = await startFaultUpstream(() => ({ kind: 'respond', body: 'fine' }));
  proxy = await startProxy(`version: 1
defaults: { retry: { maxRetries: 0 } }
upstreams:
  flaky: { url: "${flaky.url}", circuitBreaker: ${breaker} }
  healthy: { url: "${healthy.url}", circuitBreaker: ${breaker} }
routes:
  - { name: flaky, match: { pathPrefix: /flaky }, stripPrefix: true, upstream: flaky }
  - { name: flaky-too, match: { pathPrefix: /also }, stripPrefix: true, upstream: flaky }
  - { name: healthy, match: { pathPrefix: /healthy }, upstream: healthy }
`);
}

afterEach(async () => {
  await proxy.close();
  await Promise.all([flaky.close(), healthy.close()]);
});

const state = async (upstream: string) => {
  for (const candidate of ['closed', 'shedding', 'open', 'half_open']) {
    if ((await metricValue(proxy.metrics, 'breakwater_circuit_state', { upstream, state: candidate })) === 1)
      return candidate;
  }
  return 'unknown';
};
const send = (path: string) => request(`${proxy.url}${path}`);

describe('circuit breaker', () => {
  it('does not open below minimumRequests, however bad the failure rate', async () => {
    await start('{ failureRate: 50, minimumRequests: 5, openFor: 30s, hold: 0s }');
    for (let i = 0; i < 4; i++) expect((await send('/flaky/x')).status).toBe(503);
    expect(flaky.requests).toHaveLength(4);
    expect(await state('flaky')).toBe('closed');
  });

  it('opens only when the failure rate is strictly above failureRate', async () => {
    await start('{ failureRate: 50, minimumRequests: 4, openFor: 30s, hold: 0s }');
    status = 200;
    await send('/flaky/a');
    await send('/flaky/b');
    status = 503;
    await send('/flaky/c');
    await send('/flaky/d'); // 2 of the last 4 failed: 50%, not above it
    expect(await state('flaky')).toBe('closed');
    await send('/flaky/e'); // 3 of the last 4: 75%
    expect(await state('flaky')).toBe('open');
    expect(
      await metricValue(proxy.metrics, 'breakwater_circuit_transitions_total', { upstream: 'flaky', to: 'open' }),
    ).toBe(1);
  });

  it('counts a response outside failOn as a success (404 never opens it)', async () => {
    await start('{ failureRate: 10, minimumRequests: 3, openFor: 30s, hold: 0s }');
    for (let i = 0; i < 10; i++) expect((await send('/flaky/not-found')).status).toBe(404);
    expect(await state('flaky')).toBe('closed');
  });

  it('refuses 50 requests at once while open, the upstream sees none, and other upstreams are unaffected', async () => {
    await start('{ failureRate: 50, minimumRequests: 3, openFor: 30s, hold: 0s }');
    for (let i = 0; i < 3; i++) await send('/flaky/x');
    expect(await state('flaky')).toBe('open');
    const seen = flaky.requests.length;
    const rejectionsBefore = await metricValue(proxy.metrics, 'breakwater_circuit_rejections_total', {
      upstream: 'flaky',
    });
    const responses = await Promise.all(Array.from({ length: 50 }, (_, i) => send(i % 2 ? '/flaky/x' : '/also/y')));
    for (const res of responses) {
      const body = expectProblem(res, 'CIRCUIT_OPEN', {
        route: res.json().route as string,
        upstream: 'flaky',
        attempts: 0,
        detail:
          /^Upstream 'flaky' failed 3 of its last 3 calls and has been down for \d+ s; calls are refused for \d+ s, then probed\.$/,
      });
      // openFor 30s, jittered down by at most a quarter.
      expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(21);
      expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(30);
      expect(body.retryAfterSeconds).toBe(Number(res.headers['retry-after']));
    }
    expect(flaky.requests.length).toBe(seen);
    expect(
      (await metricValue(proxy.metrics, 'breakwater_circuit_rejections_total', { upstream: 'flaky' })) -
        rejectionsBefore,
    ).toBe(50);
    expect(await metricValue(proxy.metrics, 'breakwater_errors_total', { route: 'flaky', code: 'CIRCUIT_OPEN' })).toBe(
      25,
    );
    const line = proxy.accessLogs().find((entry) => entry.requestId === responses[0]!.headers['x-request-id'])!;
    expect(line.flags).toContain('CIRCUIT_OPEN');
    expect((await send('/healthy/x')).text).toBe('fine');
    expect(await state('healthy')).toBe('closed');
  });

  it('probes after openFor: a failed probe reopens it, three good ones close it', async () => {
    await start('{ failureRate: 50, minimumRequests: 2, openFor: 300ms, hold: 0s }');
    await send('/flaky/1');
    await send('/flaky/2');
    expect(await state('flaky')).toBe('open');
    await new Promise((resolve) => setTimeout(resolve, 400));
    let seen = flaky.requests.length;
    expect((await send('/flaky/probe-fails')).status).toBe(503);
    expect(flaky.requests.length).toBe(seen + 1);
    expect(await state('flaky')).toBe('open');
    expect((await send('/flaky/refused')).status).toBe(503);
    expect(flaky.requests.length).toBe(seen + 1);
    await new Promise((resolve) => setTimeout(resolve, 400));
    status = 200;
    seen = flaky.requests.length;
    expect((await send('/flaky/probe-works')).status).toBe(200);
    expect(await state('flaky')).toBe('half_open');
    expect((await send('/flaky/probe-2')).status).toBe(200);
    expect((await send('/flaky/probe-3')).status).toBe(200);
    expect(await state('flaky')).toBe('closed');
    expect((await send('/flaky/after')).status).toBe(200);
    expect(flaky.requests.length).toBe(seen + 4);
    const transitions = async (to: string) =>
      metricValue(proxy.metrics, 'breakwater_circuit_transitions_total', { upstream: 'flaky', to });
    expect([await transitions('open'), await transitions('half_open'), await transitions('closed')]).toEqual([2, 2, 1]);
  });

  it('lets three probes through when many requests arrive half-open, and refuses the rest', async () => {
    await start('{ failureRate: 50, minimumRequests: 2, openFor: 300ms, hold: 0s }');
    await send('/flaky/1');
    await send('/flaky/2');
    await new Promise((resolve) => setTimeout(resolve, 400));
    const seen = flaky.requests.length;
    // The probes take 300 ms; the others arrive while they are in flight.
    const probes = Array.from({ length: 3 }, () => send('/flaky/slow-probe'));
    await flaky.waitFor(() => flaky.requests.length - seen === 3);
    const others = await Promise.all(Array.from({ length: 9 }, () => send('/flaky/slow-probe')));
    const responses = [...(await Promise.all(probes)), ...others];
    expect(flaky.requests.length - seen).toBe(3);
    expect(responses.filter((r) => r.status === 200)).toHaveLength(3);
    for (const res of others)
      expectProblem(res, 'CIRCUIT_OPEN', {
        route: 'flaky',
        upstream: 'flaky',
        attempts: 0,
        detail:
          /^Upstream 'flaky' is being probed after failing 2 of its last 2 calls; calls are refused until the probes succeed\.$/,
      });
    expect(await state('flaky')).toBe('closed');
  });

  it('starts a fresh window when it closes: the failures that opened it are gone', async () => {
    await start('{ failureRate: 50, minimumRequests: 4, openFor: 300ms, hold: 0s }');
    for (let i = 0; i < 4; i++) await send('/flaky/x');
    expect(await state('flaky')).toBe('open');
    for (let i = 0; i < 40; i++) await send('/flaky/rejected');
    await new Promise((resolve) => setTimeout(resolve, 400));
    status = 200;
    for (let i = 0; i < 3; i++) await send('/flaky/probe');
    expect(await state('flaky')).toBe('closed');
    status = 503;
    // Three calls since it closed: below minimumRequests, whatever failed
    // before. With the old calls kept, the first of these would reopen it.
    for (let i = 0; i < 3; i++) await send('/flaky/again');
    expect(await state('flaky')).toBe('closed');
    await send('/flaky/again'); // 4 of the last 4
    expect(await state('flaky')).toBe('open');
  });

  it('holds requests that meet a young open circuit and answers them once it recovers', async () => {
    await start('{ failureRate: 50, minimumRequests: 3, openFor: 200ms, hold: 3s }');
    for (let i = 0; i < 3; i++) await send('/flaky/x');
    expect(await state('flaky')).toBe('open');
    const seen = flaky.requests.length;
    const held = Array.from({ length: 10 }, () => send('/flaky/held'));
    await new Promise((resolve) => setTimeout(resolve, 100));
    status = 200; // the blip is over before the first probe
    const responses = await Promise.all(held);
    expect(responses.map((r) => r.status)).toEqual(Array(10).fill(200));
    expect(flaky.requests.length - seen).toBe(10);
    expect(await state('flaky')).toBe('closed');
    expect(await metricValue(proxy.metrics, 'breakwater_circuit_rejections_total', { upstream: 'flaky' })).toBe(0);
  });

  it('sheds part of the calls to a mostly failing upstream, and none to one that answers most of them', async () => {
    let n = 0;
    let ratio = 0.6;
    // Exactly `ratio` of the calls that reach it succeed, evenly spread: never 20 failures in a row.
    flaky = await startFaultUpstream(() => ({ kind: 'respond', status: n++ % 10 < ratio * 10 ? 200 : 503 }));
    healthy = await startFaultUpstream(() => ({ kind: 'respond', body: 'fine' }));
    proxy = await startProxy(`version: 1
defaults: { retry: { maxRetries: 0 } }
upstreams:
  # Opening would need 20 failures in a row: only shedding acts. A 2 s window.
  flaky: { url: "${flaky.url}", circuitBreaker: { failureRate: 99.99, window: 2s } }
routes:
  - { name: flaky, match: { pathPrefix: /flaky }, stripPrefix: true, upstream: flaky }
`);
    /** Sequential requests for `ms` (at least 100): how many, whatever the machine's speed, spans several tenths of the window. */
    const runFor = async (ms: number) => {
      const statuses: string[] = [];
      const started = Date.now();
      while (Date.now() - started < ms || statuses.length < 100) {
        const res = await send('/flaky/x');
        statuses.push(String(res.headers['x-breakwater-error'] ?? res.status));
      }
      return statuses;
    };
    const healthyPhase = await runFor(600);
    expect(healthyPhase.filter((s) => s === 'CIRCUIT_OPEN')).toEqual([]);
    expect(await state('flaky')).toBe('closed');
    ratio = 0.1;
    await new Promise((resolve) => setTimeout(resolve, 2_200)); // the healthy calls leave the window
    const before = flaky.requests.length;
    const failingPhase = await runFor(1_000);
    const shed = failingPhase.filter((s) => s === 'CIRCUIT_OPEN').length;
    // It settles at 1 - 2 x 0.1 = 80 % shed once the first tenth of the window (200 ms) has passed.
    expect(shed / failingPhase.length).toBeGreaterThan(0.4);
    expect(shed / failingPhase.length).toBeLessThan(0.95);
    expect(flaky.requests.length - before).toBe(failingPhase.length - shed);
    expect(await state('flaky')).toBe('shedding');
    expect(await metricValue(proxy.metrics, 'breakwater_circuit_rejections_total', { upstream: 'flaky' })).toBe(shed);
    const line = proxy.accessLogs().findLast((entry) => (entry.flags as string[]).includes('CIRCUIT_OPEN'))!;
    expect(line.status).toBe(503);
  });
});
