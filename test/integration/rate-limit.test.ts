/**
 * Local rate limits (SPEC §3 `rateLimit`, §4): token bucket, concurrency
 * cap held until the response ends, queue size and timeout, per-key
 * limiters with a bounded number of live keys. Refusals are RATE_LIMITED
 * with Retry-After and the IETF RateLimit fields.
 */
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, waitUntil, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { expectProblem } from '../helpers/problem.js';
import { metricValue, request, startProxy, type TestProxy } from '../helpers/proxy.js';
import { MAX_KEYS } from '../../src/policy/rate-limit/limiters.js';

let upstream: FaultUpstream;
let proxy: TestProxy;
let inFlight = 0;
let maxInFlight = 0;

beforeAll(async () => {
  upstream = await startFaultUpstream((_n, req) => {
    const path = req.url ?? '';
    if (path.startsWith('/conc')) {
      // Counts a request as in flight until its (slow) body has been sent.
      return {
        kind: 'custom',
        handle: (_req, res) => {
          inFlight++;
          maxInFlight = Math.max(maxInFlight, inFlight);
          res.writeHead(200);
          res.write('start ');
          setTimeout(() => {
            inFlight--;
            res.end('end');
          }, 80);
        },
      };
    }
    if (path.startsWith('/slow')) return { kind: 'slow-headers', delayMs: 600 };
    return { kind: 'respond', body: 'ok' };
  });
  proxy = await startProxy(`version: 1
defaults: { retry: { maxRetries: 0 } }
upstreams:
  u: { url: "${upstream.url}" }
routes:
  - name: bucket
    match: { pathPrefix: /bucket }
    upstream: u
    rateLimit: { rate: 5/s, burst: 5, queue: { size: 0 } }
  - name: conc
    match: { pathPrefix: /conc }
    upstream: u
    rateLimit: { maxConcurrent: 2, queue: { size: 100, timeout: 10s } }
  - name: queue-timeout
    match: { pathPrefix: /slow/timeout }
    upstream: u
    rateLimit: { maxConcurrent: 1, queue: { size: 10, timeout: 200ms } }
  - name: queue-full
    match: { pathPrefix: /slow/full }
    upstream: u
    rateLimit: { maxConcurrent: 1, queue: { size: 1, timeout: 10s } }
  - name: tenants
    match: { pathPrefix: /tenant }
    upstream: u
    rateLimit: { rate: 1/min, burst: 1, queue: { size: 0 }, key: "header:X-Tenant" }
  - name: many-keys
    match: { pathPrefix: /many }
    upstream: u
    rateLimit: { rate: 100/s, burst: 10, key: "header:X-Tenant" }
`);
});

afterAll(async () => {
  await proxy.close();
  await upstream.close();
});

const route = (name: string) => proxy.app.runtime().routes.find((r) => r.name === name)!;

