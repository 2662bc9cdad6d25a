/**
 * A route's cache (SPEC §17) on real sockets, on the test's clock (freshness
 * and age read it, so an hour passes at once): fresh answers served with no
 * upstream call, revalidation with the stored validator and a free 304, the
 * client's no-cache, no-store and conditional requests, what is never
 * stored, one caller never getting another's answer, unsafe methods dropping
 * a path, the bounds, the headers and metrics, and a hit spending no
 * rate-limit token.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, type Behaviour, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { skippingClock } from '../helpers/clock.js';
import { metricValue, request, startProxy, type TestProxy } from '../helpers/proxy.js';

/** What the upstream answers per path (the request passed for conditionals); a 200 "v1" with max-age=60 by default. */
const answers: Record<string, (req: { headers: Record<string, unknown> }) => Behaviour> = {};
const fresh = (body: string, headers: Record<string, string> = {}): Behaviour => ({
  kind: 'respond',
  status: 200,
  headers: { 'content-type': 'text/plain', 'cache-control': 'max-age=60', etag: `"${body}"`, ...headers },
  body,
});

let upstream: FaultUpstream;
let proxy: TestProxy;
const clock = skippingClock();

beforeAll(async () => {
  upstream = await startFaultUpstream((_n, req) => {
    const path = (req.url ?? '').split('?')[0]!;
    const answer = answers[path];
    return answer ? answer({ headers: req.headers }) : fresh('v1');
  });
  proxy = await startProxy(
    `version: 1
upstreams: { api: { url: "${upstream.url}" } }
routes:
  - name: limited
    match: { pathPrefix: /limited }
    upstream: api
    rateLimit: { rate: 1/min, burst: 1, queue: { size: 0 } }
    cache: {}
  - name: small
    match: { pathPrefix: /small }
    upstream: api
    cache: { maxEntries: 2, maxEntryBytes: 1KiB, maxBytes: 4KiB }
  - name: ttl
    match: { pathPrefix: /ttl }
    upstream: api
    cache: { ttl: 30s }
  - name: stale
    match: { pathPrefix: /stale }
    upstream: api
    retry: { maxRetries: 0 }
    cache: {}
    fallback: { stale: { maxStale: 1h } }
  - name: api
    upstream: api
    cache: {}
`,
    { clock },
  );
});

afterAll(async () => {
  await proxy.close();
  await upstream.close();
});

/** Upstream requests for `path` so far. */
const seen = (path: string) => upstream.requests.filter((r) => r.url.split('?')[0] === path);
const get = (path: string, headers: Record<string, string> = {}, method = 'GET') =>
  request(`${proxy.url}${path}`, { method, headers });

describe('fresh answers', () => {
  it('serves the upstream 1 request of 5 within max-age, each with Age, Cache-Status and its own request id', async () => {
    answers['/a/fresh'] = () => fresh('fresh-body');
    const first = await get('/a/fresh');
    expect(first.headers['x-breakwater-cache']).toBe('miss');
    expect(first.headers['cache-status']).toBe('Breakwater; fwd=miss; stored');
    clock.advance(5000);
    const hits = [];
    for (let i = 0; i < 4; i++) hits.push(await get('/a/fresh'));
    expect(seen('/a/fresh')).toHaveLength(1);
    for (const hit of hits) {
      expect(hit.status).toBe(200);
      expect(hit.text).toBe('fresh-body');
      expect(hit.headers).toMatchObject({
        'x-breakwater-cache': 'hit',
        'cache-status': 'Breakwater; hit',
        'x-breakwater-attempts': '0',
        'x-breakwater-target': 'api',
        etag: '"fresh-body"',
      });
      expect(Number(hit.headers.age)).toBeGreaterThanOrEqual(5);
    }
    expect(new Set(hits.map((hit) => hit.headers['x-request-id'])).size).toBe(4);
    const line = proxy.accessLogs().findLast((l) => l.path === '/a/fresh')!;
    expect(line).toMatchObject({ cache: 'hit', status: 200, attempts: 0 });
  });

  it('answers a HEAD from the GET’s entry, without the body', async () => {
    answers['/a/head'] = () => fresh('head-body');
    await get('/a/head');
    const head = await get('/a/head', {}, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.text).toBe('');
    expect(head.headers['x-breakwater-cache']).toBe('hit');
    expect(seen('/a/head')).toHaveLength(1);
  });

  it('keeps an answer that gives no freshness fresh for the route’s ttl', async () => {
    answers['/ttl/x'] = () => ({ kind: 'respond', status: 200, body: 'no lifetime' });
    await get('/ttl/x');
    clock.advance(20_000);
    expect((await get('/ttl/x')).headers['x-breakwater-cache']).toBe('hit');
    clock.advance(15_000);
    // Past ttl and without a validator: a miss.
    expect((await get('/ttl/x')).headers['x-breakwater-cache']).toBe('miss');
    expect(seen('/ttl/x')).toHaveLength(2);
  });

  it('spends no rate-limit token on a hit, even with the limit spent', async () => {
    answers['/limited/x'] = () => fresh('limited');
    expect((await get('/limited/x')).status).toBe(200);
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push((await get('/limited/x')).status);
    expect(statuses).toEqual([200, 200, 200, 200, 200]);
    // A path not stored goes to the (spent) limit.
    expect((await get('/limited/other')).status).toBe(429);
  });
});

