/**
 * Coalescing (SPEC §17 `coalesce`) on real sockets: identical concurrent
 * GETs share one upstream request and its answer, each with its own request
 * id; different keys never wait for each other; a waiter spends no
 * rate-limit token; a waiter whose client leaves cancels nothing, and a
 * leader whose client leaves keeps the upstream request for those who wait;
 * the leader's failure reaches the waiters; no-cache and a different Vary'd
 * value never share.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, type Behaviour, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { metricValue, request, startProxy, type TestProxy, type TestResponse } from '../helpers/proxy.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Answers after `ms`, never storable (each batch goes upstream afresh), varying on Accept-Language. */
const slow = (ms: number, body: string, status = 200): Behaviour => ({
  kind: 'custom',
  handle: (req, res) => {
    const timer = setTimeout(() => {
      if (res.destroyed) return;
      res.writeHead(status, { 'content-type': 'text/plain', 'cache-control': 'no-store', vary: 'Accept-Language' });
      res.end(`${body}:${String(req.headers['accept-language'] ?? '')}`);
    }, ms);
    res.on('close', () => clearTimeout(timer));
  },
});

let behaviour: (path: string) => Behaviour = (path) => slow(300, path);
let upstream: FaultUpstream;
let proxy: TestProxy;

beforeAll(async () => {
  upstream = await startFaultUpstream((_n, req) => behaviour(req.url ?? ''));
  proxy = await startProxy(`version: 1
upstreams: { api: { url: "${upstream.url}" } }
routes:
  - name: limited
    match: { pathPrefix: /limited }
    upstream: api
    rateLimit: { rate: 1/min, burst: 1, queue: { size: 0 } }
    cache: {}
  - name: api
    upstream: api
    retry: { maxRetries: 0 }
    cache: {}
`);
});

afterAll(async () => {
  await proxy.close();
  await upstream.close();
});

const seen = (path: string) => upstream.requests.filter((r) => r.url === path);
const get = (path: string, headers: Record<string, string> = {}) => request(`${proxy.url}${path}`, { headers });

describe('identical concurrent GETs', () => {
  it('share one upstream request: 20 GETs to an upstream that takes 1 s are answered in about 1 s', async () => {
    behaviour = (path) => slow(1000, path);
    const started = performance.now();
    const answers = await Promise.all(Array.from({ length: 20 }, () => get('/c/one')));
    const elapsed = performance.now() - started;
    expect(seen('/c/one')).toHaveLength(1);
    expect(answers.map((res) => res.status)).toEqual(Array(20).fill(200));
    expect(new Set(answers.map((res) => res.text))).toEqual(new Set(['/c/one:']));
    const results = answers.map((res) => res.headers['x-breakwater-cache']);
    expect(results.filter((r) => r === 'coalesced')).toHaveLength(19);
    expect(results.filter((r) => r === 'miss')).toHaveLength(1);
    expect(new Set(answers.map((res) => res.headers['x-request-id'])).size).toBe(20);
    const waiter = answers.find((res) => res.headers['x-breakwater-cache'] === 'coalesced')!;
    expect(waiter.headers).toMatchObject({
      'cache-status': 'Breakwater; fwd=miss; collapsed',
      'x-breakwater-attempts': '0',
      'x-breakwater-target': 'api',
    });
    // About the upstream's one second, not 20 of them (generous bound for a loaded machine).
    expect(elapsed).toBeLessThan(4000);
    expect(
      await metricValue(proxy.metrics, 'breakwater_cache_requests_total', { route: 'api', result: 'coalesced' }),
    ).toBeGreaterThanOrEqual(19);
  });

  it('never makes different keys wait for each other: 10 Authorization values, 10 upstream requests', async () => {
    behaviour = (path) => slow(300, path);
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) => get('/c/keys', { authorization: `Bearer caller-${i}` })),
    );
    expect(answers.every((res) => res.status === 200)).toBe(true);
    expect(seen('/c/keys')).toHaveLength(10);
    expect(answers.every((res) => res.headers['x-breakwater-cache'] === 'miss')).toBe(true);
  });

  it('spends no rate-limit token on a waiter', async () => {
    behaviour = (path) => slow(500, path);
    const answers = await Promise.all(Array.from({ length: 5 }, () => get('/limited/x')));
    expect(answers.map((res) => res.status)).toEqual([200, 200, 200, 200, 200]);
    expect(seen('/limited/x')).toHaveLength(1);
  });

  it('gives the waiters the leader’s failure, each with its own request id', async () => {
    behaviour = (path) => slow(300, path, 503);
    const answers = await Promise.all(Array.from({ length: 4 }, () => get('/c/down')));
    expect(seen('/c/down')).toHaveLength(1);
    expect(answers.map((res) => res.status)).toEqual([503, 503, 503, 503]);
    expect(new Set(answers.map((res) => res.headers['x-request-id'])).size).toBe(4);
  });

  it('never shares with a no-cache request, nor with a waiter whose Vary’d header differs', async () => {
    behaviour = (path) => slow(300, path);
    const [plain, noCache] = await Promise.all([get('/c/nc'), get('/c/nc', { 'cache-control': 'no-cache' })]);
    expect([plain.status, noCache.status]).toEqual([200, 200]);
    expect(seen('/c/nc')).toHaveLength(2);
    const [fr, de] = await Promise.all([
      get('/c/vary', { 'accept-language': 'fr' }),
      (async () => {
        await sleep(50);
        return get('/c/vary', { 'accept-language': 'de' });
      })(),
    ]);
    expect(fr.text).toBe('/c/vary:fr');
    expect(de.text).toBe('/c/vary:de');
    expect(seen('/c/vary')).toHaveLength(2);
  });
});

