/**
 * An Upgrade header skips no policy (SPEC §20.3): a WebSocket upgrade is
 * checked and decided like any request: the front door, the rate limit (a
 * maxConcurrent slot held until the tunnel closes), the breaker (a failed
 * handshake is a failure), the route's headers; a refusal is its §5 body
 * with Connection: close; another Upgrade value is served as a plain
 * request without it. On the landed build a 1/min route answered five
 * upgrades in a row, with the route's injected Authorization.
 */
import http, { type IncomingMessage } from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metricValue, startProxy, type TestProxy } from '../helpers/proxy.js';
import { upgradeThrough, type UpgradeAnswer } from '../helpers/websocket.js';

let upstream: http.Server;
let upstreamPort = 0;
let proxy: TestProxy;
const upgrades: { url: string; headers: http.IncomingHttpHeaders }[] = [];
const plain: { url: string; headers: http.IncomingHttpHeaders }[] = [];
const sockets = new Set<Duplex>();

beforeAll(async () => {
  upstream = http.createServer((req, res) => {
    plain.push({ url: req.url ?? '', headers: req.headers });
    // Held until the client (Breakwater) gives up on it.
    if (req.url?.startsWith('/hang')) return;
    res.end('plain');
  });
  upstream.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
    upgrades.push({ url: req.url ?? '', headers: req.headers });
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    if (req.url?.startsWith('/down')) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\nconnection: close\r\n\r\ndown');
      return;
    }
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    socket.on('data', (chunk: Buffer) => socket.write(`echo:${chunk.toString()}`));
    // As a WebSocket server does: the client's end is the tunnel's.
    socket.on('end', () => socket.end());
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  upstreamPort = (upstream.address() as AddressInfo).port;
  proxy = await startProxy(
    `version: 1
upstreams:
  ws: { url: "http://127.0.0.1:${upstreamPort}" }
  flaky:
    url: "http://127.0.0.1:${upstreamPort}"
    circuitBreaker: { failureRate: 50, minimumRequests: 4, window: 10s, hold: 0s }
routes:
  - name: slow
    match: { pathPrefix: /slow }
    upstream: ws
    rateLimit: { rate: 1/min, burst: 1, queue: { size: 0 } }
    headers: { request: { set: { Authorization: "Bearer \${env:KEY}" } } }
  - name: one
    match: { pathPrefix: /one }
    upstream: ws
    rateLimit: { rate: 1000/s, burst: 1000, maxConcurrent: 1, queue: { size: 0 } }
  - name: flaky
    match: { pathPrefix: /down }
    upstream: flaky
  - name: open
    match: { pathPrefix: / }
    upstream: ws
`,
    { env: { KEY: 'ws-route-secret' } },
  );
});

afterAll(async () => {
  await proxy.close();
  for (const socket of sockets) socket.destroy();
  await new Promise((resolve) => upstream.close(resolve));
});

const upgrade = (path: string, headers: http.OutgoingHttpHeaders = {}) => upgradeThrough(proxy.url, path, headers);

const closed = (socket: Socket) =>
  new Promise<void>((resolve) =>
    socket.destroyed ? resolve() : (socket.once('close', () => resolve()), socket.destroy()),
  );

