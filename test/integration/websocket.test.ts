/**
 * WebSocket upgrades (SPEC §4): proxied both ways after the 101, with the
 * route's path rewrite; a failed upgrade gets a problem body on the socket;
 * timeouts apply to connecting and to the handshake only.
 */
import http, { type IncomingMessage } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRawServer } from '../fixtures/fault-upstream.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { upgradeThrough } from '../helpers/websocket.js';

let wsUpstream: http.Server;
let wsPort = 0;
let silent: Awaited<ReturnType<typeof startRawServer>>;
let proxy: TestProxy;
const upgrades: { url: string; headers: http.IncomingHttpHeaders }[] = [];
const upstreamSockets = new Set<Socket>();

beforeAll(async () => {
  wsUpstream = http.createServer((_req, res) => res.end('not a websocket'));
  wsUpstream.on('connection', (socket: Socket) => {
    upstreamSockets.add(socket);
    socket.on('close', () => upstreamSockets.delete(socket));
  });
  wsUpstream.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
    upgrades.push({ url: req.url ?? '', headers: req.headers });
    if (req.url === '/ws/refuse') {
      socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 4\r\n\r\nnope');
      return;
    }
    if (req.url === '/ws/silent') return; // accepts the request, never answers
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    socket.on('data', (chunk: Buffer) => socket.write(`echo:${chunk.toString()}`));
  });
  await new Promise<void>((resolve) => wsUpstream.listen(0, '127.0.0.1', resolve));
  wsPort = (wsUpstream.address() as AddressInfo).port;
  silent = await startRawServer(() => {});
  proxy = await startProxy(`version: 1
upstreams:
  ws: { url: "http://127.0.0.1:${wsPort}" }
  silent-tls: { url: "https://127.0.0.1:${silent.port}" }
routes:
  - { name: chat, match: { pathPrefix: /chat }, stripPrefix: true, upstream: ws, timeouts: { perTry: 500ms } }
  - { name: silent, match: { pathPrefix: /silent }, upstream: silent-tls, timeouts: { connect: 300ms } }
`);
});

afterAll(async () => {
  await proxy.close();
  await silent.close();
  for (const socket of upstreamSockets) socket.destroy();
  await new Promise((resolve) => wsUpstream.close(resolve));
});

const upgrade = (path: string) => upgradeThrough(proxy.url, path);

describe('websocket upgrades', () => {
  it('upgrades and relays bytes both ways, with the path rewritten', async () => {
    const result = await upgrade('/chat/ws/room-1');
    expect(result.status).toBe(101);
    const socket = result.socket!;
    const echoed = await new Promise<string>((resolve) => {
      socket.once('data', (chunk: Buffer) => resolve(chunk.toString()));
      socket.write('hello');
    });
    expect(echoed).toBe('echo:hello');
    socket.destroy();
    const seen = upgrades.find((u) => u.url === '/ws/room-1')!;
    expect(seen.headers.upgrade).toBe('websocket');
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen.headers['x-request-id']).toBeDefined();
  });

  it('keeps the connection open longer than perTry once upgraded', async () => {
    const { socket } = await upgrade('/chat/ws/long');
    await new Promise((resolve) => setTimeout(resolve, 700)); // perTry is 500ms
    const echoed = await new Promise<string>((resolve) => {
      socket!.once('data', (chunk: Buffer) => resolve(chunk.toString()));
      socket!.write('still here');
    });
    expect(echoed).toBe('echo:still here');
    socket!.destroy();
  });

  it('relays an upstream that refuses the upgrade', async () => {
    const result = await upgrade('/chat/ws/refuse');
    expect(result.status).toBe(403);
    expect(result.body).toBe('nope');
  });

  it('answers 504 UPSTREAM_TIMEOUT when the handshake is not answered within perTry', async () => {
    const result = await upgrade('/chat/ws/silent');
    expect(result.status).toBe(504);
    expect(result.headers['x-breakwater-error']).toBe('UPSTREAM_TIMEOUT');
    expect(JSON.parse(result.body)).toMatchObject({ code: 'UPSTREAM_TIMEOUT', route: 'chat', upstream: 'ws' });
  });

  it('answers 502 UPSTREAM_CONNECT_FAILED on a connect timeout', async () => {
    const result = await upgrade('/silent/ws');
    expect(result.status).toBe(502);
    expect(JSON.parse(result.body)).toMatchObject({ code: 'UPSTREAM_CONNECT_FAILED', route: 'silent' });
  });

  it('answers NO_ROUTE for an upgrade no route matches', async () => {
    const result = await upgrade('/nowhere');
    expect(result.status).toBe(404);
    expect(JSON.parse(result.body)).toMatchObject({ code: 'NO_ROUTE' });
  });
});
