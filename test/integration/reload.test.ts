/**
 * Reload (SPEC §3): SIGHUP and file changes (ConfigMap symlink swaps
 * included) load the file again; a valid one replaces the running config
 * without dropping a request, an invalid one is logged with its positions,
 * counted, and refused. Runs the real binary.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, waitUntil, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { CLI } from '../helpers/cli.js';
import { request } from '../helpers/proxy.js';

let upstream: FaultUpstream;

beforeAll(async () => {
  upstream = await startFaultUpstream((_n, req) =>
    req.url?.includes('slow')
      ? { kind: 'slow-headers', delayMs: 800, body: 'slow done' }
      : { kind: 'respond', body: `hello ${req.url}` },
  );
});

afterAll(async () => {
  await upstream.close();
});

function config(routes: string, extra = ''): string {
  return `version: 1
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
upstreams:
  u: { url: "${upstream.url}" }
${extra}routes:
${routes}`;
}

interface Running {
  child: ChildProcess;
  out: () => string;
  proxyUrl: string;
  adminUrl: string;
  lines: () => Record<string, unknown>[];
  stop: () => Promise<number | null>;
}

async function run(file: string): Promise<Running> {
  const child = spawn(process.execPath, [CLI, 'run', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  await waitUntil(() => out.includes('"msg":"listening"'), 15_000, 'breakwater to listen');
  const lines = () =>
    out
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  const listening = lines().find((line) => line.msg === 'listening')!;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    out: () => out,
    proxyUrl: `http://${String(listening.listen)}`,
    adminUrl: `http://${String(listening.admin)}`,
    lines,
    stop: async () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

const reloads = async (adminUrl: string, result: string) => {
  const text = (await request(`${adminUrl}/metrics`)).text;
  return Number(
    new RegExp(`^breakwater_config_reloads_total\\{result="${result}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? NaN,
  );
};

describe('reload', () => {
  it('serves a new route after SIGHUP while a request in flight across the reload completes', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'breakwater-reload-'));
    const file = path.join(dir, 'breakwater.yaml');
    writeFileSync(file, config('  - { name: a, match: { pathPrefix: /a }, upstream: u }\n'));
    const app = await run(file);
    try {
      expect((await request(`${app.proxyUrl}/b/x`)).status).toBe(404);
      const inFlight = request(`${app.proxyUrl}/a/slow`);
      await upstream.waitFor(() => upstream.requests.some((r) => r.url === '/a/slow'));
      writeFileSync(
        file,
        config(
          '  - { name: a, match: { pathPrefix: /a }, upstream: u }\n  - { name: b, match: { pathPrefix: /b }, upstream: u }\n',
        ),
      );
      app.child.kill('SIGHUP');
      await waitUntil(() => app.lines().some((line) => line.msg === 'config reloaded'), 10_000, 'the reload');
      const res = await request(`${app.proxyUrl}/b/x`);
      expect(res.status).toBe(200);
      expect(res.text).toBe('hello /b/x');
      const slow = await inFlight;
      expect(slow.status).toBe(200);
      expect(slow.text).toBe('slow done');
      expect(await reloads(app.adminUrl, 'success')).toBeGreaterThanOrEqual(1);
      const status = (await request(`${app.adminUrl}/status`)).json<{
        lastReload: { result: string };
        routes: { name: string }[];
      }>();
      expect(status.lastReload.result).toBe('success');
      expect(status.routes.map((r) => r.name)).toEqual(['a', 'b']);
    } finally {
      expect(await app.stop()).toBe(0);
    }
  });

  it('refuses an invalid edit: logged with FILE:LINE:COL at error level, counted, the old routes still serve', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'breakwater-reload-'));
    const file = path.join(dir, 'breakwater.yaml');
    writeFileSync(file, config('  - { name: a, match: { pathPrefix: /a }, upstream: u }\n'));
    const app = await run(file);
    try {
      writeFileSync(file, config('  - { name: a, match: { pathPrefix: /a }, upstream: nope, retyr: {} }\n'));
      app.child.kill('SIGHUP');
      await waitUntil(
        () => app.lines().some((line) => String(line.msg).startsWith('config reload refused')),
        10_000,
        'the refusal',
      );
      const errors = app
        .lines()
        .filter((line) => line.level === 'error')
        .map((line) => String(line.msg));
      expect(errors.some((msg) => msg.startsWith(`${file}:7:`) && msg.includes('unknown upstream "nope"'))).toBe(true);
      expect(errors.some((msg) => msg.includes('unknown key "retyr"'))).toBe(true);
      expect(await reloads(app.adminUrl, 'failure')).toBe(1);
      expect((await request(`${app.proxyUrl}/a/x`)).status).toBe(200);
      const status = (await request(`${app.adminUrl}/status`)).json<{
        lastReload: { result: string; problems: string[] };
      }>();
      expect(status.lastReload.result).toBe('failure');
      expect(status.lastReload.problems.length).toBe(2);
    } finally {
      expect(await app.stop()).toBe(0);
    }
  });

  it('picks up a ConfigMap-style ..data symlink swap without a signal', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'breakwater-configmap-'));
    const version1 = path.join(dir, '..2026_11_23_v1');
    mkdirSync(version1);
    writeFileSync(
      path.join(version1, 'breakwater.yaml'),
      config('  - { name: one, match: { pathPrefix: /one }, upstream: u }\n'),
    );
    symlinkSync('..2026_11_23_v1', path.join(dir, '..data'));
    symlinkSync('..data/breakwater.yaml', path.join(dir, 'breakwater.yaml'));
    const app = await run(path.join(dir, 'breakwater.yaml'));
    try {
      expect((await request(`${app.proxyUrl}/two/x`)).status).toBe(404);
      // What the kubelet does: write a new folder, then swap ..data atomically.
      const version2 = path.join(dir, '..2026_11_23_v2');
      mkdirSync(version2);
      writeFileSync(
        path.join(version2, 'breakwater.yaml'),
        config('  - { name: two, match: { pathPrefix: /two }, upstream: u }\n'),
      );
      symlinkSync('..2026_11_23_v2', path.join(dir, '..data_tmp'));
      renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
      await waitUntil(() => app.lines().some((line) => line.msg === 'config reloaded'), 10_000, 'the watched reload');
      expect((await request(`${app.proxyUrl}/two/x`)).status).toBe(200);
      expect((await request(`${app.proxyUrl}/one/x`)).status).toBe(404);
    } finally {
      expect(await app.stop()).toBe(0);
    }
  });

  it('drops nothing under 500 req/s across 10 reloads', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'breakwater-reload-'));
    const file = path.join(dir, 'breakwater.yaml');
    const routes = (n: number) =>
      `  - { name: a, match: { pathPrefix: /a }, upstream: u, timeouts: { perTry: ${5 + n}s, total: 30s } }\n`;
    writeFileSync(file, config(routes(0)));
    const app = await run(file);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 20 });
    try {
      const statuses: number[] = [];
      const failures: string[] = [];
      const sent: Promise<void>[] = [];
      const started = Date.now();
      let reloadsDone = 0;
      // 500 req/s for 4 s, reloading every 400 ms.
      const total = 2000;
      for (let i = 0; i < total; i++) {
        const due = started + i * 2;
        const wait = due - Date.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        if (i > 0 && i % 200 === 0 && reloadsDone < 10) {
          reloadsDone++;
          writeFileSync(file, config(routes(reloadsDone)));
          app.child.kill('SIGHUP');
        }
        sent.push(
          new Promise<void>((resolve) => {
            http
              .get(`${app.proxyUrl}/a/${i}`, { agent }, (res) => {
                res.resume();
                res.on('end', () => {
                  statuses.push(res.statusCode ?? 0);
                  resolve();
                });
                res.on('error', (error) => {
                  failures.push(error.message);
                  resolve();
                });
              })
              .on('error', (error) => {
                failures.push(error.message);
                resolve();
              });
          }),
        );
      }
      await Promise.all(sent);
      await waitUntil(
        () => app.lines().filter((line) => line.msg === 'config reloaded').length >= 9,
        10_000,
        'the reloads',
      );
      expect(failures).toEqual([]);
      expect(statuses.length).toBe(total);
      expect(statuses.every((s) => s === 200)).toBe(true);
    } finally {
      agent.destroy();
      expect(await app.stop()).toBe(0);
    }
  });
});
