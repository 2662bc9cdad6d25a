/**
 * Who may read the admin port (SPEC §19.1). The non-loopback client is a
 * second address on the loopback interface (added here with `ip`, as
 * root, and removed after): its connections stay on this machine but
 * arrive from an address that is not 127.0.0.0/8, as Prometheus or a
 * neighbour pod's would.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metricValue, startProxy, type TestProxy, type TestResponse } from '../helpers/proxy.js';
import { expectProblemShape } from '../helpers/admin.js';
import { runCli, startReplica, writeTemp } from '../helpers/cli.js';
import { freePort } from '../helpers/net.js';

const OTHER = '10.255.255.1';
let added = false;

beforeAll(() => {
  try {
    execFileSync('ip', ['addr', 'add', `${OTHER}/32`, 'dev', 'lo'], { stdio: 'pipe' });
    added = true;
  } catch (error) {
    // Already there (a run before this one left it): fine; anything else fails the file.
    if (!String((error as { stderr?: Buffer }).stderr ?? '').includes('File exists')) throw error;
  }
});

afterAll(() => {
  if (added) execFileSync('ip', ['addr', 'del', `${OTHER}/32`, 'dev', 'lo'], { stdio: 'pipe' });
});

/** One request to the admin port from `from` (a local address to connect from). */
function get(
  proxy: TestProxy,
  pathAndQuery: string,
  options: { from?: string; method?: string; headers?: http.OutgoingHttpHeaders } = {},
): Promise<TestResponse> {
  const port = Number(new URL(proxy.adminUrl).port);
  const from = options.from ?? '127.0.0.1';
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: from,
        port,
        path: pathAndQuery,
        method: options.method ?? 'GET',
        localAddress: from,
        headers: { host: `${from}:${port}`, ...options.headers },
        agent: false,
      },
      (res) => {
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
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const PROTECTED = ['/config', '/status', '/stats', '/errors', '/', '/nowhere'];
const CONFIG = `version: 1
upstreams: { u: { url: "http://127.0.0.1:1" } }
routes: [{ name: r, upstream: u }]
`;

describe('admin port without a token (SPEC §19.1)', () => {
  let proxy: TestProxy;
  beforeAll(async () => {
    proxy = await startProxy(CONFIG, { adminHost: '0.0.0.0' });
  });
  afterAll(() => proxy.close());

  it('answers /metrics, /healthz and /readyz to every peer', async () => {
    for (const path of ['/metrics', '/healthz', '/readyz']) {
      const res = await get(proxy, path, { from: OTHER });
      expect(res.status, path).toBe(200);
      expect(res.headers['x-content-type-options']).toBe('nosniff');
    }
  });

  it('refuses every other path and method to a peer that is not local: 403 ADMIN_FORBIDDEN, nothing of what was asked', async () => {
    const errorsBefore = await metricValue(proxy.metrics, 'breakwater_errors_total', {
      route: '',
      code: 'ADMIN_FORBIDDEN',
    });
    for (const path of PROTECTED) {
      const res = await get(proxy, path, { from: OTHER });
      expectProblemShape(res, 'ADMIN_FORBIDDEN', 403);
      expect(res.text, path).not.toContain('upstreams');
    }
    // Decided before 405: a POST to an open path is not open.
    expectProblemShape(await get(proxy, '/metrics', { from: OTHER, method: 'POST' }), 'ADMIN_FORBIDDEN', 403);
    // Not a proxy request: not counted as one; logged with the peer and the path.
    expect(await metricValue(proxy.metrics, 'breakwater_errors_total', { route: '', code: 'ADMIN_FORBIDDEN' })).toBe(
      errorsBefore,
    );
    const refusals = proxy.logs().filter((line) => line.msg === 'admin request refused');
    expect(refusals.length).toBe(PROTECTED.length + 1);
    expect(refusals[0]).toMatchObject({ level: 'info', peer: OTHER, path: '/config', code: 'ADMIN_FORBIDDEN' });
  });

  it('answers them to a loopback peer that names it by address or localhost', async () => {
    for (const path of ['/config', '/status', '/stats', '/errors', '/'])
      expect((await get(proxy, path)).status, path).toBe(200);
    expect((await get(proxy, '/status', { headers: { host: 'localhost:9901' } })).status).toBe(200);
    expect((await get(proxy, '/status', { headers: { host: 'dash.localhost' } })).status).toBe(200);
  });

  it('refuses a loopback peer whose Host is another name (a page that rebound its name to 127.0.0.1)', async () => {
    for (const host of ['evil.example', 'evil.example:9901', '127.0.0.1.nip.io'])
      expectProblemShape(await get(proxy, '/config', { headers: { host } }), 'ADMIN_FORBIDDEN', 403);
  });

  it('never counts X-Forwarded-For or Forwarded as the peer', async () => {
    const res = await get(proxy, '/config', {
      from: OTHER,
      headers: { 'x-forwarded-for': '127.0.0.1', forwarded: 'for=127.0.0.1' },
    });
    expectProblemShape(res, 'ADMIN_FORBIDDEN', 403);
  });

  it("serves the dashboard with a Content-Security-Policy that runs only the page's own script", async () => {
    const res = await get(proxy, '/');
    const csp = String(res.headers['content-security-policy']);
    expect(csp).toMatch(/default-src 'none'/);
    expect(csp).toMatch(/script-src 'sha256-[A-Za-z0-9+/=]+'(;|$)/);
    expect(csp).toMatch(/object-src 'none'/);
    expect(csp).toMatch(/base-uri 'none'/);
    expect(csp).toMatch(/frame-ancestors 'none'/);
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval/);
  });
});