describe('upgrades go through the route (SPEC §20.3)', () => {
  it("a 1/min route upgrades once; the next four get 429 with the §5 body and Connection: close; the route's header was sent", async () => {
    const before = upgrades.length;
    const answers: UpgradeAnswer[] = [];
    for (let i = 0; i < 5; i++) answers.push(await upgrade('/slow/ws'));
    expect(answers.map((answer) => answer.status)).toEqual([101, 429, 429, 429, 429]);
    for (const refused of answers.slice(1)) {
      expect(refused.headers['content-type']).toBe('application/problem+json');
      expect(refused.headers.connection).toBe('close');
      expect(refused.headers['retry-after']).toBeDefined();
      expect(JSON.parse(refused.body)).toMatchObject({ code: 'RATE_LIMITED', route: 'slow', attempts: 0 });
    }
    expect(upgrades.length).toBe(before + 1);
    expect(upgrades.at(-1)!.headers.authorization).toBe('Bearer ws-route-secret');
    await closed(answers[0]!.socket!);
  });

  it('a maxConcurrent slot is held while the tunnel is open and freed when it closes', async () => {
    const first = await upgrade('/one/ws');
    expect(first.status).toBe(101);
    const second = await upgrade('/one/ws');
    expect(second.status).toBe(429);
    await closed(first.socket!);
    // The slot comes back when the proxy sees the tunnel close: poll for it, boundedly.
    let third: UpgradeAnswer | undefined;
    for (let i = 0; i < 50 && third?.status !== 101; i++) {
      third = await upgrade('/one/ws');
      if (third.status !== 101) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(third!.status).toBe(101);
    await closed(third!.socket!);
  });

  it('failed handshakes are breaker failures; an open circuit refuses with 503 CIRCUIT_OPEN before the upstream', async () => {
    const before = upgrades.length;
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) statuses.push((await upgrade('/down/ws')).status);
    // The upstream's 503s are relayed as they came until the breaker opens, then it refuses.
    expect(statuses.slice(0, 4)).toEqual([503, 503, 503, 503]);
    expect(upgrades.length - before).toBe(4);
    const refused = await upgrade('/down/ws');
    expect(refused.status).toBe(503);
    expect(JSON.parse(refused.body)).toMatchObject({ code: 'CIRCUIT_OPEN', upstream: 'flaky' });
    expect(
      await metricValue(proxy.metrics, 'breakwater_circuit_rejections_total', { upstream: 'flaky' }),
    ).toBeGreaterThanOrEqual(1);
  });

  it('a cross-site page cannot open a WebSocket through the proxy (CSWSH)', async () => {
    const before = upgrades.length;
    const refused = await upgrade('/ws', { origin: 'https://evil.example' });
    expect(refused.status).toBe(403);
    expect(JSON.parse(refused.body)).toMatchObject({ code: 'CROSS_ORIGIN_REFUSED', route: null, attempts: 0 });
    expect(upgrades.length).toBe(before);
  });

  it('a target that cannot be sent is 400 before routing', async () => {
    const before = upgrades.length;
    const status = await new Promise<number>((resolve, reject) => {
      const socket = net.connect(Number(new URL(proxy.url).port), '127.0.0.1');
      let data = '';
      socket.on('data', (chunk: Buffer) => (data += chunk.toString()));
      socket.on('close', () => resolve(Number(data.split(' ')[1])));
      socket.on('error', reject);
      socket.write(
        'GET x://../../ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
      );
    });
    expect(status).toBe(400);
    expect(upgrades.length).toBe(before);
  });

  it('another Upgrade value is served as a plain request, without it', async () => {
    const before = plain.length;
    const answer = await upgrade('/plain', { upgrade: 'h2c', 'http2-settings': 'AAMAAABkAAQAAP__' });
    expect(answer.status).toBe(200);
    expect(answer.body).toBe('plain');
    expect(plain.length).toBe(before + 1);
    expect(plain.at(-1)!.headers.upgrade).toBeUndefined();
    const line = proxy.accessLogs().at(-1)!;
    expect(line).toMatchObject({ status: 200, route: 'open' });
  });

  it('a client that resets the connection of such a request while it waits crashes nothing, and its upstream request is cancelled', async () => {
    const before = plain.length;
    const socket = net.connect(Number(new URL(proxy.url).port), '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write('GET /hang/1 HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n');
    await new Promise<void>((resolve, reject) => {
      const deadline = Date.now() + 5000;
      const poll = () =>
        plain.length > before
          ? resolve()
          : Date.now() > deadline
            ? reject(new Error('never forwarded'))
            : setTimeout(poll, 10);
      poll();
    });
    // RST, not FIN: the error node's upgraded socket had no listener for.
    socket.resetAndDestroy();
    await new Promise<void>((resolve, reject) => {
      const deadline = Date.now() + 5000;
      const poll = () =>
        proxy.accessLogs().some((l) => l.path === '/hang/1')
          ? resolve()
          : Date.now() > deadline
            ? reject(new Error('never logged'))
            : setTimeout(poll, 10);
      poll();
    });
    expect(proxy.accessLogs().find((l) => l.path === '/hang/1')).toMatchObject({
      status: 499,
      flags: expect.arrayContaining(['CLIENT_CLOSED']),
    });
    // Still serving.
    expect((await upgrade('/plain', { upgrade: 'h2c' })).status).toBe(200);
  });
});
