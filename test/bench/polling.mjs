#!/usr/bin/env node
// npm run bench:polling: CLIENTS clients poll one resource (each one GET
// after another, PAUSE_MS apart) for DURATION s through Breakwater, without
// and with a cache on the route, in one run: upstream requests per second
// against the clients' requests per second. The upstream answers in
// LATENCY_MS with `Cache-Control: max-age=MAX_AGE` and an ETag (a 304 to
// its If-None-Match), as an API that asks its clients to cache does.
//
//   CLIENTS=200 DURATION=10 PAUSE_MS=100 MAX_AGE=1 npm run bench:polling
//
// Breakwater on CPU 1, the upstream and the clients on CPU 0 (with taskset).
import { spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CLIENTS = Number(process.env.CLIENTS ?? 200);
const DURATION = Number(process.env.DURATION ?? 10);
const PAUSE_MS = Number(process.env.PAUSE_MS ?? 100);
const LATENCY_MS = Number(process.env.LATENCY_MS ?? 50);
const MAX_AGE = Number(process.env.MAX_AGE ?? 1);
const hasTaskset = spawnSync('taskset', ['-c', '0', 'true']).status === 0;
const work = mkdtempSync(path.join(tmpdir(), 'breakwater-bench-polling-'));
const children = new Set();

const freePort = () =>
  new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });

/** The upstream, in this process: counts requests and 304s. */
async function startUpstream() {
  const counts = { requests: 0, notModified: 0 };
  const body = JSON.stringify({ id: 'status', state: 'green', items: Array.from({ length: 20 }, (_, i) => i) });
  const server = http.createServer((req, res) => {
    counts.requests++;
    setTimeout(() => {
      if (req.headers['if-none-match'] === '"v1"') {
        counts.notModified++;
        res.writeHead(304, { etag: '"v1"', 'cache-control': `max-age=${MAX_AGE}` });
        return res.end();
      }
      res.writeHead(200, { 'content-type': 'application/json', etag: '"v1"', 'cache-control': `max-age=${MAX_AGE}` });
      res.end(body);
    }, LATENCY_MS);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, counts, url: `http://127.0.0.1:${server.address().port}` };
}

async function startBreakwater(upstreamUrl, cache) {
  const [port, adminPort] = [await freePort(), await freePort()];
  const file = path.join(work, `${cache ? 'cache' : 'plain'}.yaml`);
  writeFileSync(
    file,
    `version: 1
listen: { host: 127.0.0.1, port: ${port} }
admin: { host: 127.0.0.1, port: ${adminPort} }
logging: { level: warn, accessLog: false }
upstreams: { api: { url: "${upstreamUrl}", pool: { maxSockets: 256 } } }
routes:
  - { name: api, upstream: api${cache ? ', cache: {}' : ''} }
`,
  );
  const args = [path.join(ROOT, 'dist/cli.js'), 'run', '--config', file];
  const child = spawn(
    hasTaskset ? 'taskset' : process.execPath,
    hasTaskset ? ['-c', '1', process.execPath, ...args] : args,
    {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  children.add(child);
  const url = `http://127.0.0.1:${port}/v1/status`;
  for (let i = 0; i < 200; i++) {
    const ok = await fetch(url).then(
      (r) => r.text().then(() => r.ok),
      () => false,
    );
    if (ok) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { child, url };
}

async function poll(url) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS });
  let done = 0;
  let errors = 0;
  const until = performance.now() + DURATION * 1000;
  const get = () =>
    new Promise((resolve) => {
      const req = http.get(url, { agent }, (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode === 200) done++;
          else errors++;
          resolve();
        });
      });
      req.on('error', () => {
        errors++;
        resolve();
      });
    });
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (performance.now() < until) {
        await get();
        await new Promise((resolve) => setTimeout(resolve, PAUSE_MS));
      }
    }),
  );
  agent.destroy();
  return { done, errors };
}

async function main() {
  const upstream = await startUpstream();
  const rows = [];
  for (const cache of [false, true]) {
    const { child, url } = await startBreakwater(upstream.url, cache);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const before = { ...upstream.counts };
    const { done, errors } = await poll(url);
    const upstreamRequests = upstream.counts.requests - before.requests;
    const notModified = upstream.counts.notModified - before.notModified;
    rows.push({ cache, clientRps: done / DURATION, upstreamRps: upstreamRequests / DURATION, notModified, errors });
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('exit', resolve));
  }
  for (const row of rows)
    console.log(
      `${row.cache ? 'with cache   ' : 'without cache'}: clients ${row.clientRps.toFixed(0)} req/s, upstream ${row.upstreamRps.toFixed(2)} req/s (${row.notModified} of them 304s), errors ${row.errors}`,
    );
  console.log(
    `upstream requests per second, with the cache / without: ${(rows[1].upstreamRps / rows[0].upstreamRps).toFixed(4)}x (${CLIENTS} clients, max-age ${MAX_AGE} s)`,
  );
  console.log(JSON.stringify({ rows }));
  upstream.server.close();
  upstream.server.closeAllConnections();
}

process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});
main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
