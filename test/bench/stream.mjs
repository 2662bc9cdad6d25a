#!/usr/bin/env node
// npm run bench:stream: a streamed route (server-sent events, as an LLM API
// answers) through Breakwater without stream timeouts, with
// timeouts.firstByte (the status and headers held until the first event) and
// with firstByte and idle, in one run. The upstream sends its headers at
// once, its first event FIRST_EVENT_MS later, then EVENTS-1 more events
// EVENT_GAP_MS apart. Reports per target, medians over rounds that alternate
// the targets: the client's time to the headers and to the first event (p50,
// p99), streams per second, and Breakwater's CPU per stream (from /proc).
//
//   ROUNDS=3 DURATION=8 CONNECTIONS=50 FIRST_EVENT_MS=20 npm run bench:stream
//
// Breakwater runs on CPU 1, the upstream and this load generator on CPU 0
// (when taskset exists). Everything listens on 127.0.0.1 and stops itself.
import { spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const DURATION = Number(process.env.DURATION ?? 8);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 50);
const FIRST_EVENT_MS = Number(process.env.FIRST_EVENT_MS ?? 20);
const EVENTS = Number(process.env.EVENTS ?? 5);
const EVENT_GAP_MS = Number(process.env.EVENT_GAP_MS ?? 2);
const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK']).stdout?.toString().trim() || 100);
const hasTaskset = spawnSync('taskset', ['-c', '0', 'true']).status === 0;
const work = mkdtempSync(path.join(tmpdir(), 'breakwater-bench-stream-'));
const children = new Set();

const TARGETS = [
  { name: 'no stream timeouts', timeouts: '' },
  { name: 'firstByte', timeouts: 'timeouts: { firstByte: 5s }' },
  { name: 'firstByte + idle', timeouts: 'timeouts: { firstByte: 5s, idle: 5s }' },
];

const UPSTREAM_SCRIPT = `
const http = require('node:http');
const event = (i) => 'data: {"choices":[{"delta":{"content":"token ' + i + '"}}]}\\n\\n';
http.createServer((req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.flushHeaders();
  let i = 0;
  const next = () => {
    if (res.destroyed) return;
    res.write(event(i++));
    if (i === ${EVENTS}) return res.end('data: [DONE]\\n\\n');
    setTimeout(next, ${EVENT_GAP_MS});
  };
  setTimeout(next, ${FIRST_EVENT_MS});
}).listen(Number(process.env.PORT), '127.0.0.1');
`;

function freePort() {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function start(name, cpu, args, env = {}) {
  const command = hasTaskset ? 'taskset' : process.execPath;
  const argv = hasTaskset ? ['-c', String(cpu), process.execPath, ...args] : args;
  const child = spawn(command, argv, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  child.stderr.on('data', (chunk) => process.stderr.write(`[${name}] ${chunk}`));
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

async function waitForStream(url) {
  for (let i = 0; i < 200; i++) {
    const ok = await fetch(url).then(
      (res) => res.text().then(() => res.status === 200),
      () => false,
    );
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`no stream from ${url}`);
}

/** utime + stime of a process, in seconds (Linux). */
function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** CONNECTIONS clients, each streaming one completion after another for DURATION s. */
async function load(url) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  const headers = [];
  const firstEvents = [];
  let streams = 0;
  let errors = 0;
  const until = performance.now() + DURATION * 1000;
  const one = () =>
    new Promise((resolve) => {
      const sent = performance.now();
      const req = http.request(url, { agent, method: 'POST' }, (res) => {
        headers.push(performance.now() - sent);
        let first = true;
        res.on('data', () => {
          if (first) firstEvents.push(performance.now() - sent);
          first = false;
        });
        res.on('end', () => {
          if (res.statusCode === 200) streams++;
          else errors++;
          resolve();
        });
      });
      req.on('error', () => {
        errors++;
        resolve();
      });
      req.end('{"stream":true}');
    });
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (performance.now() < until) await one();
    }),
  );
  agent.destroy();
  const pick = (list, q) => list.sort((a, b) => a - b)[Math.min(list.length - 1, Math.floor(q * list.length))];
  return {
    streamsPerSecond: streams / DURATION,
    headersP50: pick(headers, 0.5),
    headersP99: pick(headers, 0.99),
    firstP50: pick(firstEvents, 0.5),
    firstP99: pick(firstEvents, 0.99),
    streams,
    errors,
  };
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

