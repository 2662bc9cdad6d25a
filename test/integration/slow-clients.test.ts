/**
 * A request body that stops arriving is cut (SPEC §20.4): 408
 * REQUEST_BODY_TIMEOUT with Connection: close when nothing was answered,
 * the upstream request streaming it aborted, a body read for replay never
 * sent; a slow body that keeps moving is never cut. Bodies are written on
 * raw sockets, by hand, so that the test decides when each byte goes.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { metricValue, startProxy, type TestProxy } from '../helpers/proxy.js';

let api: FaultUpstream;
let proxy: TestProxy;
let port: number;

beforeAll(async () => {
  api = await startFaultUpstream(() => ({ kind: 'echo' }));
  proxy = await startProxy(`version: 1
limits: { clientBodyTimeout: 800ms }
upstreams:
  api: { url: "${api.url}" }
routes:
  - name: api
    match: { pathPrefix: / }
    upstream: api
    retry: { maxRetries: 2, bufferLimit: 1KiB }
`);
  port = Number(new URL(proxy.url).port);
});

afterAll(async () => {
  await proxy.close();
  await api.close();
});

interface RawAnswer {
  readonly status: number;
  readonly head: string;
  readonly body: string;
  /** The proxy closed the connection (not the test's own bound). */
  readonly closedByProxy: boolean;
}

/** Writes each part in turn, `gapMs` apart, then waits for the proxy to answer and close (at most `boundMs`). */
function upload(parts: readonly string[], gapMs: number, boundMs = 10_000): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let data = '';
    let boundHit = false;
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => (data += chunk));
    socket.on('error', (error: NodeJS.ErrnoException) =>
      error.code === 'ECONNRESET' || error.code === 'EPIPE' ? undefined : reject(error),
    );
    socket.on('close', () => {
      const [head = '', ...rest] = data.split('\r\n\r\n');
      resolve({
        status: Number(head.split(' ')[1]),
        head: head.toLowerCase(),
        body: rest.join('\r\n\r\n'),
        closedByProxy: !boundHit,
      });
    });
    const bound = setTimeout(() => {
      boundHit = true;
      socket.destroy();
    }, boundMs);
    bound.unref();
    let i = 0;
    const next = () => {
      if (socket.destroyed || i >= parts.length) return;
      socket.write(parts[i++]!);
      setTimeout(next, gapMs);
    };
    next();
  });
}

/** The request's head; `close`: the client asks to close after the answer (the proxy must do so itself after a 408). */
const head = (length: number | 'chunked', close = false) =>
  `POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\n${length === 'chunked' ? 'Transfer-Encoding: chunked' : `Content-Length: ${length}`}\r\n${close ? 'Connection: close\r\n' : ''}Content-Type: application/octet-stream\r\n\r\n`;

describe('slow client bodies (SPEC §20.4)', () => {
  it('a buffered body that stops: 408 with Connection: close, the connection closed, nothing sent upstream', async () => {
    const before = api.requests.length;
    const counted = await metricValue(proxy.metrics, 'breakwater_errors_total', {
      route: 'api',
      code: 'REQUEST_BODY_TIMEOUT',
    });
    const answer = await upload([head(100), 'x'.repeat(10)], 10);
    expect(answer.status).toBe(408);
    expect(answer.head).toContain('connection: close');
    expect(answer.head).toContain('content-type: application/problem+json');
    expect(JSON.parse(answer.body)).toMatchObject({
      code: 'REQUEST_BODY_TIMEOUT',
      status: 408,
      retryable: true,
      responsibility: 'client',
      route: 'api',
    });
    expect(answer.closedByProxy).toBe(true);
    expect(api.requests.length).toBe(before);
    expect(
      await metricValue(proxy.metrics, 'breakwater_errors_total', { route: 'api', code: 'REQUEST_BODY_TIMEOUT' }),
    ).toBe(counted + 1);
    const line = proxy.accessLogs().at(-1)!;
    expect(line).toMatchObject({ status: 408, route: 'api' });
    expect(line.flags).toContain('REQUEST_BODY_TIMEOUT');
    expect(line.flags).not.toContain('CLIENT_CLOSED');
  });

  it('headers, then nothing: cut from the end of the headers', async () => {
    const answer = await upload([head(10)], 10);
    expect(answer.status).toBe(408);
    expect(answer.closedByProxy).toBe(true);
  });

  it('a streamed body that stops: the upstream request carrying it is aborted, the client gets 408', async () => {
    const before = api.requests.length;
    // Chunked: never buffered, it streams to the upstream as it comes.
    const answer = await upload([head('chunked'), '5\r\nhello\r\n'], 10);
    expect(answer.status).toBe(408);
    expect(answer.closedByProxy).toBe(true);
    await api.waitFor(() => api.requests.length === before + 1 && api.requests.at(-1)!.closedEarly !== undefined);
    const seen = api.requests.at(-1)!;
    expect(seen.bodyComplete).toBe(false);
    // Never retried: the body could not be sent again.
    expect(api.requests.length).toBe(before + 1);
  });

  it('a slow body that keeps moving is never cut, however long it takes in all', async () => {
    // 20 parts 100 ms apart: 2 s in all, more than twice the 800 ms limit, never silent for it.
    const parts = Array.from({ length: 20 }, (_, i) => String(i % 10));
    const answer = await upload([head(20, true), ...parts], 100);
    expect(answer.status).toBe(200);
    // The echo's JSON (maybe in chunked framing) names the whole body, in base64.
    expect(answer.body).toContain(`"bodyBase64":"${Buffer.from('01234567890123456789').toString('base64')}"`);
  });
});
