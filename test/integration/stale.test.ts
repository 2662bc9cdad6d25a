/**
 * Stale answers (SPEC §8.2) on real sockets: a GET primed with a good
 * answer is answered from it while the upstream fails, and only then;
 * what is never stored, never served, and the bounds of the store.
 */
import http, { type IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, type Behaviour, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { skippingClock, type SkippingClock } from '../helpers/clock.js';
import { expectProblem } from '../helpers/problem.js';
import { metricValue, request, startProxy, type TestProxy } from '../helpers/proxy.js';

/** What the upstream does with each path now: set per test, default a fresh 200. */
const modes = new Map<string, (req: IncomingMessage) => Behaviour>();
let upstream: FaultUpstream;
let proxy: TestProxy;
let clock: SkippingClock;

const fresh = (body: string, headers: Record<string, string> = {}): Behaviour => ({
  kind: 'respond',
  status: 200,
  headers: { 'content-type': 'application/json', ...headers },
  body,
});

beforeAll(async () => {
  upstream = await startFaultUpstream((_n, req) => {
    const path = (req.url ?? '').split('?')[0]!;
    // Many distinct URLs with 1.5 KB bodies: 100 of them would be past maxBytes (64 KiB).
    if (path.startsWith('/gh/many/') && !modes.has(path)) return fresh(JSON.stringify({ path, pad: 'x'.repeat(1500) }));
    return modes.get(path)?.(req) ?? fresh(`{"path":"${req.url}"}`);
  });
  clock = skippingClock();
  proxy = await startProxy(
    `version: 1
defaults:
  retry: { maxRetries: 1, backoff: { base: 1ms, max: 2ms } }
  timeouts: { perTry: 500ms, total: 2s }
upstreams:
  u: { url: "${upstream.url}", circuitBreaker: { failureRate: 100 } }
  breaking: { url: "${upstream.url}", circuitBreaker: { failureRate: 50, minimumRequests: 4, openFor: 30s, maxOpenFor: 30s, hold: 0s } }
routes:
  - name: gh
    match: { pathPrefix: /gh }
    upstream: u
    fallback: { stale: { maxStale: 10m, maxEntries: 100, maxEntryBytes: 2KiB, maxBytes: 64KiB } }
  - name: breaking
    match: { pathPrefix: /breaking }
    upstream: breaking
    fallback: { stale: {} }
  - { name: plain, match: { pathPrefix: /plain }, upstream: u }
  - name: tenant
    match: { pathPrefix: /tenant }
    upstream: u
    keyHeaders: [X-Tenant-Token]
    fallback: { stale: {} }
`,
    { clock },
  );
});

afterAll(async () => {
  await proxy.close();
  await upstream.close();
});

/** Primes `path` with a good answer, then makes the upstream fail it with `failure`. */
async function primeThenFail(path: string, failure: Behaviour, headers: Record<string, string> = {}): Promise<void> {
  modes.set(path, () => fresh(`{"good":"${path}"}`, { etag: '"v1"' }));
  const primed = await request(`${proxy.url}${path}`, { headers });
  expect(primed.status).toBe(200);
  modes.set(path, () => failure);
}

const lastAccess = (path: string) =>
  proxy
    .accessLogs()
    .filter((line) => line.path === path)
    .at(-1)!;

describe('stale answers', () => {
  it.each([
    // Attempts: the default retryOn retries 5xx and resets, not timeouts.
    ['a 503', { kind: 'respond', status: 503, body: 'down' } as Behaviour, 'UPSTREAM_UNAVAILABLE', undefined, 2],
    ['a reset', { kind: 'reset' } as Behaviour, 'UPSTREAM_RESET', 'UPSTREAM_RESET', 2],
    ['a timeout', { kind: 'hang' } as Behaviour, 'UPSTREAM_TIMEOUT', 'UPSTREAM_TIMEOUT', 1],
  ])(
    'answers a GET with the stored body after %s, with Age and the fallback header',
    async (_name, failure, reason, flag, attempts) => {
      const path = `/gh/repos/${reason.toLowerCase()}`;
      await primeThenFail(path, failure);
      clock.advance(5_000);
      const before = await metricValue(proxy.metrics, 'breakwater_fallbacks_total', { route: 'gh', reason });
      const res = await request(`${proxy.url}${path}`);
      expect(res.status).toBe(200);
      expect(res.json()).toEqual({ good: path });
      expect(res.headers['x-breakwater-fallback']).toBe('stale');
      expect(res.headers.etag).toBe('"v1"');
      expect(Number(res.headers.age)).toBeGreaterThanOrEqual(5);
      expect(res.headers['x-breakwater-attempts']).toBe(String(attempts));
      expect(res.headers['x-breakwater-target']).toBe('u');
      expect(await metricValue(proxy.metrics, 'breakwater_fallbacks_total', { route: 'gh', reason })).toBe(before + 1);
      const line = lastAccess(path);
      expect(line.status).toBe(200);
      expect(line.flags).toContain('STALE');
      if (flag) expect(line.flags).toContain(flag);
    },
  );

  it('answers stale when the upstream refuses connections', async () => {
    const gone = await startFaultUpstream(() => fresh('{"from":"gone"}'));
    const refusing = await startProxy(
      `version: 1
upstreams: { g: { url: "${gone.url}", circuitBreaker: { failureRate: 100 } } }
routes:
  - { name: g, upstream: g, fallback: { stale: {} } }
`,
    );
    try {
      expect((await request(`${refusing.url}/item`)).status).toBe(200);
      await gone.close();
      const res = await request(`${refusing.url}/item`);
      expect(res.status).toBe(200);
      expect(res.json()).toEqual({ from: 'gone' });
      expect(res.headers['x-breakwater-fallback']).toBe('stale');
      expect(
        await metricValue(refusing.metrics, 'breakwater_fallbacks_total', {
          route: 'g',
          reason: 'UPSTREAM_CONNECT_FAILED',
        }),
      ).toBe(1);
    } finally {
      await refusing.close();
    }
  });

  it('answers stale for an answer a provider rule treats as a 503 (Anthropic 529)', async () => {
    const path = '/gh/overloaded';
    await primeThenFail(path, {
      kind: 'respond',
      status: 529,
      body: '{"type":"error","error":{"type":"overloaded_error"}}',
    });
    const res = await request(`${proxy.url}${path}`);
    expect(res.status).toBe(200);
    expect(res.headers['x-breakwater-fallback']).toBe('stale');
    expect(lastAccess(path).flags).toEqual(expect.arrayContaining(['STALE', 'PROVIDER_RULE']));
  });

  it('answers a HEAD from the GET entry, without a body', async () => {
    const path = '/gh/head';
    await primeThenFail(path, { kind: 'respond', status: 502 });
    const res = await request(`${proxy.url}${path}`, { method: 'HEAD' });
    expect(res.status).toBe(200);
    expect(res.headers['x-breakwater-fallback']).toBe('stale');
    expect(res.body.length).toBe(0);
  });

  it('answers stale when the breaker is open (the upstream sees nothing)', async () => {
    const path = '/breaking/x';
    await primeThenFail(path, { kind: 'respond', status: 503 });
    // Failing calls open the breaker; each answered stale meanwhile.
    for (let i = 0; i < 4; i++)
      expect((await request(`${proxy.url}${path}`)).headers['x-breakwater-fallback']).toBe('stale');
    const seen = upstream.requests.length;
    const res = await request(`${proxy.url}${path}`);
    expect(upstream.requests.length).toBe(seen);
    expect(res.status).toBe(200);
    expect(res.headers['x-breakwater-fallback']).toBe('stale');
    expect(lastAccess(path).flags).toEqual(expect.arrayContaining(['STALE', 'CIRCUIT_OPEN']));
    expect(
      await metricValue(proxy.metrics, 'breakwater_fallbacks_total', { route: 'breaking', reason: 'CIRCUIT_OPEN' }),
    ).toBeGreaterThanOrEqual(1);
  });

  it('never answers a POST stale', async () => {
    const path = '/gh/post';
    await primeThenFail(path, { kind: 'respond', status: 503, body: 'down' });
    const res = await request(`${proxy.url}${path}`, { method: 'POST', body: '{}' });
    expect(res.status).toBe(503);
    expect(res.text).toBe('down');
    expect(res.headers['x-breakwater-fallback']).toBeUndefined();
  });

  it("never gives one caller's answer to another Authorization", async () => {
    const path = '/gh/private';
    await primeThenFail(path, { kind: 'reset' }, { authorization: 'Bearer alice' });
    const bob = await request(`${proxy.url}${path}`, { headers: { authorization: 'Bearer bob' } });
    expectProblem(bob, 'UPSTREAM_RESET', { route: 'gh', upstream: 'u', attempts: 2 });
    const anonymous = await request(`${proxy.url}${path}`);
    expect(anonymous.status).toBe(502);
    const alice = await request(`${proxy.url}${path}`, { headers: { authorization: 'Bearer alice' } });
    expect(alice.status).toBe(200);
    expect(alice.headers['x-breakwater-fallback']).toBe('stale');
  });

  it('matches the headers the answer varies on', async () => {
    const path = '/gh/vary';
    modes.set(path, () => fresh('{"lang":"en"}', { vary: 'Accept-Language' }));
    expect((await request(`${proxy.url}${path}`, { headers: { 'accept-language': 'en' } })).status).toBe(200);
    modes.set(path, () => ({ kind: 'reset' }));
    expect((await request(`${proxy.url}${path}`, { headers: { 'accept-language': 'de' } })).status).toBe(502);
    expect(
      (await request(`${proxy.url}${path}`, { headers: { 'accept-language': 'en' } })).headers['x-breakwater-fallback'],
    ).toBe('stale');
  });

  it.each([
    ['Cache-Control: no-store', { 'cache-control': 'no-store' }],
    ['Cache-Control: private', { 'cache-control': 'private, max-age=60' }],
    ['Set-Cookie', { 'set-cookie': 'session=1' }],
    ['Vary: *', { vary: '*' }],
  ])('never stores an answer with %s', async (_name, headers) => {
    const path = `/gh/never/${Object.keys(headers)[0]}`;
    modes.set(path, () => fresh('{"x":1}', headers));
    expect((await request(`${proxy.url}${path}`)).status).toBe(200);
    modes.set(path, () => ({ kind: 'reset' }));
    expect((await request(`${proxy.url}${path}`)).status).toBe(502);
  });

  it('never answers stale a request that says Cache-Control: no-cache', async () => {
    const path = '/gh/no-cache';
    await primeThenFail(path, { kind: 'reset' });
    expect((await request(`${proxy.url}${path}`, { headers: { 'cache-control': 'no-cache' } })).status).toBe(502);
    expect((await request(`${proxy.url}${path}`)).status).toBe(200);
  });

  it('does not serve an answer older than maxStale, nor past its stale-if-error', async () => {
    const path = '/gh/old';
    await primeThenFail(path, { kind: 'reset' });
    clock.advance(11 * 60_000);
    expect((await request(`${proxy.url}${path}`)).status).toBe(502);
    const capped = '/gh/stale-if-error';
    modes.set(capped, () => fresh('{"capped":true}', { 'cache-control': 'max-age=0, stale-if-error=60' }));
    await request(`${proxy.url}${capped}`);
    modes.set(capped, () => ({ kind: 'reset' }));
    clock.advance(30_000);
    expect((await request(`${proxy.url}${capped}`)).status).toBe(200);
    clock.advance(31_000);
    expect((await request(`${proxy.url}${capped}`)).status).toBe(502);
  });

  it('passes an upstream 404 through, never a stale answer', async () => {
    const path = '/gh/gone';
    await primeThenFail(path, { kind: 'respond', status: 404, body: 'not found' });
    const res = await request(`${proxy.url}${path}`);
    expect(res.status).toBe(404);
    expect(res.text).toBe('not found');
  });

  it('drops an answer whose body broke off, and one larger than maxEntryBytes', async () => {
    const cut = '/gh/cut';
    modes.set(cut, () => ({ kind: 'close-mid-body', body: '{"partial":', contentLength: 100 }));
    await request(`${proxy.url}${cut}`).catch(() => undefined);
    modes.set(cut, () => ({ kind: 'reset' }));
    expect((await request(`${proxy.url}${cut}`)).status).toBe(502);
    const big = '/gh/big';
    modes.set(big, () => ({ kind: 'custom', handle: (_req, res) => res.writeHead(200).end('x'.repeat(4096)) }));
    expect((await request(`${proxy.url}${big}`)).body.length).toBe(4096);
    modes.set(big, () => ({ kind: 'reset' }));
    expect((await request(`${proxy.url}${big}`)).status).toBe(502);
  });

  it('keeps a route within maxEntries and maxBytes over 5,000 distinct URLs', async () => {
    modes.clear();
    const paths = Array.from({ length: 5000 }, (_, i) => `/gh/many/${i}`);
    for (let i = 0; i < paths.length; i += 50) {
      await Promise.all(
        paths.slice(i, i + 50).map(async (path) => {
          const res = await request(`${proxy.url}${path}`);
          expect(res.status).toBe(200);
        }),
      );
    }
    const entries = await metricValue(proxy.metrics, 'breakwater_stale_entries', { route: 'gh' });
    const bytes = await metricValue(proxy.metrics, 'breakwater_stale_bytes', { route: 'gh' });
    // maxBytes binds first here: about 42 answers of ~1.5 KB fit in 64 KiB.
    expect(entries).toBeGreaterThan(30);
    expect(entries).toBeLessThanOrEqual(100);
    expect(bytes).toBeGreaterThan(48 * 1024);
    expect(bytes).toBeLessThanOrEqual(64 * 1024);
    const status = (await (await fetch(`${proxy.adminUrl}/status`)).json()) as {
      routes: { name: string; stale: { entries: number; bytes: number } | null }[];
    };
    expect(status.routes.find((r) => r.name === 'gh')!.stale).toEqual({ entries, bytes });
    // The most recent ones are the ones kept (LRU).
    modes.set('/gh/many/4999', () => ({ kind: 'reset' }));
    expect((await request(`${proxy.url}/gh/many/4999`)).headers['x-breakwater-fallback']).toBe('stale');
  });

  it('has no store on a route without fallback', async () => {
    const path = '/plain/x';
    modes.set(path, () => fresh('{}'));
    await request(`${proxy.url}${path}`);
    modes.set(path, () => ({ kind: 'reset' }));
    expect((await request(`${proxy.url}${path}`)).status).toBe(502);
  });
});

describe('stale answers and reload', () => {
  it('keeps a route’s answers when its fallback settings did not change, drops them when they did', async () => {
    const { mkdtempSync, writeFileSync, readFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const file = join(mkdtempSync(join(tmpdir(), 'bw-stale-')), 'breakwater.yaml');
    const config = (maxStale: string, extra = '') => `version: 1
upstreams: { u: { url: "${upstream.url}", circuitBreaker: { failureRate: 100 } } }
routes:
  - { name: gh, match: { pathPrefix: /gh }, upstream: u, retry: { maxRetries: 0 }, fallback: { stale: { maxStale: ${maxStale} } } }${extra}
`;
    const reloadable = await startProxy(config('10m'), { file });
    try {
      const path = '/gh/reload';
      modes.set(path, () => fresh('{"kept":true}'));
      await request(`${reloadable.url}${path}`);
      modes.set(path, () => ({ kind: 'reset' }));
      // Another route added: gh's fallback is unchanged, its answers stay.
      const text = readFileSync(file, 'utf8').replace(
        config('10m'),
        config('10m', '\n  - { name: other, match: { pathPrefix: /other }, upstream: u }'),
      );
      writeFileSync(file, text);
      expect((await reloadable.app.reload('test')).result).toBe('success');
      expect((await request(`${reloadable.url}${path}`)).headers['x-breakwater-fallback']).toBe('stale');
      writeFileSync(file, text.replace('maxStale: 10m', 'maxStale: 5m'));
      expect((await reloadable.app.reload('test')).result).toBe('success');
      expect((await request(`${reloadable.url}${path}`)).status).toBe(502);
    } finally {
      await reloadable.close();
    }
  });
});

describe('stale answers and who asked', () => {
  it('keys by the API-key headers too: another X-Api-Key gets the error', async () => {
    const path = '/gh/api-key';
    await primeThenFail(path, { kind: 'reset' }, { 'x-api-key': 'alice-key' });
    expect((await request(`${proxy.url}${path}`, { headers: { 'x-api-key': 'bob-key' } })).status).toBe(502);
    expect(
      (await request(`${proxy.url}${path}`, { headers: { 'x-api-key': 'alice-key' } })).headers[
        'x-breakwater-fallback'
      ],
    ).toBe('stale');
  });

  it.each(['private-token', 'x-shopify-access-token', 'x-auth-token', 'x-goog-api-key'])(
    'keys by %s by default: another token gets the error',
    async (header) => {
      const path = `/gh/token-${header}`;
      await primeThenFail(path, { kind: 'reset' }, { [header]: 'alice-token' });
      expect((await request(`${proxy.url}${path}`, { headers: { [header]: 'bob-token' } })).status).toBe(502);
      expect((await request(`${proxy.url}${path}`)).status).toBe(502);
      expect(
        (await request(`${proxy.url}${path}`, { headers: { [header]: 'alice-token' } })).headers[
          'x-breakwater-fallback'
        ],
      ).toBe('stale');
    },
  );

  it("a route's keyHeaders replace the default list", async () => {
    const path = '/tenant/x';
    await primeThenFail(path, { kind: 'reset' }, { 'x-tenant-token': 'alice', authorization: 'Bearer shared' });
    expect(
      (await request(`${proxy.url}${path}`, { headers: { 'x-tenant-token': 'bob', authorization: 'Bearer shared' } }))
        .status,
    ).toBe(502);
    // Authorization is not in this route's list: the same tenant with another one is the same caller.
    expect(
      (await request(`${proxy.url}${path}`, { headers: { 'x-tenant-token': 'alice', authorization: 'Bearer other' } }))
        .headers['x-breakwater-fallback'],
    ).toBe('stale');
  });

  it("keys a forward-proxy route by host: one site's stored answer never answers another's", async () => {
    const siteA = await startFaultUpstream(() => fresh('{"site":"a"}'));
    const siteB = await startFaultUpstream(() => ({ kind: 'reset' }));
    const forward = await startProxy(`version: 1
forwardProxy: { enabled: true, allowHosts: ["127.0.0.1"], allowPorts: [${siteA.port}, ${siteB.port}], denyPrivateNetworks: false }
routes:
  - { name: egress, retry: { maxRetries: 0 }, fallback: { stale: {} } }
`);
    const absolute = (url: string) =>
      new Promise<{ status: number; body: string; fallback: unknown }>((resolve, reject) => {
        const target = new URL(forward.url);
        http
          .get({ host: target.hostname, port: target.port, path: url }, (res) => {
            let body = '';
            res.on('data', (chunk) => (body += chunk));
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, body, fallback: res.headers['x-breakwater-fallback'] }),
            );
          })
          .on('error', reject);
      });
    try {
      expect((await absolute(`http://127.0.0.1:${siteA.port}/data`)).body).toBe('{"site":"a"}');
      const other = await absolute(`http://127.0.0.1:${siteB.port}/data`);
      expect(other.status).toBe(502);
      expect(other.fallback).toBeUndefined();
      await siteA.close();
      const same = await absolute(`http://127.0.0.1:${siteA.port}/data`);
      expect(same.fallback).toBe('stale');
      expect(same.body).toBe('{"site":"a"}');
    } finally {
      await forward.close();
      await siteB.close();
    }
  });
});
