/**
 * A client that goes away (SPEC §4, STYLE's http-proxy trap): its upstream
 * request is destroyed at once, before or during the response, and nothing
 * is left behind on either side.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, waitUntil, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { metricValue, startProxy, type TestProxy } from '../helpers/proxy.js';

let upstream: FaultUpstream;
let proxy: TestProxy;

beforeAll(async () => {
  upstream = await startFaultUpstream((_n, req) =>
    req.url?.startsWith('/stream')
      ? { kind: 'slow-body', chunks: Array.from({ length: 100 }, (_, i) => `chunk ${i}\n`), intervalMs: 50 }
      : { kind: 'hang' },
  );
  proxy = await startProxy(`version: 1
upstreams:
  u: { url: "${upstream.url}", pool: { maxSockets: 512 } }
routes:
  - { name: r, upstream: u, timeouts: { perTry: 60s, total: 60s } }
`);
});

afterAll(async () => {
  await proxy.close();
  await upstream.close();
});

/** Starts a request and destroys it once the upstream has received it (or once the first body chunk arrived). */
function abortAfter(path: string, when: () => boolean, afterFirstChunk = false): Promise<void> {
  return new Promise((resolve) => {
    const req = http.get(`${proxy.url}${path}`, { agent: false }, (res) => {
      if (afterFirstChunk) res.once('data', () => req.destroy());
    });
    req.on('error', () => {});
    req.on('close', () => resolve());
    if (!afterFirstChunk) void waitUntil(when, 10_000, 'the upstream to receive the request').then(() => req.destroy());
  });
}

describe('client aborts', () => {
  it('destroys the upstream request when the client leaves before the response', async () => {
    const path = '/hang-once';
    await abortAfter(path, () => upstream.requests.some((r) => r.url === path));
    const received = upstream.requests.find((r) => r.url === path)!;
    await upstream.waitFor(() => received.closedEarly, 5000);
    await waitUntil(() => proxy.accessLogs().some((line) => line.path === path), 5000, 'the access log');
    const line = proxy.accessLogs().find((entry) => entry.path === path)!;
    expect(line).toMatchObject({ status: 499, route: 'r', attempts: 1 });
    expect(line.flags).toContain('CLIENT_CLOSED');
  });

  it('destroys the upstream response when the client leaves mid-body', async () => {
    const path = '/stream-abort';
    await abortAfter(path, () => false, true);
    const received = upstream.requests.find((r) => r.url === path)!;
    await upstream.waitFor(() => received.closedEarly, 5000);
    expect(received.closedEarly).toBe(true);
  });

  it('leaves no sockets behind after 200 aborted requests', async () => {
    const before = await metricValue(proxy.metrics, 'breakwater_requests_total', {
      route: 'r',
      method: 'GET',
      code: '499',
    });
    const start = upstream.requests.length;
    const aborts: Promise<void>[] = [];
    for (let i = 0; i < 200; i++) {
      const path = `/hang-many-${i}`;
      aborts.push(abortAfter(path, () => upstream.requests.some((r) => r.url === path)));
    }
    await Promise.all(aborts);
    await upstream.waitFor(() => upstream.openConnections() === 0, 10_000);
    const received = upstream.requests.slice(start);
    expect(received).toHaveLength(200);
    expect(received.every((r) => r.closedEarly)).toBe(true);
    expect(proxy.app.proxy.server.listening).toBe(true);
    await upstream.waitFor(
      () => proxy.accessLogs().filter((l) => String(l.path).startsWith('/hang-many-')).length === 200,
      5000,
    );
    expect(
      await metricValue(proxy.metrics, 'breakwater_requests_total', { route: 'r', method: 'GET', code: '499' }),
    ).toBe(before + 200);
    const connections = await new Promise<number>((resolve) =>
      proxy.app.proxy.server.getConnections((_e, count) => resolve(count)),
    );
    expect(connections).toBe(0);
  });
});
