/**
 * The error journal (SPEC §12): after a known mix of traffic, `GET /errors`
 * holds exactly the requests that failed, newest first, each with what the
 * operator needs (code, hint, whose fault, each attempt, what the provider
 * said, its quota and request-id headers), bounded by its size, filtered
 * by route, code and limit; and never a secret the client sent.
 */
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JournalEntry } from '../../src/observe/error-journal.js';
import { startFaultUpstream, type Behaviour, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { freePort } from '../helpers/net.js';
import { request, startProxy, type TestProxy } from '../helpers/proxy.js';
import { writeTemp } from '../helpers/cli.js';

const SECRETS = {
  authorization: 'Bearer SECRET-AUTH-7f3a',
  cookie: 'session=SECRET-COOKIE-91bc',
  apiKey: 'SECRET-HEADER-55d0',
  query: 'SECRET-QUERY-0c1e',
  body: '{"card":"SECRET-BODY-4242"}',
  host: 'secret-host-6e2f.example',
};

const seen = new Map<string, number>();
function script(path: string): Behaviour {
  const n = (seen.get(path) ?? 0) + 1;
  seen.set(path, n);
  switch (path) {
    case '/pay/ok':
    case '/cache/item':
      return n === 1 || path === '/pay/ok'
        ? { kind: 'respond', status: 200, headers: { 'content-type': 'application/json' }, body: '{"ok":true}' }
        : { kind: 'respond', status: 503, body: 'down' };
    case '/pay/flaky':
      return n === 1
        ? { kind: 'respond', status: 503, body: 'warming up' }
        : { kind: 'respond', status: 200, body: 'ok' };
    case '/pay/down':
      return {
        kind: 'respond',
        status: 503,
        headers: {
          'content-type': 'application/json',
          'x-request-id': 'req_upstream_1',
          'cf-ray': '8a1b-FRA',
          'set-cookie': 'upstream=private',
          'x-internal': 'no',
        },
        body: JSON.stringify({ error: { message: 'database unavailable', code: 'db_down' } }),
      };
    case '/limited/x':
      return {
        kind: 'respond',
        status: 429,
        headers: {
          'content-type': 'application/json',
          'retry-after': '30',
          'x-ratelimit-remaining': '0',
          'x-ratelimit-reset': '30',
          'x-github-request-id': 'GH:1:2',
        },
        body: JSON.stringify({ message: 'API rate limit exceeded' }),
      };
    case '/norm/boom':
      return {
        kind: 'respond',
        status: 500,
        headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
        body: gzipSync(JSON.stringify({ message: 'boom', big: 'x'.repeat(6000) })),
      };
    case '/pay/broken':
      return { kind: 'close-mid-body', body: 'partial', contentLength: 100 };
    default:
      return { kind: 'respond', status: 200, body: 'fine' };
  }
}

let upstream: FaultUpstream;
let proxy: TestProxy;
let journal: JournalEntry[];

async function errors(
  query = '',
): Promise<{ status: number; body: { size: number; recorded: number; errors: JournalEntry[] }; text: string }> {
  const res = await request(`${proxy.adminUrl}/errors${query}`);
  return { status: res.status, body: res.status === 200 ? res.json() : ({} as never), text: res.text };
}

beforeAll(async () => {
  upstream = await startFaultUpstream((_n, req) => script((req.url ?? '').split('?')[0]!));
  const dead = await freePort();
  proxy = await startProxy(
    `version: 1
defaults: { retry: { maxRetries: 2, backoff: { base: 1ms, max: 2ms } } }
upstreams:
  provider: { url: "${upstream.url}", circuitBreaker: { failureRate: 100 } }
  dead: { url: "http://127.0.0.1:${dead}", circuitBreaker: { failureRate: 100 } }
routes:
  - { name: payments, match: { pathPrefix: /pay }, upstream: provider }
  - { name: limited, match: { pathPrefix: /limited }, upstream: provider, retry: { maxRetries: 0 } }
  - { name: normalized, match: { pathPrefix: /norm }, upstream: provider, retry: { maxRetries: 0 }, errors: { normalize: all } }
  - { name: cached, match: { pathPrefix: /cache }, upstream: provider, retry: { maxRetries: 0 }, fallback: { stale: {} } }
  - { name: offline, match: { pathPrefix: /offline }, upstream: dead }
`,
    { listen: 'serverNames: ["*.example"]' },
  ); // the secret Host must be served to reach NO_ROUTE
  const secret = { authorization: SECRETS.authorization, cookie: SECRETS.cookie, 'x-api-key': SECRETS.apiKey };
  // The known mix, in this order (the journal lists the failed ones newest first).
  expect((await request(`${proxy.url}/pay/ok?key=${SECRETS.query}`, { headers: secret })).status).toBe(200);
  expect((await request(`${proxy.url}/pay/flaky`)).status).toBe(200);
  expect((await request(`${proxy.url}/cache/item`)).status).toBe(200);
  expect(
    (
      await request(`${proxy.url}/pay/down?key=${SECRETS.query}`, {
        headers: { ...secret, 'x-request-id': 'journal-1' },
      })
    ).status,
  ).toBe(503);
  expect(
    (
      await request(`${proxy.url}/limited/x`, {
        method: 'POST',
        headers: { ...secret, 'content-type': 'application/json' },
        body: SECRETS.body,
      })
    ).status,
  ).toBe(429);
  expect((await request(`${proxy.url}/offline/y?token=${SECRETS.query}`, { headers: secret })).status).toBe(502);
  expect(
    (await request(`${proxy.url}/nowhere?q=${SECRETS.query}`, { headers: { ...secret, host: SECRETS.host } })).status,
  ).toBe(404);
  expect((await request(`${proxy.url}/norm/boom`)).status).toBe(500);
  expect((await request(`${proxy.url}/cache/item`)).status).toBe(200);
  await expect(request(`${proxy.url}/pay/broken`)).rejects.toThrow();
  expect((await request(`${proxy.url}/pay/ok`)).status).toBe(200);
  // The journal is written when the exchange closes: the broken one closes a moment later.
  for (let i = 0; i < 100 && (await errors()).body.errors.length < 7; i++)
    await new Promise((resolve) => setTimeout(resolve, 20));
  journal = (await errors()).body.errors;
});

afterAll(async () => {
  await proxy?.close();
  await upstream?.close();
});

describe('GET /errors after a known mix of traffic', () => {
  it('holds exactly the failed requests, newest first', () => {
    expect(journal.map((entry) => `${entry.method} ${entry.path} ${entry.status} ${entry.code}`)).toEqual([
      'GET /pay/broken 200 UPSTREAM_RESET',
      'GET /cache/item 200 UPSTREAM_UNAVAILABLE',
      'GET /norm/boom 500 UPSTREAM_INTERNAL_ERROR',
      'GET /nowhere 404 NO_ROUTE',
      'GET /offline/y 502 UPSTREAM_CONNECT_FAILED',
      'POST /limited/x 429 UPSTREAM_RATE_LIMITED',
      'GET /pay/down 503 UPSTREAM_UNAVAILABLE',
    ]);
    const times = journal.map((entry) => Date.parse(entry.time));
    expect([...times].sort((a, b) => b - a)).toEqual(times);
  });

  it('describes an upstream 503 passed through after its retries: every attempt, the provider’s words, its request-id headers only', () => {
    const entry = journal.find((e) => e.path === '/pay/down')!;
    expect(entry).toMatchObject({
      requestId: 'journal-1',
      route: 'payments',
      upstream: 'provider',
      target: 'provider',
      source: 'upstream',
      responsibility: 'upstream',
      retryable: true,
      provider: {
        status: 503,
        code: 'db_down',
        message: 'database unavailable',
        body: { error: { message: 'database unavailable', code: 'db_down' } },
      },
      headers: { 'x-request-id': 'req_upstream_1', 'cf-ray': '8a1b-FRA' },
    });
    expect(entry.hint.length).toBeGreaterThan(10);
    expect(Object.keys(entry.headers).sort()).toEqual(['cf-ray', 'x-request-id']);
    expect(entry.attempts).toHaveLength(3);
    for (const attempt of entry.attempts) {
      expect(attempt).toMatchObject({ target: 'provider', status: 503, code: 'UPSTREAM_UNAVAILABLE' });
      expect(attempt.durationMs).toBeGreaterThan(0);
    }
    expect(entry.durationMs).toBeGreaterThan(0);
  });

  it('keeps a 429’s quota and Retry-After headers and the provider’s message', () => {
    const entry = journal.find((e) => e.route === 'limited')!;
    expect(entry.headers).toEqual({
      'retry-after': '30',
      'x-ratelimit-remaining': '0',
      'x-ratelimit-reset': '30',
      'x-github-request-id': 'GH:1:2',
    });
    expect(entry.provider).toMatchObject({ status: 429, message: 'API rate limit exceeded' });
    expect(entry.attempts).toEqual([expect.objectContaining({ status: 429, code: 'UPSTREAM_RATE_LIMITED' })]);
  });

  it('describes Breakwater’s own problems with their detail, and no provider', () => {
    const refused = journal.find((e) => e.route === 'offline')!;
    expect(refused).toMatchObject({
      source: 'proxy',
      responsibility: 'upstream',
      retryable: true,
      provider: null,
      headers: {},
      upstream: 'dead',
    });
    expect(refused.detail).toContain('refused');
    expect(refused.attempts.map((a) => [a.status, a.code])).toEqual([
      [null, 'UPSTREAM_CONNECT_FAILED'],
      [null, 'UPSTREAM_CONNECT_FAILED'],
      [null, 'UPSTREAM_CONNECT_FAILED'],
    ]);
    const unrouted = journal.find((e) => e.code === 'NO_ROUTE')!;
    expect(unrouted).toMatchObject({
      route: '',
      upstream: null,
      target: null,
      source: 'proxy',
      responsibility: 'client',
      retryable: false,
      attempts: [],
    });
  });

  it('reads a compressed provider body and cuts it at 4 KiB', () => {
    const entry = journal.find((e) => e.route === 'normalized')!;
    expect(entry.provider?.message).toBe('boom');
    expect(typeof entry.provider?.body).toBe('string');
    expect(Buffer.byteLength(entry.provider!.body as string)).toBe(4096);
    expect(entry.source).toBe('upstream');
  });

  it('journals a stale answer with the code it replaced, and a body that broke off', () => {
    expect(journal.find((e) => e.route === 'cached')).toMatchObject({
      stale: true,
      status: 200,
      code: 'UPSTREAM_UNAVAILABLE',
    });
    const broken = journal.find((e) => e.path === '/pay/broken')!;
    expect(broken.attempts).toEqual([{ target: 'provider', status: 200, code: null, durationMs: null }]);
  });

  it('filters by route, code and limit; refuses a limit that is not a positive integer', async () => {
    expect((await errors('?route=limited')).body.errors.map((e) => e.path)).toEqual(['/limited/x']);
    expect((await errors('?code=UPSTREAM_UNAVAILABLE')).body.errors.map((e) => e.path)).toEqual([
      '/cache/item',
      '/pay/down',
    ]);
    expect((await errors('?limit=2')).body.errors.map((e) => e.path)).toEqual(['/pay/broken', '/cache/item']);
    expect((await errors('?route=payments&limit=1')).body.errors.map((e) => e.path)).toEqual(['/pay/broken']);
    expect((await errors('?route=nothing')).body.errors).toEqual([]);
    for (const bad of ['0', '-1', 'ten', '1.5']) {
      const res = await errors(`?limit=${bad}`);
      expect(res.status).toBe(400);
      expect(res.text).toContain('positive integer');
    }
  });

  it('never shows a request body, request header value, query string or cookie: not in /errors, /stats or the logs', async () => {
    const admin = [
      (await errors()).text,
      (await request(`${proxy.adminUrl}/stats`)).text,
      (await request(`${proxy.adminUrl}/`)).text,
    ].join('\n');
    const everything = [admin, proxy.rawLogs()].join('\n');
    expect(everything).toContain('journal-1');
    for (const secret of ['SECRET', 'upstream=private', 'x-internal']) expect(everything).not.toContain(secret);
    // The access log names the Host (SPEC §7); the journal does not repeat it, not even in a detail.
    expect(proxy.rawLogs()).toContain(SECRETS.host);
    expect(admin).not.toContain('secret-host');
  });
});

describe('the journal’s size', () => {
  it('keeps the newest `observability.errorJournal.size` entries, counts them all, and follows a reload', async () => {
    const file = writeTemp('journal.yaml', '');
    const small = await startProxy(
      `version: 1
observability: { errorJournal: { size: 3 } }
routes: [{ name: only, match: { pathPrefix: /only }, upstream: nowhere }]
upstreams: { nowhere: { url: "http://127.0.0.1:9" } }
`,
      { file },
    );
    try {
      // Spaced out: the journal admits at most `size` entries a second.
      for (let i = 1; i <= 5; i++) {
        expect((await request(`${small.url}/a${i}`)).status).toBe(404);
        await new Promise((resolve) => setTimeout(resolve, 350));
      }
      const list = async () =>
        (await request(`${small.adminUrl}/errors`)).json<{
          size: number;
          recorded: number;
          skipped: number;
          errors: JournalEntry[];
        }>();
      expect(await list()).toMatchObject({ size: 3, recorded: 5, skipped: 0 });
      expect((await list()).errors.map((e) => e.path)).toEqual(['/a5', '/a4', '/a3']);
      const { readFileSync, writeFileSync } = await import('node:fs');
      writeFileSync(file, readFileSync(file, 'utf8').replace('size: 3', 'size: 2'));
      expect((await small.app.reload('test')).result).toBe('success');
      expect((await list()).errors.map((e) => e.path)).toEqual(['/a5', '/a4']);
      writeFileSync(file, readFileSync(file, 'utf8').replace('size: 2', 'size: 0'));
      expect((await small.app.reload('test')).result).toBe('success');
      expect((await request(`${small.url}/a6`)).status).toBe(404);
      expect(await list()).toMatchObject({ size: 0, errors: [] });
    } finally {
      await small.close();
    }
  });

  it('samples a storm: at most `size` entries a second, the rest counted as skipped', async () => {
    const storm = await startProxy(`version: 1
observability: { errorJournal: { size: 3 } }
routes: [{ name: only, match: { pathPrefix: /only }, upstream: nowhere }]
upstreams: { nowhere: { url: "http://127.0.0.1:9" } }
`);
    try {
      await Promise.all(Array.from({ length: 10 }, (_, i) => request(`${storm.url}/b${i}`)));
      const body = (await request(`${storm.adminUrl}/errors`)).json<{
        recorded: number;
        skipped: number;
        errors: JournalEntry[];
      }>();
      expect(body.recorded + body.skipped).toBe(10);
      expect(body.skipped).toBeGreaterThan(0);
      expect(body.errors).toHaveLength(Math.min(3, body.recorded));
    } finally {
      await storm.close();
    }
  });

  it('builds no entry for successes', async () => {
    const ok = await startProxy(`version: 1
upstreams: { provider: { url: "${upstream.url}" } }
routes: [{ name: api, upstream: provider }]
`);
    try {
      for (let i = 0; i < 20; i++) expect((await request(`${ok.url}/pay/ok`)).status).toBe(200);
      expect((await request(`${ok.adminUrl}/errors`)).json()).toMatchObject({ recorded: 0, errors: [] });
    } finally {
      await ok.close();
    }
  });

  it('refuses a size that is not a whole number from 0 to 10000', async () => {
    for (const bad of ['-1', '1.5', '10001', '"big"']) {
      await expect(
        startProxy(
          `version: 1\nobservability: { errorJournal: { size: ${bad} } }\nroutes: [{ name: a, upstream: u }]\nupstreams: { u: { url: "http://127.0.0.1:9" } }\n`,
        ),
      ).rejects.toThrow(/observability\.errorJournal\.size/);
    }
  });
});