async function main() {
  const upstreamPort = await freePort();
  start('upstream', 0, ['-e', UPSTREAM_SCRIPT], { PORT: String(upstreamPort) });
  const upstreamUrl = `http://127.0.0.1:${upstreamPort}`;
  await waitForStream(upstreamUrl);

  const results = new Map(TARGETS.map((target) => [target.name, []]));
  for (let round = 1; round <= ROUNDS; round++) {
    for (const target of TARGETS) {
      const [port, adminPort] = [await freePort(), await freePort()];
      const file = path.join(work, `${target.name.replace(/\W+/g, '-')}.yaml`);
      writeFileSync(
        file,
        `version: 1
listen: { host: 127.0.0.1, port: ${port} }
admin: { host: 127.0.0.1, port: ${adminPort} }
logging: { level: warn, accessLog: false }
upstreams: { llm: { url: "${upstreamUrl}" } }
routes:
  - name: llm
    upstream: llm
    ${target.timeouts}
`,
      );
      const child = start('breakwater', 1, [path.join(ROOT, 'dist/cli.js'), 'run', '--config', file]);
      const url = `http://127.0.0.1:${port}/v1/chat/completions`;
      await waitForStream(url);
      await load(url); // warm-up, not counted
      const cpuBefore = cpuSeconds(child.pid);
      const result = await load(url);
      const cpuPerStreamUs = ((cpuSeconds(child.pid) - cpuBefore) / Math.max(1, result.streams)) * 1e6;
      results.get(target.name).push({ ...result, cpuPerStreamUs });
      console.log(
        `round ${round} ${target.name}: ${result.streamsPerSecond.toFixed(0)} streams/s; headers p50 ${result.headersP50.toFixed(2)} ms p99 ${result.headersP99.toFixed(2)} ms; first event p50 ${result.firstP50.toFixed(2)} ms p99 ${result.firstP99.toFixed(2)} ms; CPU ${cpuPerStreamUs.toFixed(0)} µs/stream; errors ${result.errors}`,
      );
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    }
  }
  const summary = {};
  for (const [name, rounds] of results) {
    summary[name] = Object.fromEntries(
      ['streamsPerSecond', 'headersP50', 'headersP99', 'firstP50', 'firstP99', 'cpuPerStreamUs'].map((key) => [
        key,
        median(rounds.map((r) => r[key])),
      ]),
    );
  }
  const base = summary[TARGETS[0].name];
  console.log(`\nmedians over ${ROUNDS} rounds (first event ${FIRST_EVENT_MS} ms after the headers upstream):`);
  for (const [name, s] of Object.entries(summary))
    console.log(
      `${name}: ${s.streamsPerSecond.toFixed(0)} streams/s (${(s.streamsPerSecond / base.streamsPerSecond).toFixed(2)}x); headers p50 ${s.headersP50.toFixed(2)} ms; first event p50 ${s.firstP50.toFixed(2)} ms (${(s.firstP50 - base.firstP50).toFixed(2)} ms more), p99 ${s.firstP99.toFixed(2)} ms; CPU ${s.cpuPerStreamUs.toFixed(0)} µs/stream (${(s.cpuPerStreamUs / base.cpuPerStreamUs).toFixed(2)}x)`,
    );
  console.log(JSON.stringify({ summary }));
}

const cleanup = () => {
  for (const child of children) child.kill('SIGKILL');
};
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));
main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
