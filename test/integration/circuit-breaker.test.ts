/**
 * Circuit breakers (SPEC §3 `circuitBreaker`): one per upstream, opening
 * strictly above `failureRate` once `minimumRequests` calls are in the
 * window, refusing at once while open, one probe after `openFor`. Each of
 * opossum's traps named in STYLE.md is pinned here or in the unit test.
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
  for (const candidate of ['closed', 'open', 'half_open']) {
    if ((await metricValue(proxy.metrics, 'breakwater_circuit_state', { upstream, state: candidate })) === 1) return candidate;
  }
  return 'unknown';
};
const send = (path: string) => request(`${proxy.url}${path}`);

describe('circuit breaker', () => {
  it('does not open below minimumRequests, however bad the failure rate', async () => {
    await start('{ failureRate: 50, minimumRequests: 5, openFor: 30s }');
    for (let i = 0; i < 4; i++) expect((await send('/flaky/x')).status).toBe(503);
    expect(flaky.requests).toHaveLength(4);
    expect(await state('flaky')).toBe('closed');
  });

  it('opens only when the failure rate is strictly above failureRate', async () => {
    await start('{ failureRate: 50, minimumRequests: 4, openFor: 30s }');
    status = 200;
    await send('/flaky/a');
    await send('/flaky/b');
    status = 503;
    await send('/flaky/c');
    await send('/flaky/d'); // 2 of 4 failed: 50%, not above it
    expect(await state('flaky')).toBe('closed');
    await send('/flaky/e'); // 3 of 5: 60%
    expect(await state('flaky')).toBe('open');
    expect(await metricValue(proxy.metrics, 'breakwater_circuit_transitions_total', { upstream: 'flaky', to: 'open' })).toBe(1);
  });

  it('counts a response outside failOn as a success (404 never opens it)', async () => {
    await start('{ failureRate: 10, minimumRequests: 3, openFor: 30s }');
    for (let i = 0; i < 10; i++) expect((await send('/flaky/not-found')).status).toBe(404);
    expect(await state('flaky')).toBe('closed');
  });

  it('refuses 50 requests at once while open, the upstream sees none, and other upstreams are unaffected', async () => {
    await start('{ failureRate: 50, minimumRequests: 3, openFor: 30s }');
    for (let i = 0; i < 3; i++) await send('/flaky/x');
    expect(await state('flaky')).toBe('open');
    const seen = flaky.requests.length;
    const rejectionsBefore = await metricValue(proxy.metrics, 'breakwater_circuit_rejections_total', { upstream: 'flaky' });
    const responses = await Promise.all(Array.from({ length: 50 }, (_, i) => send(i % 2 ? '/flaky/x' : '/also/y')));
    for (const res of responses) {
      const body = expectProblem(res, 'CIRCUIT_OPEN', { route: res.json().route as string, upstream: 'flaky', attempts: 0, detail: /Upstream 'flaky' failed 3 of 3 recent calls; calls are refused for \d+ s/ });
      expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(28);
      expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(30);
      expect(body.retryAfterSeconds).toBe(Number(res.headers['retry-after']));
    }
    expect(flaky.requests.length).toBe(seen);
    expect((await metricValue(proxy.metrics, 'breakwater_circuit_rejections_total', { upstream: 'flaky' })) - rejectionsBefore).toBe(50);
    expect(await metricValue(proxy.metrics, 'breakwater_errors_total', { route: 'flaky', code: 'CIRCUIT_OPEN' })).toBe(25);
    const line = proxy.accessLogs().find((entry) => entry.requestId === responses[0]!.headers['x-request-id'])!;
    expect(line.flags).toContain('CIRCUIT_OPEN');
    expect((await send('/healthy/x')).text).toBe('fine');
    expect(await state('healthy')).toBe('closed');
  });

  it('lets one probe through after openFor: a failed probe reopens, a good one closes', async () => {
    await start('{ failureRate: 50, minimumRequests: 2, openFor: 300ms }');
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
    expect(await state('flaky')).toBe('closed');
    expect((await send('/flaky/after')).status).toBe(200);
    expect(flaky.requests.length).toBe(seen + 2);
    const transitions = async (to: string) => metricValue(proxy.metrics, 'breakwater_circuit_transitions_total', { upstream: 'flaky', to });
    expect([await transitions('open'), await transitions('half_open'), await transitions('closed')]).toEqual([2, 2, 1]);
  });

  it('lets only one probe through when many requests arrive half-open', async () => {
    await start('{ failureRate: 50, minimumRequests: 2, openFor: 300ms }');
    await send('/flaky/1');
    await send('/flaky/2');
    await new Promise((resolve) => setTimeout(resolve, 400));
    const seen = flaky.requests.length;
    // The probe takes 300 ms; the other nine arrive while it is in flight.
    const probe = send('/flaky/slow-probe');
    await new Promise((resolve) => setTimeout(resolve, 50));
    const others = await Promise.all(Array.from({ length: 9 }, () => send('/flaky/slow-probe')));
    const responses = [await probe, ...others];
    expect(flaky.requests.length - seen).toBe(1);
    expect(responses.filter((r) => r.status === 200)).toHaveLength(1);
    expect(responses.filter((r) => r.headers['x-breakwater-error'] === 'CIRCUIT_OPEN')).toHaveLength(9);
  });

  it('starts a fresh window when it closes: rejections made while open do not dilute it', async () => {
    await start('{ failureRate: 50, minimumRequests: 4, openFor: 300ms }');
    for (let i = 0; i < 4; i++) await send('/flaky/x');
    expect(await state('flaky')).toBe('open');
    for (let i = 0; i < 40; i++) await send('/flaky/rejected'); // 40 rejections in opossum's window
    await new Promise((resolve) => setTimeout(resolve, 400));
    status = 200;
    await send('/flaky/probe');
    expect(await state('flaky')).toBe('closed');
    status = 503;
    for (let i = 0; i < 4; i++) await send('/flaky/again');
    // 4 of 4 failed since it closed. With the stale window (4 failures + 40
    // rejections + 1 probe + 4 failures) the rate would be 8/49 and it would stay closed.
    expect(await state('flaky')).toBe('open');
  });
});