describe('admin port with a token (SPEC §19.1)', () => {
  const TOKEN = 'adm1n-t0ken-0123456789abcdef';
  const dir = mkdtempSync(path.join(os.tmpdir(), 'breakwater-admin-'));
  const tokenFile = path.join(dir, 'token');
  const configFile = path.join(dir, 'breakwater.yaml');
  let proxy: TestProxy;
  beforeAll(async () => {
    writeFileSync(tokenFile, `${TOKEN}\n`);
    proxy = await startProxy(CONFIG, { adminHost: '0.0.0.0', admin: `tokenFile: "${tokenFile}"`, file: configFile });
  });
  afterAll(() => proxy.close());

  it('admits the right bearer; a wrong one gets 401 invalid_token, none gets 401 with the realm', async () => {
    expect((await get(proxy, '/status', { from: OTHER, headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(
      200,
    );
    expect((await get(proxy, '/status', { from: OTHER, headers: { authorization: `bearer ${TOKEN}` } })).status).toBe(
      200,
    );
    const wrong = await get(proxy, '/status', { from: OTHER, headers: { authorization: `Bearer ${TOKEN}x` } });
    expectProblemShape(wrong, 'ADMIN_UNAUTHORIZED', 401);
    expect(wrong.headers['www-authenticate']).toBe('Bearer realm="breakwater", error="invalid_token"');
    const none = await get(proxy, '/status', { from: OTHER });
    expectProblemShape(none, 'ADMIN_UNAUTHORIZED', 401);
    expect(none.headers['www-authenticate']).toBe('Bearer realm="breakwater"');
  });

  it('GET /?token= sets an HttpOnly SameSite=Strict cookie that is not the token, for GET and HEAD only', async () => {
    const login = await get(proxy, `/?token=${TOKEN}`, { from: OTHER });
    expect(login.status).toBe(303);
    expect(login.headers.location).toBe('/');
    const cookie = String(login.headers['set-cookie']);
    expect(cookie).toMatch(/^breakwater_admin=[^;]+; Path=\/; HttpOnly; SameSite=Strict$/);
    expect(cookie).not.toContain(TOKEN);
    const value = cookie.split(';')[0]!;
    expect((await get(proxy, '/', { from: OTHER, headers: { cookie: value } })).status).toBe(200);
    expect((await get(proxy, '/errors', { from: OTHER, method: 'HEAD', headers: { cookie: value } })).status).toBe(200);
    expectProblemShape(
      await get(proxy, '/status', { from: OTHER, method: 'POST', headers: { cookie: value } }),
      'ADMIN_UNAUTHORIZED',
      401,
    );
    expectProblemShape(
      await get(proxy, '/status', { from: OTHER, headers: { cookie: 'breakwater_admin=forged' } }),
      'ADMIN_UNAUTHORIZED',
      401,
    );
    const wrong = await get(proxy, '/?token=not-the-token-at-all', { from: OTHER });
    expectProblemShape(wrong, 'ADMIN_UNAUTHORIZED', 401);
    expect(wrong.headers['set-cookie']).toBeUndefined();
  });

  it('never shows the token: /config has "<redacted>" and the file path; no log line holds it', async () => {
    const shown = (await get(proxy, '/config')).json<{ admin: { token: string; tokenFile: string } }>();
    expect(shown.admin).toMatchObject({ token: '<redacted>', tokenFile });
    await get(proxy, `/?token=${TOKEN}`, { from: OTHER });
    await get(proxy, `/?token=${TOKEN}-wrong`, { from: OTHER });
    expect(proxy.rawLogs()).not.toContain(TOKEN);
  });

  it('breakwater stat sends $BREAKWATER_ADMIN_TOKEN or --token-file; refused, it exits 1 with the title and the hint', async () => {
    const admin = `http://${OTHER}:${new URL(proxy.adminUrl).port}`;
    const refused = await runCli(['stat', '--admin', admin]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('Admin token required');
    expect(refused.stderr).toContain('Authorization: Bearer');
    const fromEnv = await runCli(['stat', '--admin', admin], { env: { BREAKWATER_ADMIN_TOKEN: TOKEN } });
    expect(fromEnv.code, fromEnv.stderr).toBe(0);
    expect(fromEnv.stdout).toContain('ROUTE');
    const fromFile = await runCli(['stat', '--admin', admin, '--token-file', tokenFile]);
    expect(fromFile.code, fromFile.stderr).toBe(0);
  });

  it('reads the token again on reload: the rotated one admits, the old one is refused', async () => {
    const rotated = 'r0tated-t0ken-fedcba9876543210';
    writeFileSync(tokenFile, rotated);
    expect((await proxy.app.reload('test')).result).toBe('success');
    expect((await get(proxy, '/status', { from: OTHER, headers: { authorization: `Bearer ${rotated}` } })).status).toBe(
      200,
    );
    expectProblemShape(
      await get(proxy, '/status', { from: OTHER, headers: { authorization: `Bearer ${TOKEN}` } }),
      'ADMIN_UNAUTHORIZED',
      401,
    );
  });
});

describe("the proxy port's default bind (SPEC §2, §20.1)", () => {
  /** Whether a TCP connection from and to `address` on `port` is accepted. */
  const accepts = (address: string, port: number) =>
    new Promise<boolean>((resolve) => {
      const socket = net.connect({ host: address, port, localAddress: address });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });

  it('without listen.host the proxy port takes loopback connections only; the admin port keeps 0.0.0.0', async () => {
    const [port, adminPort] = [await freePort(), await freePort()];
    const file = writeTemp('default-bind.yaml', `listen: { port: ${port} }\nadmin: { port: ${adminPort} }\n${CONFIG}`);
    const replica = await startReplica(file, { env: { PATH: process.env.PATH } });
    try {
      expect(replica.url).toBe(`http://127.0.0.1:${port}`);
      expect(await accepts('127.0.0.1', port)).toBe(true);
      // A neighbour on the network (here: an address that is not loopback) cannot reach it.
      expect(await accepts(OTHER, port)).toBe(false);
      // The admin port answers probes and metrics on the pod's address (§19.1 guards the rest).
      expect(await accepts(OTHER, adminPort)).toBe(true);
    } finally {
      await replica.stop();
    }
  });
});
