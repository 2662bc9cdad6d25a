/**
 * Route matching (SPEC §3): order, segment-boundary prefixes, host
 * wildcards, methods, stripPrefix and the route's header edits; NO_ROUTE
 * for the rest.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { expectProblem } from '../helpers/problem.js';
import { request, startProxy, type TestProxy } from '../helpers/proxy.js';

let a: FaultUpstream;
let b: FaultUpstream;
let proxy: TestProxy;

beforeAll(async () => {
  a = await startFaultUpstream(() => ({ kind: 'echo', headers: { 'x-upstream': 'a', 'x-internal': 'secret' } }));
  b = await startFaultUpstream(() => ({ kind: 'echo', headers: { 'x-upstream': 'b' } }));
  proxy = await startProxy(
    `version: 1
upstreams:
  a: { url: "${a.url}" }
  b: { url: "${b.url}/base/" }
routes:
  - name: stripe
    match: { pathPrefix: /stripe }
    stripPrefix: true
    upstream: a
    headers:
      request: { set: { Authorization: "Bearer from-config" }, remove: [X-Debug] }
      response: { set: { X-Served-By: breakwater }, remove: [X-Internal] }
  - name: writes
    match: { pathPrefix: /api, methods: [POST, PUT] }
    upstream: b
  - name: wildcard
    match: { pathPrefix: /api, host: "*.example.com" }
    upstream: a
  - name: exact-host
    match: { host: "api.test:8080" }
    upstream: b
  - name: api
    match: { pathPrefix: /api/ }
    stripPrefix: true
    upstream: b
`,
    { listen: 'serverNames: ["*"]' },
  ); // routing by Host, not the Host check (hostile-clients.test.ts)
});

afterAll(async () => {
  await proxy.close();
  await Promise.all([a.close(), b.close()]);
});

interface Echo {
  url: string;
  method: string;
  headers: Record<string, string>;
}

describe('routing', () => {
  it('matches /stripe and strips the prefix, keeping the query', async () => {
    const res = await request(`${proxy.url}/stripe/v1/charges?limit=3`);
    expect(res.status).toBe(200);
    expect(res.headers['x-upstream']).toBe('a');
    expect(res.json<Echo>().url).toBe('/v1/charges?limit=3');
  });

  it('sends / for the bare prefix', async () => {
    expect((await request(`${proxy.url}/stripe`)).json<Echo>().url).toBe('/');
    expect((await request(`${proxy.url}/stripe?x=1`)).json<Echo>().url).toBe('/?x=1');
  });

  it('does not match /stripey: prefixes end on segment boundaries', async () => {
    const res = await request(`${proxy.url}/stripey/v1`);
    expectProblem(res, 'NO_ROUTE', {
      instance: '/stripey/v1',
      route: null,
      upstream: null,
      attempts: 0,
      detail: /No route matches GET \/stripey\/v1/,
    });
  });

  it('tries routes in order and honours methods', async () => {
    const post = await request(`${proxy.url}/api/things`, { method: 'POST', body: '{}' });
    expect(post.headers['x-upstream']).toBe('b');
    expect(post.json<Echo>().url).toBe('/base/api/things');
    const get = await request(`${proxy.url}/api/things`);
    expect(get.json<Echo>().url).toBe('/base/things'); // falls through to 'api', which strips /api/
  });

  it('matches *.example.com on any subdomain, not the bare domain', async () => {
    const sub = await request(`${proxy.url}/api/x`, { headers: { host: 'eu.api.example.com' } });
    expect(sub.headers['x-upstream']).toBe('a');
    const bare = await request(`${proxy.url}/api/x`, { headers: { host: 'example.com' } });
    expect(bare.headers['x-upstream']).toBe('b');
  });

  it('matches a host pattern with a port exactly', async () => {
    expect((await request(`${proxy.url}/anything`, { headers: { host: 'api.test:8080' } })).headers['x-upstream']).toBe(
      'b',
    );
    const res = await request(`${proxy.url}/anything`, { headers: { host: 'api.test:9090' } });
    expect(res.status).toBe(404);
  });

  it("applies the route's request and response header edits", async () => {
    const res = await request(`${proxy.url}/stripe/x`, {
      headers: { authorization: 'Bearer from-app', 'x-debug': '1' },
    });
    const echo = res.json<Echo>();
    expect(echo.headers.authorization).toBe('Bearer from-config');
    expect(echo.headers['x-debug']).toBeUndefined();
    expect(res.headers['x-served-by']).toBe('breakwater');
    expect(res.headers['x-internal']).toBeUndefined();
  });

  it("sends the upstream's own Host, with the client's in X-Forwarded-Host", async () => {
    const echo = (await request(`${proxy.url}/stripe/x`, { headers: { host: 'app.local:3128' } })).json<Echo>();
    expect(echo.headers.host).toBe(`127.0.0.1:${a.port}`);
    expect(echo.headers['x-forwarded-host']).toBe('app.local:3128');
  });
});
