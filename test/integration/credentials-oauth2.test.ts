/**
 * OAuth2 client credentials over time (SPEC §18), against a token endpoint
 * of the test's own: a token is renewed `refreshBefore` its expiry (at most
 * half its lifetime) while it still serves, an expired one is never sent,
 * a token endpoint that refuses connections or hangs gives
 * CREDENTIALS_UNAVAILABLE fast, nothing is fetched for 1 s after, and a
 * failover target sends its own credentials, never the upstream's.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { freePort } from '../helpers/net.js';
import { request, startProxy, type TestProxy } from '../helpers/proxy.js';
import { skippingClock } from '../helpers/clock.js';

/** The proxy's clock: token lifetimes pass with `advance`, not by waiting. */
const clock = skippingClock();

let upstream: FaultUpstream;
let second: FaultUpstream;
let proxy: TestProxy;
let tokenServer: http.Server;
let fetches = 0;
/** What the token endpoint does now: answer with a token of this lifetime (s), or hang. */
let mode: { lifetime: number } | 'hang' = { lifetime: 2 };
let deadPort: number;

beforeAll(async () => {
  tokenServer = http.createServer((req, res) => {
    req.resume();
    fetches += 1;
    if (mode === 'hang') return;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({ access_token: `tok-${fetches}-0123456789`, token_type: 'bearer', expires_in: mode.lifetime }),
    );
  });
  await new Promise<void>((resolve) => tokenServer.listen(0, '127.0.0.1', resolve));
  const tokenUrl = `http://127.0.0.1:${(tokenServer.address() as AddressInfo).port}/token`;
  deadPort = await freePort();
  upstream = await startFaultUpstream((_n, req) =>
    req.url?.startsWith('/spread') ? { kind: 'respond', status: 503 } : { kind: 'echo' },
  );
  second = await startFaultUpstream(() => ({ kind: 'echo' }));
  proxy = await startProxy(
    `version: 1
upstreams:
  api:
    url: "${upstream.url}/api"
    credentials: { type: oauth2, tokenUrl: "${tokenUrl}", clientId: bw, clientSecret: { env: SECRET }, clientAuth: body, timeout: 500ms }
  dead:
    url: "${upstream.url}/dead"
    credentials: { type: oauth2, tokenUrl: "http://127.0.0.1:${deadPort}/token", clientId: bw, clientSecret: { env: SECRET } }
  spread:
    url: "${upstream.url}/spread"
    credentials: { type: bearer, secret: { env: PRIMARY } }
    failover:
      - { name: eu, url: "${second.url}/spread", credentials: { type: header, header: x-eu-key, secret: { env: EU } } }
      - { name: bare, url: "${second.url}/bare" }
  chain:
    url: "${upstream.url}/spread-chain"
    failover:
      - name: dead
        url: "${second.url}/chain"
        credentials: { type: oauth2, tokenUrl: "http://127.0.0.1:${deadPort}/token", clientId: bw, clientSecret: { env: SECRET } }
routes:
  - name: chain
    match: { pathPrefix: /chain }
    stripPrefix: true
    upstream: chain
    retry: { maxRetries: 1, retryOn: [gateway-error], backoff: { base: 1ms, max: 2ms } }
  - { name: api, match: { pathPrefix: /api }, stripPrefix: true, upstream: api }
  - { name: dead, match: { pathPrefix: /dead }, stripPrefix: true, upstream: dead }
  - name: spread
    match: { pathPrefix: /spread }
    stripPrefix: true
    upstream: spread
    retry: { maxRetries: 2, retryOn: [gateway-error], backoff: { base: 1ms, max: 2ms } }
`,
    {
      clock,
      env: { SECRET: 'client-secret-0123456789', PRIMARY: 'primary-token-0123456789', EU: 'eu-key-0123456789' },
    },
  );
});

afterAll(async () => {
  await proxy.close();
  await Promise.all([upstream.close(), second.close()]);
  tokenServer.closeAllConnections();
  await new Promise<void>((resolve) => tokenServer.close(() => resolve()));
});

const sent = () => upstream.requests.at(-1)!.headers.authorization;
/** Until the token endpoint was asked `n` times (a renewal runs in the background), at most 2 s. */
async function fetched(n: number): Promise<void> {
  for (let i = 0; i < 200 && fetches < n; i++) await new Promise((resolve) => setTimeout(resolve, 10));
}