describe('revalidation', () => {
  it('revalidates a stale entry with If-None-Match; a 304 refreshes it and the client gets the stored answer', async () => {
    let version = 'r1';
    answers['/a/etag'] = (req) =>
      req.headers['if-none-match'] === `"${version}"`
        ? { kind: 'respond', status: 304, headers: { etag: `"${version}"`, 'cache-control': 'max-age=60' } }
        : fresh(version);
    await get('/a/etag');
    clock.advance(61_000);
    const revalidated = await get('/a/etag');
    expect(revalidated.status).toBe(200);
    expect(revalidated.text).toBe('r1');
    expect(revalidated.headers).toMatchObject({
      'x-breakwater-cache': 'revalidated',
      'cache-status': 'Breakwater; fwd=stale; fwd-status=304',
    });
    expect(Number(revalidated.headers.age)).toBeLessThan(2);
    expect(seen('/a/etag').at(-1)!.headers['if-none-match']).toBe('"r1"');
    // Refreshed: fresh again for 60 s.
    expect((await get('/a/etag')).headers['x-breakwater-cache']).toBe('hit');
    // Changed upstream: past max-age the new version replaces the entry.
    version = 'r2';
    clock.advance(61_000);
    const changed = await get('/a/etag');
    expect(changed.text).toBe('r2');
    expect(changed.headers['x-breakwater-cache']).toBe('miss');
    expect(changed.headers['cache-status']).toBe('Breakwater; fwd=stale; fwd-status=200; stored');
    expect((await get('/a/etag')).text).toBe('r2');
    expect(seen('/a/etag')).toHaveLength(3);
  });

  it('revalidates with If-Modified-Since when the answer has only Last-Modified', async () => {
    const modified = 'Wed, 02 Dec 2026 10:00:00 GMT';
    answers['/a/lm'] = (req) =>
      req.headers['if-modified-since'] === modified
        ? { kind: 'respond', status: 304 }
        : {
            kind: 'respond',
            status: 200,
            headers: { 'last-modified': modified, 'cache-control': 'no-cache' },
            body: 'lm',
          };
    await get('/a/lm');
    const again = await get('/a/lm');
    expect(again.headers['x-breakwater-cache']).toBe('revalidated');
    expect(again.text).toBe('lm');
    expect(seen('/a/lm').at(-1)!.headers['if-modified-since']).toBe(modified);
  });

  it('answers stale (SPEC §8.2) when a revalidation fails', async () => {
    let down = false;
    answers['/stale/x'] = () => (down ? { kind: 'respond', status: 503 } : fresh('kept'));
    await get('/stale/x');
    down = true;
    clock.advance(61_000);
    const res = await get('/stale/x');
    expect(res.status).toBe(200);
    expect(res.text).toBe('kept');
    expect(res.headers['x-breakwater-fallback']).toBe('stale');
  });
});

describe('the upstream’s own cache headers', () => {
  it('keeps Breakwater’s member last in Cache-Status and its own X-Breakwater-Cache', async () => {
    answers['/a/cdn'] = () => fresh('cdn', { 'cache-status': 'upstream-cdn; hit', 'x-breakwater-cache': 'forged' });
    const miss = await get('/a/cdn');
    expect(miss.headers['cache-status']).toBe('upstream-cdn; hit, Breakwater; fwd=miss; stored');
    expect(miss.headers['x-breakwater-cache']).toBe('miss');
    const hit = await get('/a/cdn');
    expect(hit.headers['cache-status']).toBe('upstream-cdn; hit, Breakwater; hit');
    expect(hit.headers['x-breakwater-cache']).toBe('hit');
  });

  it('restarts the age on a 304 and never stores the cookie a 304 sets', async () => {
    answers['/a/aged'] = (req) =>
      req.headers['if-none-match'] === '"aged"'
        ? { kind: 'respond', status: 304, headers: { 'set-cookie': 'session=someone', etag: '"aged"' } }
        : fresh('aged', { age: '50' });
    await get('/a/aged');
    clock.advance(11_000);
    const revalidated = await get('/a/aged');
    expect(revalidated.headers['x-breakwater-cache']).toBe('revalidated');
    expect(revalidated.headers['set-cookie']).toBeUndefined();
    expect(Number(revalidated.headers.age)).toBeLessThan(2);
    // Fresh again (it was 61 s old by its Age before the 304).
    expect((await get('/a/aged')).headers['x-breakwater-cache']).toBe('hit');
    expect(seen('/a/aged')).toHaveLength(2);
  });
});