describe('a shared revalidation', () => {
  it('gives every waiter the refreshed stored answer, never the 304 it took', async () => {
    behaviour = () => ({
      kind: 'custom',
      handle: (req, res) => {
        setTimeout(() => {
          if (req.headers['if-none-match'] === '"doc"') res.writeHead(304, { etag: '"doc"' }).end();
          else res.writeHead(200, { etag: '"doc"', 'cache-control': 'no-cache' }).end('the doc');
        }, 300);
      },
    });
    expect((await get('/c/reval')).text).toBe('the doc');
    const answers = await Promise.all(Array.from({ length: 5 }, () => get('/c/reval')));
    expect(answers.map((res) => [res.status, res.text])).toEqual(Array(5).fill([200, 'the doc']));
    expect(answers.map((res) => res.headers['x-breakwater-cache']).sort()).toEqual([
      'coalesced',
      'coalesced',
      'coalesced',
      'coalesced',
      'revalidated',
    ]);
    // The stored answer, then one revalidation for all five.
    expect(seen('/c/reval')).toHaveLength(2);
    expect(seen('/c/reval')[1]!.headers['if-none-match']).toBe('"doc"');
  });
});

describe('answers that are never shared', () => {
  it('shares no answer that sets a cookie, and no GET with a Range', async () => {
    behaviour = () => ({
      kind: 'custom',
      handle: (_req, res) => {
        setTimeout(() => res.writeHead(200, { 'set-cookie': `session=${Math.random()}` }).end('yours'), 300);
      },
    });
    const cookies = await Promise.all(Array.from({ length: 3 }, () => get('/c/cookie')));
    expect(seen('/c/cookie')).toHaveLength(3);
    expect(new Set(cookies.map((res) => String(res.headers['set-cookie']))).size).toBe(3);
    behaviour = (path) => slow(300, path);
    await Promise.all([get('/c/range'), get('/c/range', { range: 'bytes=0-3' })]);
    expect(seen('/c/range')).toHaveLength(2);
  });
});

describe('a leader whose client leaves mid-body', () => {
  it('keeps streaming the body to those who wait', async () => {
    behaviour = () => ({
      kind: 'custom',
      handle: (_req, res) => {
        setTimeout(() => {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.write('first half, ');
          setTimeout(() => res.end('second half'), 400);
        }, 200);
      },
    });
    const leaderGone = new Promise<void>((resolve) => {
      const req = http.get(`${proxy.url}/c/mid-body`, { agent: false }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => resolve());
    });
    await sleep(50);
    const waiter = get('/c/mid-body');
    await leaderGone;
    const answer = await waiter;
    expect(answer.status).toBe(200);
    expect(answer.text).toBe('first half, second half');
    expect(seen('/c/mid-body')).toHaveLength(1);
    expect(seen('/c/mid-body')[0]!.closedEarly).toBe(false);
  });
});

/** A GET whose client gives up after `ms`. */
function abandoned(path: string, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const req = http.get(`${proxy.url}${path}`, { agent: false }, (res) => res.resume());
    req.on('error', () => resolve());
    setTimeout(() => {
      req.destroy();
      resolve();
    }, ms);
  });
}

describe('clients that leave', () => {
  it('a waiter that leaves cancels nothing', async () => {
    behaviour = (path) => slow(600, path);
    const leader = get('/c/waiter-leaves');
    await sleep(100);
    const others: Promise<TestResponse>[] = [get('/c/waiter-leaves')];
    await abandoned('/c/waiter-leaves', 200);
    const answers = await Promise.all([leader, ...others]);
    expect(answers.map((res) => res.status)).toEqual([200, 200]);
    expect(seen('/c/waiter-leaves')).toHaveLength(1);
    expect(seen('/c/waiter-leaves')[0]!.closedEarly).toBe(false);
  });

  it('a leader that leaves keeps the upstream request for those who wait', async () => {
    behaviour = (path) => slow(600, path);
    const leaving = abandoned('/c/leader-leaves', 200);
    await sleep(80);
    const waiter = get('/c/leader-leaves');
    await leaving;
    const answer = await waiter;
    expect(answer.status).toBe(200);
    expect(answer.text).toBe('/c/leader-leaves:');
    expect(answer.headers['x-breakwater-cache']).toBe('coalesced');
    expect(seen('/c/leader-leaves')).toHaveLength(1);
    expect(seen('/c/leader-leaves')[0]!.closedEarly).toBe(false);
  });
});
