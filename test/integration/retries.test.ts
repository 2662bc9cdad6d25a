/**
 * Retries (SPEC §3 `retry`, §4) against the scripted fault upstream: what
 * is retried, how often, how long it waits, what the app finally gets, and
 * what is counted. Backoff bases are 1 ms; time bounds are generous.
 */
import http, { type IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, type Behaviour, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { expectProblem } from '../helpers/problem.js';
import { skippingClock, type SkippingClock } from '../helpers/clock.js';
import { metricValue, request, startProxy, type TestProxy } from '../helpers/proxy.js';

/** Per-path scripts: the k-th request (1-based) to a path gets script(k). */
const scripts = new Map<string, (k: number, req: IncomingMessage) => Behaviour>();
const seen = new Map<string, number>();
function script(path: string, fn: (k: number, req: IncomingMessage) => Behaviour): string {
  scripts.set(path, fn);
  return path;
}
const hits = (path: string) => seen.get(path) ?? 0;

let upstream: FaultUpstream;
let proxy: TestProxy;
let closedPort = 0;

const sequence =
  (...statuses: number[]) =>
  (k: number): Behaviour => {
    const status = statuses[Math.min(k, statuses.length) - 1]!;
    return {
      kind: 'respond',
      status,
      headers: { 'content-type': 'text/plain', 'x-attempt': String(k) },
      body: `attempt ${k}: ${status}`,
    };
  };

beforeAll(async () => {
  upstream = await startFaultUpstream((_n, req) => {
    const path = (req.url ?? '').split('?')[0]!;
    const k = (seen.get(path) ?? 0) + 1;
    seen.set(path, k);
    const fn = scripts.get(path);
    return fn ? fn(k, req) : { kind: 'respond', status: 200, body: 'default' };
  });
  const spare = await startFaultUpstream(() => ({ kind: 'respond' }));
  closedPort = spare.port;
  await spare.close();
  proxy = await startProxy(`version: 1
defaults:
  retry: { backoff: { base: 1ms, max: 5ms } }
upstreams:
  # failureRate 100 never opens: these tests fail on purpose, a lot.
  u: { url: "${upstream.url}", circuitBreaker: { failureRate: 100 } }
  closed: { url: "http://127.0.0.1:${closedPort}", circuitBreaker: { failureRate: 100 } }
routes:
  - { name: once, match: { pathPrefix: /once }, upstream: u, retry: { maxRetries: 1 } }
  - name: all-conditions
    match: { pathPrefix: /all }
    upstream: u
    retry: { maxRetries: 2, retryOn: [5xx, connect-failure, reset, timeout, "429", "409"] }
    timeouts: { perTry: 300ms }
  - { name: connect, match: { pathPrefix: /refused }, upstream: closed }
  - { name: connect-off, match: { pathPrefix: /no-connect-retry }, upstream: closed, retry: { retryOn: [5xx] } }
  - name: small-buffer
    match: { pathPrefix: /small-buffer }
    upstream: u
    retry: { bufferLimit: 1KiB }
  - name: retry-after
    match: { pathPrefix: /ra }
    upstream: u
    retry: { maxRetries: 1, retryOn: ["429", "503"], retryAfter: { honor: true, max: 30s } }
  - name: budget
    match: { pathPrefix: /budget }
    upstream: u
    retry: { maxRetries: 3, retryOn: [5xx], budget: { ratio: 0.2, minPerSecond: 0 } }
  - name: deadline
    match: { pathPrefix: /deadline }
    upstream: u
    timeouts: { perTry: 400ms, total: 1s }
    retry: { maxRetries: 5, retryOn: [timeout] }
  - name: overrides
    match: { pathPrefix: /overrides }
    upstream: u
    clientOverrides: true
    retry: { maxRetries: 3, retryOn: [5xx] }
    timeouts: { perTry: 5s, total: 10s }
  - name: no-overrides
    match: { pathPrefix: /no-overrides }
    upstream: u
    retry: { maxRetries: 3, retryOn: [5xx] }
  - name: sockets
    match: { pathPrefix: /sockets }
    upstream: u
    retry: { budget: { ratio: 1, minPerSecond: 1000 } }
  - { name: default, upstream: u }
`);
});

afterAll(async () => {
  await proxy.close();
  await upstream.close();
});

describe('retries', () => {
  it('turns 503, 503, 200 into a 200 after exactly three attempts', async () => {
    const path = script('/flaky', sequence(503, 503, 200));
    const res = await request(`${proxy.url}${path}`);
    expect(res.status).toBe(200);
    expect(res.text).toBe('attempt 3: 200');
    expect(res.headers['x-breakwater-attempts']).toBe('3');
    expect(hits(path)).toBe(3);
  });

  it('returns the last real 503, body and headers, when retries run out', async () => {
    const path = script('/once/down', sequence(503, 503, 503));
    const res = await request(`${proxy.url}${path}`);
    expect(res.status).toBe(503);
    expect(res.text).toBe('attempt 2: 503');
    expect(res.headers['x-attempt']).toBe('2');
    expect(res.headers['x-breakwater-attempts']).toBe('2');
    expect(res.headers['x-breakwater-error']).toBeUndefined();
    expect(hits(path)).toBe(2);
  });

  it('logs the attempts and the RETRIED flag, and counts retries by reason', async () => {
    const before = await metricValue(proxy.metrics, 'breakwater_retries_total', {
      route: 'default',
      reason: 'http_5xx',
    });
    const path = script('/logged', sequence(502, 200));
    const res = await request(`${proxy.url}${path}`);
    const line = proxy.accessLogs().find((entry) => entry.requestId === res.headers['x-request-id'])!;
    expect(line).toMatchObject({ status: 200, attempts: 2, route: 'default' });
    expect(line.flags).toEqual(['RETRIED']);
    expect(await metricValue(proxy.metrics, 'breakwater_retries_total', { route: 'default', reason: 'http_5xx' })).toBe(
      before + 1,
    );
    expect(
      await metricValue(proxy.metrics, 'breakwater_upstream_attempts_total', {
        route: 'default',
        upstream: 'u',
        outcome: 'http_5xx',
      }),
    ).toBeGreaterThanOrEqual(1);
  });
});

describe('retryOn conditions', () => {
  it.each([
    ['5xx (500)', '/all/500', [500, 200]],
    ['"429"', '/all/429', [429, 200]],
    ['"409"', '/all/409', [409, 200]],
  ] as const)('retries %s when listed', async (_name, path, statuses) => {
    script(path, sequence(...statuses));
    const res = await request(`${proxy.url}${path}`);
    expect(res.status).toBe(200);
    expect(hits(path)).toBe(2);
  });

  it('retries a reset before the headers', async () => {
    const path = script('/all/reset', (k) => (k === 1 ? { kind: 'reset' } : { kind: 'respond', body: 'after reset' }));
    const res = await request(`${proxy.url}${path}`);
    expect(res.status).toBe(200);
    expect(res.text).toBe('after reset');
    expect(hits(path)).toBe(2);
  });

  it('retries a per-try timeout', async () => {
    const path = script('/all/slow', (k) => (k === 1 ? { kind: 'hang' } : { kind: 'respond', body: 'fast now' }));
    const res = await request(`${proxy.url}${path}`);
    expect(res.text).toBe('fast now');
    expect(res.headers['x-breakwater-attempts']).toBe('2');
  });

  it('retries a refused connection (connect-failure, listed by default)', async () => {
    const res = await request(`${proxy.url}/refused`);
    expectProblem(res, 'UPSTREAM_CONNECT_FAILED', { route: 'connect', upstream: 'closed', attempts: 4 }); // the default maxRetries, 3
  });

  it('does not retry a refused connection when connect-failure is not listed', async () => {
    const res = await request(`${proxy.url}/no-connect-retry`);
    expectProblem(res, 'UPSTREAM_CONNECT_FAILED', { route: 'connect-off', upstream: 'closed', attempts: 1 });
  });

  it.each([
    ['500 (gateway-error does not include it)', 500],
    ['404', 404],
    ['400', 400],
    ['409 (not listed by default)', 409],
  ])('does not retry %s by default', async (_name, status) => {
    const path = script(`/default-${status}`, sequence(status, 200));
    const res = await request(`${proxy.url}${path}`);
    expect(res.status).toBe(status);
    expect(hits(path)).toBe(1);
  });

  it.each([502, 503, 504])('retries %d by default (gateway-error)', async (status) => {
    const path = script(`/default-gw-${status}`, sequence(status, 200));
    expect((await request(`${proxy.url}${path}`)).status).toBe(200);
    expect(hits(path)).toBe(2);
  });

  it('does not retry a reset after the response started: the client response aborts', async () => {
    const path = script('/mid-body', () => ({ kind: 'close-mid-body', body: 'partial', contentLength: 100 }));
    const outcome = await new Promise<string>((resolve) => {
      http
        .get(`${proxy.url}${path}`, { agent: false }, (res) => {
          res.on('data', () => {});
          res.on('end', () => resolve('complete'));
          res.on('error', () => resolve('aborted'));
          res.on('aborted', () => resolve('aborted'));
        })
        .on('error', () => resolve('aborted'));
    });
    expect(outcome).toBe('aborted');
    expect(hits(path)).toBe(1);
  });
});

describe('methods and bodies', () => {
  const echoBody =
    (status: number) =>
    (k: number, req: IncomingMessage): Behaviour => ({
      kind: 'custom',
      handle: (_r, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          bodies.push({
            k,
            body: Buffer.concat(chunks).toString(),
            key: req.headers['idempotency-key'] as string | undefined,
          });
          res.writeHead(k === 1 ? status : 200).end(`attempt ${k}`);
        });
      },
    });
  const bodies: { k: number; body: string; key: string | undefined }[] = [];

  it('sends a POST without Idempotency-Key once', async () => {
    const path = script('/post-plain', sequence(503, 200));
    const res = await request(`${proxy.url}${path}`, { method: 'POST', body: '{"amount":100}' });
    expect(res.status).toBe(503);
    expect(hits(path)).toBe(1);
  });

  it('retries a POST with Idempotency-Key, replaying the same bytes and key', async () => {
    bodies.length = 0;
    const path = script('/post-keyed', echoBody(503));
    const payload = JSON.stringify({ amount: 100, note: 'é ✓ \u0000 binary-safe' });
    const res = await request(`${proxy.url}${path}`, {
      method: 'POST',
      body: payload,
      headers: { 'idempotency-key': 'key-123' },
    });
    expect(res.status).toBe(200);
    expect(bodies).toEqual([
      { k: 1, body: payload, key: 'key-123' },
      { k: 2, body: payload, key: 'key-123' },
    ]);
  });

  it.each(['PUT', 'DELETE', 'PATCH with a key'])('retries %s', async (what) => {
    const method = what.split(' ')[0]!;
    const path = script(`/method-${method}-${what.length}`, sequence(503, 200));
    const headers = what.includes('key') ? { 'idempotency-key': 'k' } : undefined;
    const res = await request(`${proxy.url}${path}`, { method, body: method === 'DELETE' ? undefined : 'x', headers });
    expect(res.status).toBe(200);
    expect(hits(path)).toBe(2);
  });

  it('does not retry PATCH without a key', async () => {
    const path = script('/patch-plain', sequence(503, 200));
    expect((await request(`${proxy.url}${path}`, { method: 'PATCH', body: 'x' })).status).toBe(503);
    expect(hits(path)).toBe(1);
  });

  it('streams a body above bufferLimit through once, intact, and does not retry it', async () => {
    bodies.length = 0;
    const path = script('/small-buffer/big', echoBody(503));
    const payload = 'z'.repeat(4096);
    const res = await request(`${proxy.url}${path}`, { method: 'PUT', body: payload });
    expect(res.status).toBe(503);
    expect(bodies).toEqual([{ k: 1, body: payload, key: undefined }]);
    const line = proxy.accessLogs().find((entry) => entry.requestId === res.headers['x-request-id'])!;
    expect(line.flags).toContain('BODY_NOT_REPLAYABLE');
  });

  it('does not retry a chunked body of unknown length', async () => {
    const path = script('/chunked-put', sequence(503, 200));
    const res = await request(`${proxy.url}${path}`, { method: 'PUT', body: 'abc', chunked: true });
    expect(res.status).toBe(503);
    expect(hits(path)).toBe(1);
  });

  it('replays a body within bufferLimit', async () => {
    bodies.length = 0;
    const path = script('/small-buffer/small', echoBody(502));
    const res = await request(`${proxy.url}${path}`, { method: 'PUT', body: 'y'.repeat(1000) });
    expect(res.status).toBe(200);
    expect(bodies.map((b) => b.body.length)).toEqual([1000, 1000]);
  });
});

