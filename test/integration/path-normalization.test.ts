/**
 * Paths are normalized before they are matched (SPEC §10): dot segments
 * removed, escaped unreserved characters decoded, `%2F` kept; climbing
 * above `/` and invalid escapes are 400 BAD_REQUEST and reach no upstream.
 * Requests are sent with raw paths (a URL string would be normalized by the
 * client itself).
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { expectProblem } from '../helpers/problem.js';
import { startProxy, type TestProxy, type TestResponse } from '../helpers/proxy.js';

let api: FaultUpstream;
let admin: FaultUpstream;
let proxy: TestProxy;

beforeAll(async () => {
  api = await startFaultUpstream(() => ({ kind: 'echo', headers: { 'x-upstream': 'api' } }));
  admin = await startFaultUpstream(() => ({ kind: 'echo', headers: { 'x-upstream': 'admin' } }));
  proxy = await startProxy(`version: 1
forwardProxy: { enabled: true, allowHosts: ["127.0.0.1"], denyPrivateNetworks: false, allowPorts: [${api.port}] }
upstreams:
  api: { url: "${api.url}" }
  admin: { url: "${admin.url}" }
routes:
  - { name: admin, match: { pathPrefix: /admin }, upstream: admin }
  - { name: api, match: { pathPrefix: /api }, stripPrefix: true, upstream: api }
  - { name: forward, match: { host: "127.0.0.1:${api.port}" } }
`);
});

afterAll(async () => {
  await proxy.close();
  await Promise.all([api.close(), admin.close()]);
});

/** GET with the path exactly as given on the request line. */
function raw(path: string): Promise<TestResponse> {
  const port = Number(new URL(proxy.url).port);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body,
          text: body.toString(),
          json: <T>() => JSON.parse(body.toString()) as T,
        });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

const seenUrl = (res: TestResponse) => res.json<{ url: string }>().url;

describe('path normalization', () => {
  it('matches /api/v1/../../admin as /admin, and the access log shows the normalized path', async () => {
    const res = await raw('/api/v1/../../admin/users?x=1');
    expect(res.headers['x-upstream']).toBe('admin');
    expect(seenUrl(res)).toBe('/admin/users?x=1');
    const line = proxy.accessLogs().find((entry) => entry.requestId === res.headers['x-request-id'])!;
    expect(line).toMatchObject({ path: '/admin/users', route: 'admin' });
  });

  it('decodes escaped dots and unreserved characters before matching, and forwards the normalized path', async () => {
    const res = await raw('/api/v1/%2e%2E/%7Euser/%41');
    expect(res.headers['x-upstream']).toBe('api');
    expect(seenUrl(res)).toBe('/~user/A');
    const climbing = await raw('/api/%2e%2e/admin');
    expect(climbing.headers['x-upstream']).toBe('admin');
  });

  it('keeps %2F encoded, in the case the client wrote it', async () => {
    expect(seenUrl(await raw('/api/files/a%2Fb/c'))).toBe('/files/a%2Fb/c');
    expect(seenUrl(await raw('/api/files/a%2fb'))).toBe('/files/a%2fb');
  });

  it('answers 400 to a path that climbs above the root, even where the clamped path would match, and sends nothing', async () => {
    const before = api.requests.length + admin.requests.length;
    for (const path of ['/../admin', '/api/../../admin', '/%2e%2e/admin', '/api/./../..']) {
      const res = await raw(path);
      expectProblem(res, 'BAD_REQUEST', {
        route: null,
        upstream: null,
        attempts: 0,
        detail: /cannot be routed: its dot segments climb above the root\.$/,
      });
    }
    expect(api.requests.length + admin.requests.length).toBe(before);
  });

  it('answers 400 to an invalid escape', async () => {
    const res = await raw('/api/%zz');
    expectProblem(res, 'BAD_REQUEST', { route: null, upstream: null, attempts: 0, detail: /invalid percent-escape/ });
  });

  it('normalizes absolute-form targets the same way, before URL parsing could clamp them', async () => {
    const good = await raw(`http://127.0.0.1:${api.port}/a/b/../c?q=1`);
    expect(good.status).toBe(200);
    expect(seenUrl(good)).toBe('/a/c?q=1');
    const before = api.requests.length;
    const climbing = await raw(`http://127.0.0.1:${api.port}/../etc/passwd`);
    expect(climbing.status).toBe(400);
    expect(api.requests.length).toBe(before);
  });
});
