/**
 * The admin port (SPEC §7) of a real `breakwater run` process: health,
 * readiness, metrics with the process metrics, and nothing else.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, waitUntil, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { CLI, writeTemp } from '../helpers/cli.js';
import { request } from '../helpers/proxy.js';

let upstream: FaultUpstream;
let child: ChildProcess;
let adminUrl = '';
let proxyUrl = '';

beforeAll(async () => {
  upstream = await startFaultUpstream(() => ({ kind: 'respond', body: 'ok' }));
  const file = writeTemp(
    'admin.yaml',
    `version: 1
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
upstreams: { u: { url: "${upstream.url}" } }
routes: [ { name: r, upstream: u } ]
`,
  );
  child = spawn(process.execPath, [CLI, 'run', '--config', file], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  await waitUntil(() => out.includes('"msg":"listening"'), 15_000, 'breakwater to listen');
  const line = JSON.parse(out.split('\n').find((l) => l.includes('"msg":"listening"'))!) as {
    listen: string;
    admin: string;
  };
  adminUrl = `http://${line.admin}`;
  proxyUrl = `http://${line.listen}`;
});

afterAll(async () => {
  child.kill('SIGTERM');
  await new Promise((resolve) => child.once('exit', resolve));
  await upstream.close();
});

describe('admin endpoints', () => {
  it('answers /healthz and /readyz with 200 once the proxy port is bound', async () => {
    expect((await request(`${adminUrl}/healthz`)).status).toBe(200);
    const ready = await request(`${adminUrl}/readyz`);
    expect(ready.status).toBe(200);
    expect((await request(`${proxyUrl}/x`)).text).toBe('ok');
  });

  it('serves every SPEC metric family and the process metrics', async () => {
    await request(`${proxyUrl}/x`);
    const text = (await request(`${adminUrl}/metrics`)).text;
    for (const family of [
      'process_cpu_user_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_seconds',
      'breakwater_requests_total',
      'breakwater_request_duration_seconds',
    ]) {
      expect(text).toContain(`# TYPE ${family} `);
    }
    expect(text).toMatch(/^breakwater_requests_total\{route="r",method="GET",code="200"\} [1-9]/m);
  });

  it('answers unknown paths 404 and other methods 405', async () => {
    expect((await request(`${adminUrl}/nope`)).status).toBe(404);
    const post = await request(`${adminUrl}/metrics`, { method: 'POST', body: '' });
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET, HEAD');
  });

  it.each(['/errors', '/stats'])(
    'answers %s to GET with JSON, to HEAD with its headers only, and to POST with 405',
    async (path) => {
      const get = await request(`${adminUrl}${path}`);
      expect(get.status).toBe(200);
      expect(get.headers['content-type']).toBe('application/json');
      expect(get.headers['cache-control']).toBe('no-store');
      expect(() => get.json()).not.toThrow();
      const head = await request(`${adminUrl}${path}`, { method: 'HEAD' });
      expect(head.status).toBe(200);
      expect(head.body.length).toBe(0);
      expect(Number(head.headers['content-length'])).toBeGreaterThan(0);
      const post = await request(`${adminUrl}${path}`, { method: 'POST', body: '' });
      expect(post.status).toBe(405);
      expect(post.headers.allow).toBe('GET, HEAD');
    },
  );
});
