/**
 * What the app gets when the upstream misbehaves (SPEC §5): each failure as
 * its error code, field by field; a response that breaks after it started
 * is aborted, never truncated silently.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, startRawServer, TEST_CA, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { expectProblem } from '../helpers/problem.js';
import { metricValue, request, startProxy, type TestProxy } from '../helpers/proxy.js';

let plain: FaultUpstream;
let tls: FaultUpstream;
let garbage: Awaited<ReturnType<typeof startRawServer>>;
let tlsAlert: Awaited<ReturnType<typeof startRawServer>>;
let proxy: TestProxy;
let closedPort: number;

beforeAll(async () => {
  plain = await startFaultUpstream((_n, req) => {
    switch (req.url) {
      case '/reset':
        return { kind: 'reset' };
      case '/mid-body':
        return { kind: 'close-mid-body', body: 'partial', contentLength: 1000 };
      case '/mid-chunked':
        return { kind: 'close-mid-body', body: 'partial' };
      case '/503':
        return {
          kind: 'respond',
          status: 503,
          headers: { 'content-type': 'text/plain', 'retry-after': '7' },
          body: 'upstream says busy',
        };
      case '/404':
        return {
          kind: 'respond',
          status: 404,
          headers: { 'content-type': 'application/json' },
          body: '{"error":"missing"}',
        };
      default:
        return { kind: 'respond', body: 'ok' };
    }
  });
  tls = await startFaultUpstream(() => ({ kind: 'respond', body: 'secure ok' }), { tls: true });
  garbage = await startRawServer((socket) => socket.end('SSH-2.0-OpenSSH_9.2\r\nnot http at all\r\n'));
  // What an OpenSSL-based TLS server (nginx, HAProxy) sends to a plaintext
  // client: a fatal TLS alert record. Node's own TLS server just hangs up.
  tlsAlert = await startRawServer((socket) =>
    socket.once('data', () => socket.end(Buffer.from([0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46]))),
  );
  const spare = await startRawServer(() => {});
  closedPort = spare.port;
  await spare.close();
  proxy = await startProxy(`version: 1
# One attempt per request: retries have their own tests.
defaults: { retry: { maxRetries: 0 } }
upstreams:
  plain: { url: "${plain.url}" }
  refused: { url: "http://127.0.0.1:${closedPort}" }
  garbage: { url: "http://127.0.0.1:${garbage.port}" }
  tls-untrusted: { url: "${tls.url}" }
  tls-trusted: { url: "https://localhost:${tls.port}", tls: { ca: ${JSON.stringify(TEST_CA)} } }
  tls-insecure: { url: "${tls.url}", tls: { insecureSkipVerify: true } }
  plain-to-tls: { url: "http://127.0.0.1:${tlsAlert.port}" }
  plain-to-node-tls: { url: "http://127.0.0.1:${tls.port}" }
  tls-to-plain: { url: "https://127.0.0.1:${plain.port}" }
routes:
  - { name: plain, match: { pathPrefix: /plain }, stripPrefix: true, upstream: plain }
  - { name: refused, match: { pathPrefix: /refused }, upstream: refused }
  - { name: garbage, match: { pathPrefix: /garbage }, upstream: garbage }
  - { name: tls-untrusted, match: { pathPrefix: /tls-untrusted }, upstream: tls-untrusted }
  - { name: tls-trusted, match: { pathPrefix: /tls-trusted }, upstream: tls-trusted }
  - { name: tls-insecure, match: { pathPrefix: /tls-insecure }, upstream: tls-insecure }
  - { name: plain-to-tls, match: { pathPrefix: /plain-to-tls }, upstream: plain-to-tls }
  - { name: plain-to-node-tls, match: { pathPrefix: /plain-to-node-tls }, upstream: plain-to-node-tls }
  - { name: tls-to-plain, match: { pathPrefix: /tls-to-plain }, upstream: tls-to-plain }
  - name: plain-off
    match: { pathPrefix: /off }
    upstream: refused
    errors: { normalize: off }
`);
});

afterAll(async () => {
  await proxy.close();
  await Promise.all([plain.close(), tls.close(), garbage.close(), tlsAlert.close()]);
});

describe('upstream failures before response headers', () => {
  it('answers a refused connection with UPSTREAM_CONNECT_FAILED', async () => {
    const res = await request(`${proxy.url}/refused/x?token=1`);
    expectProblem(res, 'UPSTREAM_CONNECT_FAILED', {
      instance: '/refused/x',
      route: 'refused',
      upstream: 'refused',
      attempts: 1,
      detail: /refused the connection \(ECONNREFUSED\)/,
    });
  });

  it('answers a reset before headers with UPSTREAM_RESET', async () => {
    const res = await request(`${proxy.url}/plain/reset`);
    expectProblem(res, 'UPSTREAM_RESET', {
      route: 'plain',
      upstream: 'plain',
      attempts: 1,
      detail: /closed the connection before sending response headers/,
    });
  });

  it('answers bytes that are not HTTP with UPSTREAM_PROTOCOL_ERROR', async () => {
    const res = await request(`${proxy.url}/garbage`);
    expectProblem(res, 'UPSTREAM_PROTOCOL_ERROR', {
      route: 'garbage',
      upstream: 'garbage',
      attempts: 1,
      detail: /did not answer with valid HTTP/,
    });
  });

  it('answers plain HTTP sent to a TLS port with UPSTREAM_PROTOCOL_ERROR', async () => {
    const res = await request(`${proxy.url}/plain-to-tls`);
    expectProblem(res, 'UPSTREAM_PROTOCOL_ERROR', { route: 'plain-to-tls', upstream: 'plain-to-tls', attempts: 1 });
  });

  it('answers a TLS server that hangs up on plain HTTP without a word with UPSTREAM_RESET', async () => {
    const res = await request(`${proxy.url}/plain-to-node-tls`);
    expectProblem(res, 'UPSTREAM_RESET', { route: 'plain-to-node-tls', upstream: 'plain-to-node-tls', attempts: 1 });
  });

  it('answers TLS sent to a plain port with UPSTREAM_PROTOCOL_ERROR', async () => {
    const res = await request(`${proxy.url}/tls-to-plain`);
    expectProblem(res, 'UPSTREAM_PROTOCOL_ERROR', { route: 'tls-to-plain', upstream: 'tls-to-plain', attempts: 1 });
  });

  it('answers an untrusted certificate with UPSTREAM_TLS_FAILED', async () => {
    const res = await request(`${proxy.url}/tls-untrusted`);
    expectProblem(res, 'UPSTREAM_TLS_FAILED', {
      route: 'tls-untrusted',
      upstream: 'tls-untrusted',
      attempts: 1,
      detail: /TLS handshake \(DEPTH_ZERO_SELF_SIGNED_CERT\)/,
    });
  });

  it('trusts a certificate signed by tls.ca, and skips checks with insecureSkipVerify', async () => {
    const trusted = await request(`${proxy.url}/tls-trusted`);
    expect(trusted.status).toBe(200);
    expect(trusted.text).toBe('secure ok');
    const insecure = await request(`${proxy.url}/tls-insecure`);
    expect(insecure.status).toBe(200);
  });

  it('gives plain text with errors.normalize: off', async () => {
    const res = await request(`${proxy.url}/off`);
    expect(res.status).toBe(502);
    expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(res.headers['x-breakwater-error']).toBe('UPSTREAM_CONNECT_FAILED');
    expect(res.text).toMatch(/^Upstream connect failed: Upstream 'refused' .* refused the connection/);
  });

  it('counts each failure by outcome and code', async () => {
    const before = await metricValue(proxy.metrics, 'breakwater_upstream_attempts_total', {
      route: 'refused',
      upstream: 'refused',
      outcome: 'connect_failure',
    });
    const errorsBefore = await metricValue(proxy.metrics, 'breakwater_errors_total', {
      route: 'refused',
      code: 'UPSTREAM_CONNECT_FAILED',
    });
    await request(`${proxy.url}/refused`);
    await request(`${proxy.url}/refused`);
    expect(
      await metricValue(proxy.metrics, 'breakwater_upstream_attempts_total', {
        route: 'refused',
        upstream: 'refused',
        outcome: 'connect_failure',
      }),
    ).toBe(before + 2);
    expect(
      await metricValue(proxy.metrics, 'breakwater_errors_total', {
        route: 'refused',
        code: 'UPSTREAM_CONNECT_FAILED',
      }),
    ).toBe(errorsBefore + 2);
  });
});

describe('upstream error responses', () => {
  it('passes a 503 through untouched with errors.normalize: proxy', async () => {
    const res = await request(`${proxy.url}/plain/503`);
    expect(res.status).toBe(503);
    expect(res.headers['content-type']).toBe('text/plain');
    expect(res.headers['retry-after']).toBe('7');
    expect(res.headers['x-breakwater-error']).toBeUndefined();
    expect(res.text).toBe('upstream says busy');
    expect(res.headers['x-breakwater-attempts']).toBe('1');
  });

  it('passes a 404 through untouched', async () => {
    const res = await request(`${proxy.url}/plain/404`);
    expect(res.status).toBe(404);
    expect(res.text).toBe('{"error":"missing"}');
  });
});

describe('upstream failures after the response started', () => {
  for (const path of ['/plain/mid-body', '/plain/mid-chunked']) {
    it(`aborts the client's response when the upstream closes mid-body (${path})`, async () => {
      const outcome = await new Promise<string>((resolve) => {
        http
          .get(`${proxy.url}${path}`, { agent: false }, (res) => {
            let body = '';
            res.on('data', (chunk: Buffer) => (body += chunk.toString()));
            res.on('end', () => resolve(`complete: ${body}`));
            res.on('error', () => resolve(`aborted after "${body}"`));
            res.on('aborted', () => resolve(`aborted after "${body}"`));
          })
          .on('error', (error) => resolve(`aborted: ${error.message}`));
      });
      expect(outcome).toMatch(/^aborted/);
      await proxy.app.proxy.server.listening; // the proxy keeps serving
      expect((await request(`${proxy.url}/plain/ok`)).status).toBe(200);
    });
  }

  it('flags the access log line of a response cut by the upstream', async () => {
    await new Promise<void>((resolve) => {
      http
        .get(`${proxy.url}/plain/mid-body`, { agent: false }, (res) => {
          res.on('error', () => resolve());
          res.on('aborted', () => resolve());
          res.on('end', () => resolve());
          res.resume();
        })
        .on('error', () => resolve());
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const line = proxy
      .accessLogs()
      .filter((entry) => entry.path === '/plain/mid-body')
      .at(-1)!;
    expect(line.status).toBe(200);
    expect(line.flags).toContain('UPSTREAM_RESET');
  });
});