describe('the client’s request', () => {
  it('asks the upstream for Cache-Control: no-cache (a revalidation) and Pragma: no-cache', async () => {
    answers['/a/nc'] = (req) =>
      req.headers['if-none-match'] === '"nc"' ? { kind: 'respond', status: 304 } : fresh('nc');
    await get('/a/nc');
    expect((await get('/a/nc', { 'cache-control': 'no-cache' })).headers['x-breakwater-cache']).toBe('revalidated');
    expect((await get('/a/nc', { pragma: 'no-cache' })).headers['x-breakwater-cache']).toBe('revalidated');
    expect(seen('/a/nc')).toHaveLength(3);
  });

  it('bypasses the cache for Cache-Control: no-store: forwarded as sent, never stored, the entry left', async () => {
    answers['/a/ns'] = () => fresh('ns');
    await get('/a/ns');
    const bypass = await get('/a/ns', { 'cache-control': 'no-store' });
    expect(bypass.headers).toMatchObject({ 'x-breakwater-cache': 'bypass', 'cache-status': 'Breakwater; fwd=bypass' });
    expect(seen('/a/ns')).toHaveLength(2);
    expect((await get('/a/ns')).headers['x-breakwater-cache']).toBe('hit');
  });

  it('answers a conditional GET from a fresh entry: 304 when it matches, the stored 200 when not', async () => {
    answers['/a/cond'] = () => fresh('cond');
    await get('/a/cond');
    const matched = await get('/a/cond', { 'if-none-match': 'W/"cond", "other"' });
    expect(matched.status).toBe(304);
    expect(matched.text).toBe('');
    const other = await get('/a/cond', { 'if-none-match': '"other"' });
    expect(other.status).toBe(200);
    expect(other.text).toBe('cond');
    expect(seen('/a/cond')).toHaveLength(1);
  });
});

describe('never stored', () => {
  it.each([
    ['no-store', fresh('x', { 'cache-control': 'no-store' })],
    ['Set-Cookie', fresh('x', { 'set-cookie': 'session=1' })],
    ['Vary: *', fresh('x', { vary: '*' })],
    ['a 404', { kind: 'respond', status: 404, headers: { 'cache-control': 'max-age=60' }, body: 'nope' } as Behaviour],
    ['no lifetime, no validator, no ttl', { kind: 'respond', status: 200, body: 'x' } as Behaviour],
  ])('%s', async (name, behaviour) => {
    const path = `/a/never-${name.replace(/\W+/g, '-')}`;
    answers[path] = () => behaviour;
    await get(path);
    const again = await get(path);
    expect(again.headers['x-breakwater-cache']).toBe('miss');
    expect(seen(path)).toHaveLength(2);
  });

  it('never stores the answer to a POST, and a POST’s success drops the path for every caller', async () => {
    answers['/a/doc'] = () => fresh('doc');
    await get('/a/doc', { authorization: 'Bearer one' });
    await get('/a/doc', { authorization: 'Bearer two' });
    const post = await get('/a/doc', { authorization: 'Bearer one' }, 'POST');
    expect(post.headers['x-breakwater-cache']).toBe('bypass');
    expect((await get('/a/doc', { authorization: 'Bearer two' })).headers['x-breakwater-cache']).toBe('miss');
    expect((await get('/a/doc', { authorization: 'Bearer one' })).headers['x-breakwater-cache']).toBe('miss');
  });

  it('does not store an answer that left the upstream before a POST changed the path', async () => {
    answers['/a/race'] = (req) =>
      req.headers['content-type'] === 'application/json'
        ? { kind: 'respond', status: 201, body: 'changed' }
        : {
            kind: 'custom',
            handle: (_r, res) => {
              setTimeout(() => res.writeHead(200, { 'cache-control': 'max-age=60', etag: '"old"' }).end('old'), 300);
            },
          };
    const slowGet = get('/a/race');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect((await get('/a/race', { 'content-type': 'application/json' }, 'POST')).status).toBe(201);
    expect((await slowGet).text).toBe('old');
    // The old answer was not stored: the next GET goes upstream.
    expect((await get('/a/race')).headers['x-breakwater-cache']).toBe('miss');
  });
});

