/**
 * Header handling (SPEC §4): hop-by-hop headers removed both ways,
 * X-Forwarded-* added, X-Request-Id kept or made and returned,
 * X-Breakwater-Attempts on every proxied response.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { request, startProxy, type TestProxy } from '../helpers/proxy.js';

let upstream: FaultUpstream;
let proxy: TestProxy;

beforeAll(async () => {
  upstream = await startFaultUpstream(() => ({
    kind: 'echo',
    headers: {
      connection: 'keep-alive, x-hop',
      'x-hop': 'named by Connection',
      'keep-alive': 'timeout=5',
      'proxy-authenticate': 'Basic',
      trailer: 'x-checksum',
      'x-end-to-end': 'kept',
    },
  }));
  proxy = await startProxy(
    `version: 1
upstreams:
  u: { url: "${upstream.url}" }
routes:
  - { name: r, upstream: u }
`,
    { listen: 'serverNames: [app.internal]' },
  );
});

afterAll(async () => {
  await proxy.close();
  await upstream.close();
});

type Echo = { headers: Record<string, string> };

describe('request headers', () => {
  it('removes hop-by-hop headers and those named by Connection', async () => {
    const echo = (
      await request(`${proxy.url}/x`, {
        headers: {
          connection: 'keep-alive, x-secret-hop',
          'x-secret-hop': '1',
          'keep-alive': 'timeout=9',
          'proxy-authorization': 'Basic abc',
          'proxy-connection': 'keep-alive',
          te: 'trailers',
          upgrade: 'h2c',
          'x-breakwater-max-retries': '0',
          'x-breakwater-timeout': '1s',
          'x-end-to-end': 'kept',
        },
      })
    ).json<Echo>();
    for (const name of [
      'x-secret-hop',
      'keep-alive',
      'proxy-authorization',
      'proxy-connection',
      'te',
      'upgrade',
      'x-breakwater-max-retries',
      'x-breakwater-timeout',
    ]) {
      expect(echo.headers[name], name).toBeUndefined();
    }
    expect(echo.headers['x-end-to-end']).toBe('kept');
    expect(echo.headers.connection).toBe('keep-alive'); // the agent's own, to the upstream
  });

  it('does not forward Transfer-Encoding as sent, and the body still arrives', async () => {
    const echo = (await request(`${proxy.url}/x`, { method: 'POST', body: 'chunked body', chunked: true })).json<
      Echo & { bodyLength: number }
    >();
    expect(echo.bodyLength).toBe('chunked body'.length);
  });

  it('appends the peer to X-Forwarded-For and sets X-Forwarded-Proto and -Host', async () => {
    const echo = (
      await request(`${proxy.url}/x`, { headers: { 'x-forwarded-for': '203.0.113.7', host: 'app.internal:3128' } })
    ).json<Echo>();
    expect(echo.headers['x-forwarded-for']).toBe('203.0.113.7, 127.0.0.1');
    expect(echo.headers['x-forwarded-proto']).toBe('http');
    expect(echo.headers['x-forwarded-host']).toBe('app.internal:3128');
    const plain = (await request(`${proxy.url}/x`)).json<Echo>();
    expect(plain.headers['x-forwarded-for']).toBe('127.0.0.1');
  });

  it("issue 32: never forwards the client's Forwarded, X-Real-IP, X-Forwarded-Host or X-Forwarded-Proto", async () => {
    const echo = (
      await request(`${proxy.url}/x`, {
        headers: {
          host: 'breakwater:3128',
          forwarded: 'for=10.0.0.9;host=admin.internal;proto=https',
          'x-real-ip': '10.0.0.9',
          'x-forwarded-host': 'admin.internal',
          'x-forwarded-proto': 'https',
        },
      })
    ).json<Echo>();
    expect(echo.headers.forwarded).toBeUndefined();
    expect(echo.headers['x-real-ip']).toBeUndefined();
    expect(echo.headers['x-forwarded-host']).toBe('breakwater:3128');
    expect(echo.headers['x-forwarded-proto']).toBe('http');
  });

  it('issue 32: drops the underscore spellings a CGI-style upstream would read as the forwarding headers; other underscore names pass', async () => {
    const echo = (
      await request(`${proxy.url}/x`, {
        headers: {
          x_forwarded_host: 'evil.example',
          X_Forwarded_Proto: 'https',
          x_real_ip: '1.2.3.4',
          x_forwarded_for: '6.6.6.6',
          api_key: 'kept',
        },
      })
    ).json<Echo>();
    for (const name of ['x_forwarded_host', 'x_forwarded_proto', 'x_real_ip', 'x_forwarded_for'])
      expect(echo.headers[name], name).toBeUndefined();
    expect(echo.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(echo.headers.api_key).toBe('kept');
  });

  it('issue 32: sends no X-Forwarded-Host for a request without Host, whatever the client sent', async () => {
    const socket = net.connect(Number(new URL(proxy.url).port), '127.0.0.1');
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk.toString()));
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write('GET /x HTTP/1.0\r\nX-Forwarded-Host: admin.internal\r\nX-Real-IP: 10.0.0.9\r\n\r\n');
    await new Promise((resolve) => socket.once('close', resolve));
    expect(answer).toMatch(/^HTTP\/1.1 200/);
    const echo = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as Echo;
    expect(echo.headers['x-forwarded-host']).toBeUndefined();
    expect(echo.headers['x-real-ip']).toBeUndefined();
  });

  it("keeps the client's X-Request-Id, forwards it and returns it", async () => {
    const res = await request(`${proxy.url}/x`, { headers: { 'x-request-id': 'req-abc-123' } });
    expect(res.headers['x-request-id']).toBe('req-abc-123');
    expect(res.json<Echo>().headers['x-request-id']).toBe('req-abc-123');
  });

  it('makes a request id when the client sends none (or an unusable one)', async () => {
    const first = await request(`${proxy.url}/x`);
    const second = await request(`${proxy.url}/x`, { headers: { 'x-request-id': 'has spaces in it' } });
    for (const res of [first, second]) {
      expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
      expect(res.json<Echo>().headers['x-request-id']).toBe(res.headers['x-request-id']);
    }
    expect(first.headers['x-request-id']).not.toBe(second.headers['x-request-id']);
  });
});

describe('response headers', () => {
  it("removes hop-by-hop headers from the upstream's response and keeps the rest", async () => {
    const res = await request(`${proxy.url}/x`);
    expect(res.headers['x-hop']).toBeUndefined();
    expect(res.headers['keep-alive']).toBeUndefined();
    expect(res.headers['proxy-authenticate']).toBeUndefined();
    expect(res.headers.trailer).toBeUndefined();
    expect(res.headers['x-end-to-end']).toBe('kept');
  });

  it('adds X-Breakwater-Attempts to every proxied response', async () => {
    const res = await request(`${proxy.url}/x`);
    expect(res.headers['x-breakwater-attempts']).toBe('1');
  });

  it('keeps the client connection alive across requests', async () => {
    const socket = net.connect(Number(new URL(proxy.url).port), '127.0.0.1');
    const received: string[] = [];
    socket.on('data', (chunk) => received.push(chunk.toString()));
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write('GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n');
    await upstream.waitFor(() => received.join('').split('HTTP/1.1 200').length === 3);
    socket.destroy();
    expect(received.join('').match(/x-breakwater-attempts: 1/g)).toHaveLength(2);
  });
});
