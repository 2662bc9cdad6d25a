/**
 * The retry budget is the upstream's (SPEC §3 `retry.budget`, as Envoy keeps
 * it per cluster and GEP-3388 per backend): routes to one failing upstream
 * share one floor of retries, where each route's own budget let N routes
 * retry N times as much.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { metricValue, request, startProxy, type TestProxy } from '../helpers/proxy.js';

describe('retry budget per upstream', () => {
  let down: FaultUpstream;
  let other: FaultUpstream;
  let proxy: TestProxy;

  beforeAll(async () => {
    down = await startFaultUpstream(() => ({ kind: 'respond', status: 503, body: 'down' }));
    other = await startFaultUpstream(() => ({ kind: 'respond', status: 503, body: 'down too' }));
    // A floor of 10 retries per 10 s and no ratio: what the budget allows is exact.
    proxy = await startProxy(`version: 1
defaults:
  retry: { maxRetries: 3, retryOn: ["503"], backoff: { base: 0ms, max: 0ms }, budget: { ratio: 0, minPerSecond: 1 } }
upstreams:
  down: { url: "${down.url}", circuitBreaker: { failureRate: 100, minimumRequests: 1000 } }
  other: { url: "${other.url}", circuitBreaker: { failureRate: 100, minimumRequests: 1000 } }
routes:
  - { name: a, match: { pathPrefix: /a }, upstream: down }
  - { name: b, match: { pathPrefix: /b }, upstream: down }
  - { name: c, match: { pathPrefix: /c }, upstream: other }
`);
  });

  afterAll(async () => {
    await proxy.close();
    await down.close();
    await other.close();
  });

  const retries = async (route: string) =>
    metricValue(proxy.metrics, 'breakwater_retries_total', { route, reason: 'http_5xx' });
  const exhausted = async (route: string) =>
    metricValue(proxy.metrics, 'breakwater_retry_budget_exhausted_total', { route });

  it('lets two routes to one failing upstream retry as much as one would, and another upstream its own', async () => {
    // 20 requests each, interleaved, well within one 10 s window.
    for (let i = 0; i < 20; i++) {
      for (const route of ['a', 'b', 'c']) expect((await request(`${proxy.url}/${route}/x${i}`)).status).toBe(503);
    }
    // One floor (10) for a and b together, not 10 each; c's upstream has its own.
    expect((await retries('a')) + (await retries('b'))).toBe(10);
    expect(await retries('c')).toBe(10);
    expect(down.requests.length).toBe(40 + 10);
    // Three retries each for the first requests, then the budget is spent: every later request's first retry is skipped.
    expect((await exhausted('a')) + (await exhausted('b'))).toBe(40 - 3);
  });
});