describe('Retry-After', () => {
  // Its own proxy on a clock whose sleeps pass at once: the wait chosen is
  // asserted exactly, and a 20 s Retry-After costs no real time.
  let clocked: TestProxy;
  let clock: SkippingClock;
  beforeAll(async () => {
    clock = skippingClock();
    clocked = await startProxy(
      `version: 1
defaults:
  retry: { backoff: { base: 1ms, max: 5ms } }
upstreams:
  u: { url: "${upstream.url}", circuitBreaker: { failureRate: 100 } }
routes:
  - name: retry-after
    match: { pathPrefix: /ra }
    upstream: u
    retry: { maxRetries: 1, retryOn: ["429", "503"], retryAfter: { honor: true, max: 30s } }
    timeouts: { total: 60s }
`,
      { clock },
    );
  });
  afterAll(() => clocked.close());

  it('waits the seconds a 429 asks for before the next attempt', async () => {
    const path = script('/ra/seconds', (k) =>
      k === 1 ? { kind: 'respond', status: 429, headers: { 'retry-after': '20' } } : { kind: 'respond', body: 'ok' },
    );
    const sleepsBefore = clock.sleeps.length;
    const started = Date.now();
    const res = await request(`${clocked.url}${path}`);
    expect(res.status).toBe(200);
    expect(hits(path)).toBe(2);
    expect(clock.sleeps.slice(sleepsBefore)).toEqual([20_000]);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('waits until an HTTP-date a 503 names, read on the injected wall clock', async () => {
    // An hour ahead of the system clock: a date read against Date.now() would be past retryAfter.max.
    clock.advance(3_600_000);
    let named = 0;
    const path = script('/ra/date', (k) => {
      // 20 s ahead on the proxy's clock, in whole seconds as HTTP-dates have it.
      named = Math.ceil((clock.wall() + 20_000) / 1000) * 1000;
      return k === 1
        ? { kind: 'respond', status: 503, headers: { 'retry-after': new Date(named).toUTCString() } }
        : { kind: 'respond', body: 'ok' };
    });
    const sleepsBefore = clock.sleeps.length;
    const res = await request(`${clocked.url}${path}`);
    expect(res.status).toBe(200);
    expect(hits(path)).toBe(2);
    const waits = clock.sleeps.slice(sleepsBefore);
    expect(waits).toHaveLength(1);
    // The date less the clock's wall time when the answer was read: 20-21 s, never the backoff's few ms.
    expect(waits[0]).toBeGreaterThan(19_000);
    expect(waits[0]).toBeLessThanOrEqual(21_000);
  });

  it('waits a retry-after-ms hint (OpenAI) rather than the Retry-After beside it (SPEC §15)', async () => {
    const path = script('/ra/ms', (k) =>
      k === 1
        ? { kind: 'respond', status: 429, headers: { 'retry-after-ms': '300', 'retry-after': '20' } }
        : { kind: 'respond', body: 'ok' },
    );
    const sleepsBefore = clock.sleeps.length;
    const res = await request(`${clocked.url}${path}`);
    expect(res.status).toBe(200);
    expect(hits(path)).toBe(2);
    expect(clock.sleeps.slice(sleepsBefore)).toEqual([300]);
  });

  it("waits Azure OpenAI's x-ms-retry-after-ms, and passes over a hint that is no number", async () => {
    const path = script('/ra/azure', (k) =>
      k === 1
        ? {
            kind: 'respond',
            status: 429,
            headers: { 'retry-after-ms': 'soon', 'x-ms-retry-after-ms': '1250.5', 'retry-after': '2' },
          }
        : { kind: 'respond', body: 'ok' },
    );
    const sleepsBefore = clock.sleeps.length;
    const res = await request(`${clocked.url}${path}`);
    expect(res.status).toBe(200);
    expect(clock.sleeps.slice(sleepsBefore)).toEqual([1250.5]);
  });

  it('passes a 429 whose retry-after-ms is beyond retryAfter.max back at once, its hints kept', async () => {
    const path = script('/ra/ms-long', () => ({
      kind: 'respond',
      status: 429,
      headers: { 'retry-after-ms': '45000' },
      body: 'slow down',
    }));
    const sleepsBefore = clock.sleeps.length;
    const res = await request(`${clocked.url}${path}`);
    expect(res.status).toBe(429);
    expect(res.headers['retry-after-ms']).toBe('45000');
    expect(hits(path)).toBe(1);
    expect(clock.sleeps.slice(sleepsBefore)).toEqual([]);
  });

  it('passes a 429 whose Retry-After is beyond retryAfter.max back at once, with its header', async () => {
    const path = script('/ra/long', () => ({
      kind: 'respond',
      status: 429,
      headers: { 'retry-after': '120' },
      body: 'slow down',
    }));
    const started = Date.now();
    const res = await request(`${proxy.url}${path}`);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(res.status).toBe(429);
    expect(res.headers['retry-after']).toBe('120');
    expect(res.text).toBe('slow down');
    expect(hits(path)).toBe(1);
  });
});

describe('retry budget', () => {
  it('keeps retries to ratio x requests against an upstream that always fails, and counts the rest', async () => {
    const path = script('/budget/down', () => ({ kind: 'respond', status: 503, body: 'down' }));
    const exhaustedBefore = await metricValue(proxy.metrics, 'breakwater_retry_budget_exhausted_total', {
      route: 'budget',
    });
    const retriesBefore = await metricValue(proxy.metrics, 'breakwater_retries_total', {
      route: 'budget',
      reason: 'http_5xx',
    });
    const responses = [];
    for (let i = 0; i < 200; i++) responses.push(await request(`${proxy.url}${path}`));
    expect(responses.every((r) => r.status === 503)).toBe(true);
    const retries =
      (await metricValue(proxy.metrics, 'breakwater_retries_total', { route: 'budget', reason: 'http_5xx' })) -
      retriesBefore;
    expect(hits(path)).toBe(200 + retries);
    expect(retries).toBeGreaterThan(0);
    expect(retries).toBeLessThanOrEqual(0.2 * 200 + 2);
    const exhausted =
      (await metricValue(proxy.metrics, 'breakwater_retry_budget_exhausted_total', { route: 'budget' })) -
      exhaustedBefore;
    const flagged = proxy
      .accessLogs()
      .filter((line) => line.route === 'budget' && (line.flags as string[]).includes('RETRY_BUDGET_EXHAUSTED')).length;
    expect(exhausted).toBeGreaterThanOrEqual(200 - retries - 1);
    expect(flagged).toBe(exhausted);
    expect(
      await metricValue(proxy.metrics, 'breakwater_errors_total', { route: 'budget', code: 'RETRY_BUDGET_EXHAUSTED' }),
    ).toBe(exhausted);
  });
});

describe('total deadline', () => {
  it('answers 504 after about total, not maxRetries x perTry', async () => {
    const path = script('/deadline/hang', () => ({ kind: 'hang' }));
    const started = Date.now();
    const res = await request(`${proxy.url}${path}`);
    const elapsed = Date.now() - started;
    expectProblem(res, 'UPSTREAM_TIMEOUT', {
      route: 'deadline',
      upstream: 'u',
      attempts: 3,
      detail: /total deadline of 1s/,
    });
    expect(elapsed).toBeGreaterThanOrEqual(950);
    expect(elapsed).toBeLessThan(2000); // 6 attempts x 400 ms would be 2.4 s
    expect(hits(path)).toBe(3);
  });
});

describe('client overrides', () => {
  it('lowers maxRetries with X-Breakwater-Max-Retries, and strips the header', async () => {
    const path = script('/overrides/lower', (k, req) => {
      lastHeaders = req.headers;
      return sequence(503, 503, 503, 200)(k);
    });
    const res = await request(`${proxy.url}${path}`, {
      headers: { 'x-breakwater-max-retries': '1', 'x-breakwater-timeout': '5s' },
    });
    expect(res.status).toBe(503);
    expect(hits(path)).toBe(2);
    expect(lastHeaders['x-breakwater-max-retries']).toBeUndefined();
    expect(lastHeaders['x-breakwater-timeout']).toBeUndefined();
  });

  it('never raises maxRetries above the config', async () => {
    const path = script('/overrides/raise', sequence(503, 503, 503, 503, 503, 503, 200));
    const res = await request(`${proxy.url}${path}`, { headers: { 'x-breakwater-max-retries': '10' } });
    expect(res.status).toBe(503);
    expect(hits(path)).toBe(4);
  });

  it('shortens total with X-Breakwater-Timeout', async () => {
    const path = script('/overrides/timeout', () => ({ kind: 'hang' }));
    const started = Date.now();
    const res = await request(`${proxy.url}${path}`, { headers: { 'x-breakwater-timeout': '300ms' } });
    expect(res.status).toBe(504);
    expect(Date.now() - started).toBeLessThan(4000); // perTry is 5s
  });

  it('ignores both headers on a route without clientOverrides, and strips them', async () => {
    const path = script('/no-overrides/x', (k, req) => {
      lastHeaders = req.headers;
      return sequence(503, 503, 200)(k);
    });
    const res = await request(`${proxy.url}${path}`, { headers: { 'x-breakwater-max-retries': '0' } });
    expect(res.status).toBe(200);
    expect(hits(path)).toBe(3);
    expect(lastHeaders['x-breakwater-max-retries']).toBeUndefined();
  });
});
let lastHeaders: http.IncomingHttpHeaders = {};

describe('sockets', () => {
  it('keeps the upstream connection count bounded after 1,000 retried requests', async () => {
    // Each request's first attempt gets a 503 with a body, its retry a 200
    // (attempts of one request share its X-Request-Id).
    const attemptsById = new Map<string, number>();
    const path = script('/sockets', (_k, req) => {
      const id = String(req.headers['x-request-id']);
      const n = (attemptsById.get(id) ?? 0) + 1;
      attemptsById.set(id, n);
      return n === 1
        ? { kind: 'respond', status: 503, headers: { 'content-length': 100 }, body: 'x'.repeat(100) }
        : { kind: 'respond', body: 'ok' };
    });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 10 });
    const one = () =>
      new Promise<number>((resolve, reject) => {
        http
          .get(`${proxy.url}${path}`, { agent }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          })
          .on('error', reject);
      });
    const accepted = upstream.connectionsAccepted();
    const statuses: number[] = [];
    for (let batch = 0; batch < 100; batch++) statuses.push(...(await Promise.all(Array.from({ length: 10 }, one))));
    agent.destroy();
    expect(statuses.filter((s) => s === 200).length).toBe(1000);
    expect(hits(path)).toBe(2000);
    // Discarded 503 bodies are drained, so their sockets go back to the pool.
    expect(upstream.connectionsAccepted() - accepted).toBeLessThanOrEqual(30);
    expect(upstream.openConnections()).toBeLessThanOrEqual(30);
  });
});