describe('keys', () => {
  it('never gives one caller another’s answer', async () => {
    answers['/a/me'] = (req) =>
      fresh(`user:${String(req.headers.authorization)}`, { 'cache-control': 'private, max-age=60' });
    const one = await get('/a/me', { authorization: 'Bearer one' });
    const two = await get('/a/me', { authorization: 'Bearer two' });
    expect(one.text).toBe('user:Bearer one');
    expect(two.text).toBe('user:Bearer two');
    expect((await get('/a/me', { authorization: 'Bearer one' })).text).toBe('user:Bearer one');
    expect((await get('/a/me', { authorization: 'Bearer two' })).headers['x-breakwater-cache']).toBe('hit');
    expect(seen('/a/me')).toHaveLength(2);
  });

  it('keeps each Vary’d value apart', async () => {
    answers['/a/lang'] = (req) => fresh(`lang:${String(req.headers['accept-language'])}`, { vary: 'Accept-Language' });
    expect((await get('/a/lang', { 'accept-language': 'fr' })).text).toBe('lang:fr');
    const de = await get('/a/lang', { 'accept-language': 'de' });
    expect(de.text).toBe('lang:de');
    expect(de.headers['x-breakwater-cache']).toBe('miss');
  });
});

describe('bounds, status and metrics', () => {
  it('stores no body over maxEntryBytes and keeps at most maxEntries', async () => {
    answers['/small/big'] = () => fresh('x'.repeat(2048));
    await get('/small/big');
    expect((await get('/small/big')).headers['x-breakwater-cache']).toBe('miss');
    for (const name of ['a', 'b', 'c']) {
      answers[`/small/${name}`] = () => fresh(name);
      await get(`/small/${name}`);
    }
    const status = (await request(`${proxy.adminUrl}/status`)).json<{
      routes: { name: string; cache: { entries: number; bytes: number; inFlight: number } | null }[];
    }>();
    expect(status.routes.find((route) => route.name === 'small')!.cache).toEqual({ entries: 2, bytes: 2, inFlight: 0 });
    // The least recently used (a) was evicted.
    expect((await get('/small/a')).headers['x-breakwater-cache']).toBe('miss');
  });

  it('counts each request once by result, and shows the store in the gauges', async () => {
    const before = await metricValue(proxy.metrics, 'breakwater_cache_requests_total', { route: 'api', result: 'hit' });
    answers['/a/counted'] = () => fresh('counted');
    await get('/a/counted');
    await get('/a/counted');
    await get('/a/counted');
    expect(await metricValue(proxy.metrics, 'breakwater_cache_requests_total', { route: 'api', result: 'hit' })).toBe(
      before + 2,
    );
    const text = (await request(`${proxy.adminUrl}/metrics`)).text;
    expect(text).toMatch(/^breakwater_cache_entries\{route="api"\} [1-9]\d*$/m);
    expect(text).toMatch(/^breakwater_cache_bytes\{route="api"\} [1-9]\d*$/m);
    expect(text).toMatch(/^breakwater_cache_requests_total\{route="small",result="coalesced"\} 0$/m);
    // /stats (breakwater stat, the dashboard): the hit ratio and the upstream calls saved.
    const stats = (await request(`${proxy.adminUrl}/stats`)).json<{
      routes: { route: string; cacheHitRate: number | null; savedPerSecond: number }[];
    }>();
    const api = stats.routes.find((route) => route.route === 'api')!;
    expect(api.cacheHitRate).toBeGreaterThan(0);
    expect(api.savedPerSecond).toBeGreaterThan(0);
    expect(stats.routes.find((route) => route.route === 'ttl')!.cacheHitRate).toBeGreaterThan(0);
  });
});

describe('the store across a reload', () => {
  it('keeps it when the route and its upstream are unchanged, drops it when the upstream’s URL changed', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const file = join(mkdtempSync(join(tmpdir(), 'bw-cache-')), 'breakwater.yaml');
    const config = (base: string, extra = '') => `version: 1
upstreams: { u: { url: "${upstream.url}${base}" } }
routes:
  - { name: r, upstream: u, cache: {} }${extra}
`;
    answers['/reload/x'] = () => fresh('v1');
    answers['/moved/reload/x'] = () => fresh('moved');
    const reloadable = await startProxy(config(''), { file });
    try {
      await request(`${reloadable.url}/reload/x`);
      writeFileSync(
        file,
        `listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\n${config('', '\n  - { name: other, match: { pathPrefix: /other }, upstream: u }')}`,
      );
      expect((await reloadable.app.reload('test')).result).toBe('success');
      expect((await request(`${reloadable.url}/reload/x`)).headers['x-breakwater-cache']).toBe('hit');
      // Another URL (an account or region moved): the answers are not this upstream's any more.
      writeFileSync(
        file,
        `listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\n${config('/moved')}`,
      );
      expect((await reloadable.app.reload('test')).result).toBe('success');
      const after = await request(`${reloadable.url}/reload/x`);
      expect(after.headers['x-breakwater-cache']).toBe('miss');
      expect(after.text).toBe('moved');
    } finally {
      await reloadable.close();
    }
  });
});
