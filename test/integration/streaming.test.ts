/**
 * Bodies both ways (SPEC §4): streamed, not buffered; byte-identical; no
 * body where HTTP has none; compressed bytes and redirects passed through.
 */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, waitUntil, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { request, startProxy, type TestProxy } from '../helpers/proxy.js';

const BIG = randomBytes(6 * 1024 * 1024 + 123);
const GZIPPED = gzipSync(Buffer.from('{"hello":"world"}'.repeat(1000)));

let upstream: FaultUpstream;
let proxy: TestProxy;
/** Released by the test: the SSE upstream holds its second event until then. */
let releaseSecondEvent: () => void = () => {};

beforeAll(async () => {
  upstream = await startFaultUpstream((_n, req) => {
    const path = req.url ?? '';
    if (path === '/big')
      return {
        kind: 'respond',
        headers: { 'content-type': 'application/octet-stream', 'content-length': BIG.length },
        body: BIG,
      };
    if (path === '/big-chunked')
      return {
        kind: 'custom',
        handle: (_req, res) => {
          res.writeHead(200);
          for (let i = 0; i < BIG.length; i += 65536) res.write(BIG.subarray(i, i + 65536));
          res.end();
        },
      };
    if (path === '/upload')
      return {
        kind: 'custom',
        handle: (r, res) => {
          const hash = createHash('sha256');
          let length = 0;
          r.on('data', (c: Buffer) => {
            hash.update(c);
            length += c.length;
          });
          r.on('end', () => res.end(JSON.stringify({ length, sha256: hash.digest('hex') })));
        },
      };
    if (path === '/sse') {
      return {
        kind: 'custom',
        handle: (_req, res) => {
          res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
          res.write('data: one\n\n');
          releaseSecondEvent = () => res.end('data: two\n\n');
        },
      };
    }
    if (path === '/gzip')
      return {
        kind: 'respond',
        headers: { 'content-encoding': 'gzip', 'content-type': 'application/json', 'content-length': GZIPPED.length },
        body: GZIPPED,
      };
    if (path === '/204') return { kind: 'respond', status: 204 };
    if (path === '/304') return { kind: 'respond', status: 304, headers: { etag: '"v1"' } };
    if (path === '/redirect')
      return { kind: 'respond', status: 302, headers: { location: '/elsewhere' }, body: 'moved' };
    return { kind: 'respond', headers: { 'content-type': 'text/plain', 'content-length': 5 }, body: 'hello' };
  });
  proxy = await startProxy(`version: 1
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

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe('streaming', () => {
  it('delivers server-sent events as the upstream sends them', async () => {
    const events: string[] = [];
    const done = new Promise<void>((resolve, reject) => {
      http.get(`${proxy.url}/sse`, { agent: false }, (res) => {
        expect(res.headers['content-type']).toBe('text/event-stream');
        res.on('data', (chunk: Buffer) => {
          events.push(chunk.toString());
          // The upstream still holds the second event: the first arrived on its own.
          if (events.length === 1) releaseSecondEvent();
        });
        res.on('end', resolve);
        res.on('error', reject);
      });
    });
    await done;
    expect(events.join('')).toBe('data: one\n\ndata: two\n\n');
    expect(events[0]).toBe('data: one\n\n');
  });

  it('passes a multi-MiB response through byte for byte, with and without Content-Length', async () => {
    const fixed = await request(`${proxy.url}/big`);
    expect(fixed.headers['content-length']).toBe(String(BIG.length));
    expect(sha(fixed.body)).toBe(sha(BIG));
    const chunked = await request(`${proxy.url}/big-chunked`);
    expect(chunked.headers['transfer-encoding']).toBe('chunked');
    expect(sha(chunked.body)).toBe(sha(BIG));
  });

  it('passes a multi-MiB request body through byte for byte, with and without Content-Length', async () => {
    for (const chunked of [false, true]) {
      const res = await request(`${proxy.url}/upload`, { method: 'PUT', body: BIG, chunked });
      expect(res.json()).toEqual({ length: BIG.length, sha256: sha(BIG) });
    }
  });

  it('sends no body for HEAD, 204 and 304', async () => {
    const head = await request(`${proxy.url}/any`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe('5');
    expect(head.body.length).toBe(0);
    const noContent = await request(`${proxy.url}/204`);
    expect(noContent.status).toBe(204);
    expect(noContent.body.length).toBe(0);
    const notModified = await request(`${proxy.url}/304`, { headers: { 'if-none-match': '"v1"' } });
    expect(notModified.status).toBe(304);
    expect(notModified.headers.etag).toBe('"v1"');
    expect(notModified.body.length).toBe(0);
  });

  it('passes gzip through untouched', async () => {
    const res = await request(`${proxy.url}/gzip`, { headers: { 'accept-encoding': 'gzip' } });
    expect(res.headers['content-encoding']).toBe('gzip');
    expect(res.body.equals(GZIPPED)).toBe(true);
  });

  it('passes redirects back instead of following them', async () => {
    const res = await request(`${proxy.url}/redirect`);
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe('/elsewhere');
    expect(res.text).toBe('moved');
    expect(upstream.requests.filter((r) => r.url === '/elsewhere')).toHaveLength(0);
  });

  it('applies backpressure: while the client reads nothing, the upstream stalls', async () => {
    // 64 MiB is more than loopback's socket buffers on both hops can hold,
    // so the upstream only stalls if the proxy stops reading too. A proxy
    // that buffered the response would read on and the upstream never stall.
    const total = 64 * 1024 * 1024;
    const piece = Buffer.alloc(65536, 7);
    let sent = 0;
    let stalledSince: number | undefined;
    const slow = await startFaultUpstream(() => ({
      kind: 'custom',
      handle: (_req, res) => {
        res.writeHead(200, { 'content-length': total });
        const pump = () => {
          while (sent < total) {
            sent += piece.length;
            if (!res.write(piece)) {
              stalledSince = Date.now();
              res.once('drain', () => {
                stalledSince = undefined;
                pump();
              });
              return;
            }
          }
          res.end();
        };
        pump();
      },
    }));
    const slowProxy = await startProxy(`version: 1
upstreams: { u: { url: "${slow.url}" } }
routes: [ { name: r, upstream: u } ]
`);
    try {
      const received = await new Promise<number>((resolve, reject) => {
        http.get(`${slowProxy.url}/`, { agent: false }, (res) => {
          res.pause();
          waitUntil(
            () => stalledSince !== undefined && Date.now() - stalledSince > 300,
            20_000,
            'the upstream to stall',
          ).then(() => {
            expect(sent).toBeLessThan(total);
            let length = 0;
            res.on('data', (c: Buffer) => (length += c.length));
            res.on('end', () => resolve(length));
            res.resume();
          }, reject);
        });
      });
      expect(received).toBe(total);
    } finally {
      await slowProxy.close();
      await slow.close();
    }
  });
});