describe('OAuth2 tokens over time (SPEC §18)', () => {
  it('renews a token before it expires, while the old one still serves; an expired one is never sent', async () => {
    mode = { lifetime: 2 };
    await request(`${proxy.url}/api/a`);
    expect(fetches).toBe(1);
    expect(sent()).toBe('Bearer tok-1-0123456789');
    // Half of a 2 s lifetime (refreshBefore 30s is capped there): due for renewal, still valid.
    clock.advance(1200);
    await request(`${proxy.url}/api/b`);
    expect(sent()).toBe('Bearer tok-1-0123456789');
    await fetched(2);
    expect(fetches).toBe(2);
    await request(`${proxy.url}/api/c`);
    expect(sent()).toBe('Bearer tok-2-0123456789');
    // Past its whole lifetime: the request waits for a new token rather than send a dead one.
    mode = { lifetime: 1 };
    clock.advance(2100);
    await request(`${proxy.url}/api/d`);
    expect(sent()).toBe('Bearer tok-3-0123456789');
    expect(fetches).toBe(3);
  });

  it('a token endpoint that hangs: CREDENTIALS_UNAVAILABLE after its timeout, then none fetched for 1 s', async () => {
    mode = 'hang';
    clock.advance(1100); // the 1 s token is gone
    const before = fetches;
    const started = Date.now();
    const res = await request(`${proxy.url}/api/hang`);
    expect(res.status).toBe(502);
    expect(res.json<{ code: string; retryable: boolean }>()).toMatchObject({
      code: 'CREDENTIALS_UNAVAILABLE',
      retryable: true,
    });
    expect(Date.now() - started).toBeLessThan(5000);
    const held = await request(`${proxy.url}/api/held`);
    expect(held.json<{ code: string }>().code).toBe('CREDENTIALS_UNAVAILABLE');
    expect(fetches - before).toBe(1);
    expect(upstream.requests.some((r) => r.url === '/api/hang' || r.url === '/api/held')).toBe(false);
    mode = { lifetime: 60 };
    clock.advance(1100);
    const back = await request(`${proxy.url}/api/back`);
    expect(back.status).toBe(200);
    expect(fetches - before).toBe(2);
  });

  it('a token endpoint that refuses connections: CREDENTIALS_UNAVAILABLE at once, counted', async () => {
    const started = Date.now();
    const res = await request(`${proxy.url}/dead/x`);
    expect(res.json<{ code: string }>().code).toBe('CREDENTIALS_UNAVAILABLE');
    expect(Date.now() - started).toBeLessThan(2000);
    const metrics = (await request(`${proxy.adminUrl}/metrics`)).text;
    expect(metrics).toMatch(/breakwater_credential_token_fetches_total\{upstream="dead",result="failure"\} 1/);
    const status = (await request(`${proxy.adminUrl}/status`)).json<{
      upstreams: { name: string; credentials: { error: string | null } }[];
    }>();
    expect(status.upstreams.find((u) => u.name === 'dead')!.credentials.error).toContain('could not be reached');
  });
});

describe('failover targets send their own credentials (SPEC §18, §8.1)', () => {
  it("the primary's bearer, then the target's own header, never the other's", async () => {
    const res = await request(`${proxy.url}/spread/charges`, {
      headers: { authorization: 'Bearer app', 'x-eu-key': 'app' },
    });
    expect(res.status).toBe(200);
    expect(res.headers['x-breakwater-target']).toBe('spread/eu');
    expect(upstream.requests.findLast((r) => r.url === '/spread/charges')!.headers).toMatchObject({
      authorization: 'Bearer primary-token-0123456789',
    });
    const eu = second.requests.findLast((r) => r.url === '/spread/charges')!.headers;
    expect(eu['x-eu-key']).toBe('eu-key-0123456789');
    // The app's own headers of every name any target manages are gone, the primary's credential too.
    expect(eu.authorization).toBeUndefined();
  });

  it('a target whose token cannot be had answers CREDENTIALS_UNAVAILABLE and is not counted as a failover: nothing was sent', async () => {
    const res = await request(`${proxy.url}/chain/x`);
    expect(res.json<{ code: string }>().code).toBe('CREDENTIALS_UNAVAILABLE');
    expect(second.requests.some((r) => r.url.startsWith('/chain'))).toBe(false);
    const metrics = (await request(`${proxy.adminUrl}/metrics`)).text;
    expect(metrics).toMatch(/breakwater_failovers_total\{route="chain",upstream="chain",target="chain\/dead"\} 0\b/);
  });
});
