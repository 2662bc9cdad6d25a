/**
 * Requests Breakwater refuses itself (SPEC §4, §5): bodies above
 * limits.maxBodySize, headers above limits.maxHeaderSize, and what node's
 * parser cannot read. None of them reaches the upstream.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { expectProblem } from '../helpers/problem.js';
import { metricValue, request, startProxy, type TestProxy, type TestResponse } from '../helpers/proxy.js';

let upstream: FaultUpstream;
let proxy: TestProxy;

beforeAll(async () => {
  upstream = await startFaultUpstream(() => ({ kind: 'echo' }));
  proxy = await startProxy(`version: 1
limits: { maxBodySize: 1KiB, maxHeaderSize: 2KiB }
upstreams:
  u: { url: "${upstream.url}" }
routes:
  - { name: r, upstream: u }
`);
});

afterAll(async () => {
  await proxy.close();
  await upstream.close();
});

/** Sends raw bytes and returns everything the proxy answered before closing. */
function raw(bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(new URL(proxy.url).port), '127.0.0.1', () => socket.write(bytes));
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk.toString()));
    socket.on('close', () => resolve(answer));
    socket.on('error', reject);
    socket.setTimeout(10_000, () => socket.destroy(new Error('no answer')));
  });
}

/** A raw answer as the TestResponse that expectProblem reads. */
function asResponse(answer: { status: number; headers: Record<string, string>; body: string }): TestResponse {
  const body = Buffer.from(answer.body);
  return {
    status: answer.status,
    headers: answer.headers,
    body,
    text: answer.body,
    json: <T>() => JSON.parse(answer.body) as T,
  };
}

function parseRaw(answer: string): { status: number; headers: Record<string, string>; body: string } {
  const [head, ...rest] = answer.split('\r\n\r\n');
  const [statusLine, ...headerLines] = head!.split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of headerLines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(statusLine!.split(' ')[1]), headers, body: rest.join('\r\n\r\n') };
}

describe('request limits', () => {
  it('refuses a Content-Length above maxBodySize with 413 before reading it', async () => {
    const seen = upstream.requests.length;
    const res = await request(`${proxy.url}/upload`, { method: 'POST', body: Buffer.alloc(2048, 1) });
    expectProblem(res, 'PAYLOAD_TOO_LARGE', {
      instance: '/upload',
      route: 'r',
      upstream: 'u',
      attempts: 0,
      detail: /\(2048 bytes\) is larger than limits.maxBodySize \(1024 bytes\)/,
    });
    expect(res.headers.connection).toBe('close');
    expect(upstream.requests.length).toBe(seen);
  });

  it('refuses a chunked body that grows past maxBodySize with 413, and the upstream never gets a complete body', async () => {
    const res = await request(`${proxy.url}/upload-chunked`, {
      method: 'POST',
      body: Buffer.alloc(4096, 2),
      chunked: true,
    });
    expectProblem(res, 'PAYLOAD_TOO_LARGE', { route: 'r', upstream: 'u', attempts: 1 });
    const received = upstream.requests.filter((r) => r.url === '/upload-chunked');
    for (const r of received) expect(r.bodyComplete && r.body.length === 4096).toBe(false);
  });

  it('lets a body at the limit through', async () => {
    const res = await request(`${proxy.url}/exact`, { method: 'POST', body: Buffer.alloc(1024, 3), chunked: true });
    expect(res.status).toBe(200);
    expect(res.json<{ bodyLength: number }>().bodyLength).toBe(1024);
  });

  it('refuses both Content-Length and Transfer-Encoding with BAD_REQUEST, and never forwards it', async () => {
    const seen = upstream.requests.length;
    const answer = parseRaw(
      await raw(
        'POST /smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
      ),
    );
    expectProblem(asResponse(answer), 'BAD_REQUEST', {
      route: null,
      upstream: null,
      attempts: 0,
      detail: /Transfer-Encoding can't be present with Content-Length/,
    });
    expect(answer.headers.connection).toBe('close');
    expect(upstream.requests.length).toBe(seen);
  });

  it('refuses a malformed request line with BAD_REQUEST', async () => {
    const answer = parseRaw(await raw('GET /a b c HTTP/9.9\r\n\r\n'));
    expectProblem(asResponse(answer), 'BAD_REQUEST', { route: null, upstream: null, attempts: 0 });
  });

  it('refuses bad chunked encoding with BAD_REQUEST, and never forwards it', async () => {
    const seen = upstream.requests.length;
    const answer = parseRaw(
      await raw('POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n'),
    );
    expectProblem(asResponse(answer), 'BAD_REQUEST', {
      route: null,
      upstream: null,
      attempts: 0,
      detail: /chunk size/,
    });
    expect(upstream.requests.length).toBe(seen);
  });

  it('refuses headers above maxHeaderSize with 431 HEADERS_TOO_LARGE', async () => {
    const before = await metricValue(proxy.metrics, 'breakwater_requests_total', {
      route: '',
      method: 'OTHER',
      code: '431',
    });
    const answer = parseRaw(await raw(`GET / HTTP/1.1\r\nHost: x\r\nCookie: ${'a'.repeat(4096)}\r\n\r\n`));
    expectProblem(asResponse(answer), 'HEADERS_TOO_LARGE', {
      route: null,
      upstream: null,
      attempts: 0,
      detail: /limits.maxHeaderSize \(2048 bytes\)/,
    });
    expect(
      await metricValue(proxy.metrics, 'breakwater_requests_total', { route: '', method: 'OTHER', code: '431' }),
    ).toBe(before + 1);
  });
});
