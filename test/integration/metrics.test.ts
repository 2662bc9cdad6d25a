/**
 * Metrics (SPEC §6): exact deltas per request, route labels from config
 * names (unmatched under ""), known series at zero from load, and both
 * exposition formats served correctly in any order.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { metricValue, request, startProxy, type TestProxy } from '../helpers/proxy.js';

let upstream: FaultUpstream;
let proxy: TestProxy;

beforeAll(async () => {
  upstream = await startFaultUpstream((_n, req) => {
    if (req.url?.endsWith('/503')) return { kind: 'respond', status: 503 };
    if (req.url?.endsWith('/429')) return { kind: 'respond', status: 429 };
    if (req.url?.endsWith('/404')) return { kind: 'respond', status: 404 };
    return { kind: 'respond', body: 'ok' };
  });
  proxy = await startProxy(`version: 1
# One attempt per request: retries have their own tests.
defaults: { retry: { maxRetries: 0 } }
upstreams:
  api: { url: "${upstream.url}" }
routes:
  - { name: payments, match: { pathPrefix: /pay }, upstream: api }
  - { name: search, match: { pathPrefix: /search }, upstream: api }
`);
});

afterAll(async () => {
  await proxy.close();
  await upstream.close();
});

const value = (name: string, labels: Record<string, string>) => metricValue(proxy.metrics, name, labels);

describe('metrics', () => {
  it('creates the known series at zero when the config loads', async () => {
    expect(
      await value('breakwater_upstream_attempts_total', { route: 'search', upstream: 'api', outcome: 'timeout' }),
    ).toBe(0);
    const text = (await request(`${proxy.adminUrl}/metrics`)).text;
    expect(text).toContain('breakwater_upstream_attempts_total{route="search",upstream="api",outcome="reset"} 0');
    expect(text).toContain('breakwater_retries_total{route="payments",reason="http_5xx"} 0');
    expect(text).toContain('breakwater_errors_total{route="payments",code="UPSTREAM_TIMEOUT"} 0');
    expect(text).toContain('breakwater_circuit_rejections_total{upstream="api"} 0');
    expect(text).toContain('breakwater_config_reloads_total{result="failure"} 0');
  });

  it('counts N requests as +N on the route, method and status sent', async () => {
    const before = await value('breakwater_requests_total', { route: 'payments', method: 'GET', code: '200' });
    const beforePost = await value('breakwater_requests_total', { route: 'payments', method: 'POST', code: '503' });
    for (let i = 0; i < 7; i++) await request(`${proxy.url}/pay/ok`);
    for (let i = 0; i < 3; i++) await request(`${proxy.url}/pay/503`, { method: 'POST', body: 'x' });
    expect(await value('breakwater_requests_total', { route: 'payments', method: 'GET', code: '200' })).toBe(
      before + 7,
    );
    expect(await value('breakwater_requests_total', { route: 'payments', method: 'POST', code: '503' })).toBe(
      beforePost + 3,
    );
  });

  it('counts unmatched requests under route ""', async () => {
    const before = await value('breakwater_requests_total', { route: '', method: 'GET', code: '404' });
    const errorsBefore = await value('breakwater_errors_total', { route: '', code: 'NO_ROUTE' });
    await request(`${proxy.url}/nowhere/1`);
    await request(`${proxy.url}/nowhere/2`);
    expect(await value('breakwater_requests_total', { route: '', method: 'GET', code: '404' })).toBe(before + 2);
    expect(await value('breakwater_errors_total', { route: '', code: 'NO_ROUTE' })).toBe(errorsBefore + 2);
    const text = (await request(`${proxy.adminUrl}/metrics`)).text;
    expect(text).not.toContain('/nowhere');
  });

  it('counts each attempt under its classified outcome', async () => {
    const outcomes = ['success', 'http_5xx', 'http_429', 'http_4xx'] as const;
    const before = await Promise.all(
      outcomes.map((outcome) =>
        value('breakwater_upstream_attempts_total', { route: 'search', upstream: 'api', outcome }),
      ),
    );
    await request(`${proxy.url}/search/ok`);
    await request(`${proxy.url}/search/503`);
    await request(`${proxy.url}/search/429`);
    await request(`${proxy.url}/search/404`);
    await request(`${proxy.url}/search/404`);
    const after = await Promise.all(
      outcomes.map((outcome) =>
        value('breakwater_upstream_attempts_total', { route: 'search', upstream: 'api', outcome }),
      ),
    );
    expect(after.map((v, i) => v - before[i]!)).toEqual([1, 1, 1, 2]);
  });

  it('observes request and attempt durations', async () => {
    const text = (await request(`${proxy.adminUrl}/metrics`)).text;
    expect(text).toMatch(/breakwater_request_duration_seconds_count\{route="search",method="GET"\} [1-9]/);
    expect(text).toMatch(/breakwater_upstream_attempt_duration_seconds_count\{route="search",upstream="api"\} [1-9]/);
  });

  it('serves OpenMetrics when asked, and Prometheus text still names the counters right afterwards', async () => {
    await request(`${proxy.url}/pay/ok`);
    const open = await request(`${proxy.adminUrl}/metrics`, {
      headers: { accept: 'application/openmetrics-text; version=1.0.0' },
    });
    expect(open.headers['content-type']).toMatch(/^application\/openmetrics-text; version=1.0.0/);
    expect(open.text).toContain('# TYPE breakwater_requests counter');
    expect(open.text).toMatch(/^breakwater_requests_total\{route="payments",method="GET",code="200"\} \d+$/m);
    expect(open.text.endsWith('# EOF\n')).toBe(true);
    expect(open.text).not.toMatch(/\n\n/);
    const prom = await request(`${proxy.adminUrl}/metrics`);
    expect(prom.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(prom.text).toContain('# TYPE breakwater_requests_total counter');
    expect(prom.text).toMatch(/^breakwater_requests_total\{route="payments",method="GET",code="200"\} \d+$/m);
    expect(prom.text).not.toMatch(/^breakwater_requests\{/m);
  });

  it('bounds the method label', async () => {
    await request(`${proxy.url}/pay/ok`, { method: 'PURGE' });
    expect(await value('breakwater_requests_total', { route: 'payments', method: 'OTHER', code: '200' })).toBe(1);
  });
});
