/**
 * Report mode (SPEC §19.2): a policy decides every request as it would if
 * it enforced, but a request it would hold goes on at once, flagged and
 * counted: rate limits, circuit breakers and pacing here; the forward
 * proxy's allow-lists in egress-callers.test.ts. The requests are sent one after another, faster than the
 * refill, so the count of flags is exact but for the tokens that come back
 * while they are sent (bounded below).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { startRedis } from '../fixtures/redis.js';
import { metricValue, request, startProxy, type TestProxy } from '../helpers/proxy.js';

let api: FaultUpstream;
let down: FaultUpstream;
let spent: FaultUpstream;
let proxy: TestProxy;

beforeAll(async () => {
  api = await startFaultUpstream(() => ({ kind: 'respond', body: 'ok' }));
  down = await startFaultUpstream(() => ({ kind: 'respond', status: 503, body: 'down' }));
  // Every answer says the quota is spent for the next 30 s.
  spent = await startFaultUpstream(() => ({
    kind: 'respond',
    headers: { 'x-ratelimit-limit': '10', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '30' },
    body: 'ok',
  }));
  proxy = await startProxy(`version: 1
upstreams:
  api: { url: "${api.url}" }
  down: { url: "${down.url}", circuitBreaker: { failureRate: 50, minimumRequests: 4, openFor: 30s, maxOpenFor: 30s, hold: 0s, mode: report } }
  spent: { url: "${spent.url}", pacing: { enabled: true, headers: x-ratelimit, resetFormat: delta, maxWait: 1s, mode: report } }
routes:
  - name: paced
    match: { pathPrefix: /paced }
    upstream: spent
    retry: { maxRetries: 0 }
  - name: down
    match: { pathPrefix: /down }
    upstream: down
    retry: { maxRetries: 0 }
  - name: report
    match: { pathPrefix: /report }
    upstream: api
    rateLimit: { rate: 5/s, burst: 5, queue: { size: 0 }, mode: report }
  - name: enforce
    match: { pathPrefix: /enforce }
    upstream: api
    rateLimit: { rate: 5/s, burst: 5, queue: { size: 0 } }
`);
});

afterAll(async () => {
  await proxy.close();
  await api.close();
  await down.close();
  await spent.close();
});

const flagged = (path: string) =>
  proxy
    .accessLogs()
    .filter((line) => (line.path as string).startsWith(path) && (line.flags as string[]).includes('WOULD_RATE_LIMIT'))
    .length;

describe('rate limit in report mode (SPEC §19.2)', () => {
  it('lets 20 requests at 5/s burst 5 all reach the upstream, about 15 of them flagged and counted, none counted as refused', async () => {
    expect(
      await metricValue(proxy.metrics, 'breakwater_policy_reports_total', { route: 'report', policy: 'rate_limit' }),
    ).toBe(0);
    const before = api.requests.length;
    const started = Date.now();
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) statuses.push((await request(`${proxy.url}/report/${i}`)).status);
    const elapsedS = (Date.now() - started) / 1000;
    expect(statuses).toEqual(Array(20).fill(200));
    expect(api.requests.length - before).toBe(20);
    // 5 from the burst, plus those refilled while the 20 went (5 per second): the rest would have been refused.
    const wouldPass = Math.min(20, 5 + Math.ceil(elapsedS * 5));
    const reports = await metricValue(proxy.metrics, 'breakwater_policy_reports_total', {
      route: 'report',
      policy: 'rate_limit',
    });
    expect(reports).toBe(flagged('/report/'));
    expect(reports).toBeGreaterThanOrEqual(20 - wouldPass);
    expect(reports).toBeLessThanOrEqual(15);
    expect(await metricValue(proxy.metrics, 'breakwater_rate_limited_total', { route: 'report' })).toBe(0);
    expect(await metricValue(proxy.metrics, 'breakwater_errors_total', { route: 'report', code: 'RATE_LIMITED' })).toBe(
      0,
    );
  });

  it('enforcing, the same 20 requests are refused past the burst (the same limit, not a looser one)', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) statuses.push((await request(`${proxy.url}/enforce/${i}`)).status);
    expect(statuses.slice(0, 5)).toEqual(Array(5).fill(200));
    expect(statuses.filter((status) => status === 429).length).toBeGreaterThanOrEqual(10);
  });

  it('/status shows each rate limit with its mode', async () => {
    const status = (await request(`${proxy.adminUrl}/status`)).json<{
      routes: { name: string; rateLimit: { mode: string } }[];
    }>();
    expect(status.routes.filter((route) => route.rateLimit).map((route) => [route.name, route.rateLimit.mode])).toEqual(
      [
        ['report', 'report'],
        ['enforce', 'enforce'],
      ],
    );
  });
});

describe('circuit breaker in report mode (SPEC §19.2)', () => {
  it('keeps sending to a failing upstream while /status shows the breaker open; the calls it would refuse are flagged, not counted', async () => {
    expect(
      await metricValue(proxy.metrics, 'breakwater_policy_reports_total', { route: 'down', policy: 'circuit_breaker' }),
    ).toBe(0);
    const before = down.requests.length;
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push((await request(`${proxy.url}/down/${i}`)).status);
    // Every call reached the upstream, and the app saw its 503s, never a CIRCUIT_OPEN.
    expect(statuses).toEqual(Array(12).fill(503));
    expect(down.requests.length - before).toBe(12);
    const status = (await request(`${proxy.adminUrl}/status`)).json<{
      upstreams: { name: string; breaker: { state: string; mode: string } }[];
    }>();
    expect(status.upstreams.find((u) => u.name === 'down')!.breaker).toMatchObject({ state: 'open', mode: 'report' });
    // Four calls opened it; the eight after would have been refused.
    const flagged = proxy
      .accessLogs()
      .filter(
        (line) => (line.path as string).startsWith('/down/') && (line.flags as string[]).includes('WOULD_CIRCUIT_OPEN'),
      ).length;
    expect(flagged).toBe(8);
    expect(
      await metricValue(proxy.metrics, 'breakwater_policy_reports_total', { route: 'down', policy: 'circuit_breaker' }),
    ).toBe(8);
    expect(await metricValue(proxy.metrics, 'breakwater_circuit_rejections_total', { upstream: 'down' })).toBe(0);
    expect(await metricValue(proxy.metrics, 'breakwater_errors_total', { route: 'down', code: 'CIRCUIT_OPEN' })).toBe(
      0,
    );
  });
});

describe('pacing in report mode (SPEC §19.2)', () => {
  it('sends at once what a spent quota would hold past maxWait, flagged and counted, never refused', async () => {
    const before = spent.requests.length;
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await request(`${proxy.url}/paced/${i}`)).status);
    expect(statuses).toEqual(Array(6).fill(200));
    expect(spent.requests.length - before).toBe(6);
    // The first answer announced the quota spent: the five after it would have waited 30 s, past maxWait.
    const flagged = proxy
      .accessLogs()
      .filter((line) => (line.path as string).startsWith('/paced/') && (line.flags as string[]).includes('WOULD_PACE'));
    expect(flagged.length).toBe(5);
    expect(flagged.every((line) => !(line.flags as string[]).includes('PACED'))).toBe(true);
    expect(
      await metricValue(proxy.metrics, 'breakwater_policy_reports_total', { route: 'paced', policy: 'pacing' }),
    ).toBe(5);
    expect(
      await metricValue(proxy.metrics, 'breakwater_shed_total', { route: 'paced', priority: '', reason: 'max_wait' }),
    ).toBe(0);
    const status = (await request(`${proxy.adminUrl}/status`)).json<{
      upstreams: { name: string; pacing: { mode: string }[] }[];
    }>();
    expect(status.upstreams.find((u) => u.name === 'spent')!.pacing[0]!.mode).toBe('report');
  });
});

describe('a shared rate limit in report mode (SPEC §19.2, Redis)', () => {
  it('asks Redis without waiting: the requests past the shared burst are flagged, all sent', async () => {
    const redis = await startRedis();
    const config = `version: 1
redis: { url: "${redis.url}", onError: local }
upstreams: { api: { url: "${api.url}" } }
routes:
  - name: shared
    match: { pathPrefix: /shared }
    upstream: api
    rateLimit: { rate: 1/min, burst: 3, queue: { size: 5, timeout: 5s }, shared: true, mode: report }
`;
    const [a, b] = [await startProxy(config), await startProxy(config)];
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++)
        statuses.push((await request(`${a.url}/shared/${i}`)).status, (await request(`${b.url}/shared/${i}`)).status);
      expect(statuses).toEqual(Array(8).fill(200));
      // One bucket of 3 across both replicas: 5 of the 8 would have waited a minute.
      const reports =
        (await metricValue(a.metrics, 'breakwater_policy_reports_total', { route: 'shared', policy: 'rate_limit' })) +
        (await metricValue(b.metrics, 'breakwater_policy_reports_total', { route: 'shared', policy: 'rate_limit' }));
      expect(reports).toBe(5);
      expect(a.accessLogs().some((line) => (line.flags as string[]).includes('RATE_LIMIT_DEGRADED'))).toBe(false);
    } finally {
      await Promise.all([a.close(), b.close()]);
      await redis.stop();
    }
  });
});