describe('rate limits', () => {
  it('lets a burst through and refuses the rest with RATE_LIMITED, Retry-After and RateLimit fields', async () => {
    const limitedBefore = await metricValue(proxy.metrics, 'breakwater_rate_limited_total', { route: 'bucket' });
    const responses = await Promise.all(Array.from({ length: 20 }, () => request(`${proxy.url}/bucket/x`)));
    const ok = responses.filter((r) => r.status === 200);
    const refused = responses.filter((r) => r.status !== 200);
    expect(ok.length).toBeGreaterThanOrEqual(5);
    expect(ok.length).toBeLessThanOrEqual(7); // 5, plus what refilled meanwhile at 5/s
    for (const res of refused) {
      const body = expectProblem(res, 'RATE_LIMITED', {
        route: 'bucket',
        upstream: 'u',
        attempts: 0,
        detail: /Route 'bucket' is rate limited/,
      });
      expect(res.headers['retry-after']).toBe('1');
      expect(body.retryAfterSeconds).toBe(1);
      expect(res.headers['ratelimit-policy']).toBe('"bucket";q=5;w=1');
      expect(res.headers['ratelimit']).toBe('"bucket";r=0;t=1');
    }
    expect(
      (await metricValue(proxy.metrics, 'breakwater_rate_limited_total', { route: 'bucket' })) - limitedBefore,
    ).toBe(refused.length);
    const line = proxy.accessLogs().find((entry) => entry.requestId === refused[0]!.headers['x-request-id'])!;
    expect(line.flags).toContain('RATE_LIMITED');
  });

  it('refills at the configured rate', async () => {
    await new Promise((resolve) => setTimeout(resolve, 1300)); // >= 5 tokens back
    const responses = await Promise.all(Array.from({ length: 5 }, () => request(`${proxy.url}/bucket/y`)));
    expect(responses.filter((r) => r.status === 200).length).toBeGreaterThanOrEqual(5);
  });

  it('never lets more than maxConcurrent requests reach the upstream, a slot held until the body ends', async () => {
    maxInFlight = 0;
    const responses = await Promise.all(Array.from({ length: 10 }, () => request(`${proxy.url}/conc/x`)));
    expect(responses.every((r) => r.status === 200 && r.text === 'start end')).toBe(true);
    expect(maxInFlight).toBe(2);
  });

  it('shows the queue depth at scrape time', async () => {
    const pending = Array.from({ length: 8 }, () => request(`${proxy.url}/conc/queued`));
    await waitUntil(() => route('conc').rateLimit!.queueDepth() > 0, 5000, 'requests to queue');
    const text = (await request(`${proxy.adminUrl}/metrics`)).text;
    expect(text).toMatch(/^breakwater_rate_limit_queue_depth\{route="conc"\} [1-9]/m);
    await Promise.all(pending);
    expect(route('conc').rateLimit!.queueDepth()).toBe(0);
  });

  it('refuses a request that waited longer than queue.timeout', async () => {
    const first = request(`${proxy.url}/slow/timeout/1`);
    await upstream.waitFor(() => upstream.requests.some((r) => r.url === '/slow/timeout/1'));
    const started = Date.now();
    const second = await request(`${proxy.url}/slow/timeout/2`);
    const waited = Date.now() - started;
    expectProblem(second, 'RATE_LIMITED', {
      route: 'queue-timeout',
      upstream: 'u',
      attempts: 0,
      detail: /within queue.timeout \(200 ms\)/,
    });
    expect(waited).toBeGreaterThanOrEqual(190);
    expect(waited).toBeLessThan(3000);
    expect((await first).status).toBe(200);
    expect(upstream.requests.some((r) => r.url === '/slow/timeout/2')).toBe(false);
  });

  it('refuses at once when the queue is full', async () => {
    const first = request(`${proxy.url}/slow/full/1`);
    await upstream.waitFor(() => upstream.requests.some((r) => r.url === '/slow/full/1'));
    const second = request(`${proxy.url}/slow/full/2`); // waits in the queue
    await waitUntil(() => route('queue-full').rateLimit!.queueDepth() === 1, 5000, 'the second request to queue');
    const third = await request(`${proxy.url}/slow/full/3`);
    expectProblem(third, 'RATE_LIMITED', {
      route: 'queue-full',
      upstream: 'u',
      attempts: 0,
      detail: /queue is full \(queue.size 1\)/,
    });
    expect((await first).status).toBe(200);
    expect((await second).status).toBe(200);
  });

  it('keeps one limit per header value', async () => {
    const a1 = await request(`${proxy.url}/tenant/x`, { headers: { 'x-tenant': 'a' } });
    const a2 = await request(`${proxy.url}/tenant/x`, { headers: { 'x-tenant': 'a' } });
    const b1 = await request(`${proxy.url}/tenant/x`, { headers: { 'x-tenant': 'b' } });
    expect([a1.status, a2.status, b1.status]).toEqual([200, 429, 200]);
    expect(a2.headers['retry-after']).toBe('60');
    expect(a2.headers['ratelimit-policy']).toBe('"tenants";q=1;w=60');
  });

  it('bounds the number of live keys: 10,000 distinct values do not grow it without limit', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 50 });
    const one = (i: number) =>
      new Promise<number>((resolve, reject) => {
        http
          .get(`${proxy.url}/many/x`, { agent, headers: { 'x-tenant': `tenant-${i}` } }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          })
          .on('error', reject);
      });
    let ok = 0;
    for (let batch = 0; batch < 100; batch++) {
      const statuses = await Promise.all(Array.from({ length: 100 }, (_, i) => one(batch * 100 + i)));
      ok += statuses.filter((s) => s === 200).length;
      expect(route('many-keys').rateLimit!.size()).toBeLessThanOrEqual(MAX_KEYS);
    }
    agent.destroy();
    expect(ok).toBe(10_000);
    expect(route('many-keys').rateLimit!.size()).toBeLessThanOrEqual(MAX_KEYS);
  });

  it('closes the connection when it refuses an upload it never read (no draining a large body)', async () => {
    expect((await request(`${proxy.url}/tenant/x`, { headers: { 'x-tenant': 'uploader' } })).status).toBe(200);
    // The second request of this tenant is refused; its 1 MB body is announced but never sent.
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(Number(new URL(proxy.url).port), '127.0.0.1', () =>
        socket.write(
          'POST /tenant/upload HTTP/1.1\r\nHost: x\r\nX-Tenant: uploader\r\nContent-Length: 1000000\r\n\r\n',
        ),
      );
      let text = '';
      socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
      socket.on('close', () => resolve(text));
      socket.on('error', reject);
      socket.setTimeout(10_000, () =>
        socket.destroy(new Error('the proxy kept the connection open, waiting to drain the body')),
      );
    });
    expect(answer).toMatch(/^HTTP\/1\.1 429/);
    expect(answer).toMatch(/\r\nconnection: close\r\n/i);
  });
});
