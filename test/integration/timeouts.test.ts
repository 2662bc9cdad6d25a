/**
 * Timeouts are deadlines, not idle timers (SPEC §3, §4): `connect` bounds
 * TCP+TLS setup, `perTry` bounds the wait for response headers, and a slow
 * body is never cut. Time bounds here are lower bounds or generous ceilings.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, startRawServer, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { expectProblem } from '../helpers/problem.js';
import { metricValue, request, startProxy, type TestProxy } from '../helpers/proxy.js';

let upstream: FaultUpstream;
let silent: Awaited<ReturnType<typeof startRawServer>>;
let proxy: TestProxy;

beforeAll(async () => {
  upstream = await startFaultUpstream((_n, req) => {
    switch (req.url) {
      case '/hang':
        return { kind: 'hang' };
      case '/slow-headers':
        return { kind: 'slow-headers', delayMs: 100, body: 'late but in time' };
      case '/slow-body':
        return { kind: 'slow-body', chunks: ['a', 'b', 'c', 'd', 'e', 'f'], intervalMs: 150 };
      default:
        return { kind: 'respond', body: 'ok' };
    }
  });
  // Accepts TCP and never speaks: a TLS handshake with it never completes.
  silent = await startRawServer(() => {});
  proxy = await startProxy(`version: 1
# One attempt per request: retries have their own tests.
defaults: { retry: { maxRetries: 0 } }
upstreams:
  u: { url: "${upstream.url}" }
  silent-tls: { url: "https://127.0.0.1:${silent.port}" }
routes:
  - name: quick
    match: { pathPrefix: /quick }
    stripPrefix: true
    upstream: u
    timeouts: { perTry: 400ms, total: 5s }
  - name: silent
    match: { pathPrefix: /silent }
    upstream: silent-tls
    timeouts: { connect: 300ms, perTry: 10s }
`);
});

afterAll(async () => {
  await proxy.close();
  await Promise.all([upstream.close(), silent.close()]);
});

describe('timeouts', () => {
  it('answers 504 UPSTREAM_TIMEOUT when no headers come within perTry, and closes the upstream request', async () => {
    const started = Date.now();
    const res = await request(`${proxy.url}/quick/hang`);
    const elapsed = Date.now() - started;
    expectProblem(res, 'UPSTREAM_TIMEOUT', {
      instance: '/quick/hang',
      route: 'quick',
      upstream: 'u',
      attempts: 1,
      detail: /sent no response headers within perTry 400ms/,
    });
    expect(elapsed).toBeGreaterThanOrEqual(390);
    expect(elapsed).toBeLessThan(5000);
    const received = upstream.requests.filter((r) => r.url === '/hang').at(-1)!;
    await upstream.waitFor(() => received.closedEarly);
    expect(
      await metricValue(proxy.metrics, 'breakwater_upstream_attempts_total', {
        route: 'quick',
        upstream: 'u',
        outcome: 'timeout',
      }),
    ).toBe(1);
  });

  it('lets headers that arrive within perTry through', async () => {
    const res = await request(`${proxy.url}/quick/slow-headers`);
    expect(res.status).toBe(200);
    expect(res.text).toBe('late but in time');
  });

  it('never cuts a slow body: perTry ends with the headers', async () => {
    // Six chunks 150 ms apart take longer than perTry (400 ms).
    const res = await request(`${proxy.url}/quick/slow-body`);
    expect(res.status).toBe(200);
    expect(res.text).toBe('abcdef');
  });

  it('answers 502 UPSTREAM_CONNECT_FAILED when the connection (TCP+TLS) is not up within connect', async () => {
    const started = Date.now();
    const res = await request(`${proxy.url}/silent`);
    const elapsed = Date.now() - started;
    expectProblem(res, 'UPSTREAM_CONNECT_FAILED', {
      route: 'silent',
      upstream: 'silent-tls',
      attempts: 1,
      detail: /within 300 ms \(connect timeout\)/,
    });
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(8000);
    await proxy.metrics.registry.metrics();
    expect(
      await metricValue(proxy.metrics, 'breakwater_upstream_attempts_total', {
        route: 'silent',
        upstream: 'silent-tls',
        outcome: 'connect_failure',
      }),
    ).toBe(1);
  });

  it('flags the access log line UPSTREAM_TIMEOUT', async () => {
    await request(`${proxy.url}/quick/hang`);
    const line = proxy
      .accessLogs()
      .filter((entry) => entry.path === '/quick/hang')
      .at(-1)!;
    expect(line).toMatchObject({ status: 504, route: 'quick', upstream: 'u', attempts: 1 });
    expect(line.flags).toEqual(['UPSTREAM_TIMEOUT']);
  });

  it('keeps serving the connection after a timeout', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const first = await new Promise<number>((resolve) =>
        http.get(`${proxy.url}/quick/hang`, { agent }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode!));
        }),
      );
      const second = await new Promise<number>((resolve) =>
        http.get(`${proxy.url}/quick/ok`, { agent }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode!));
        }),
      );
      expect([first, second]).toEqual([504, 200]);
    } finally {
      agent.destroy();
    }
  });
});
