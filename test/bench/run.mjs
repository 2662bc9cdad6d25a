#!/usr/bin/env node
// npm run bench: Breakwater (default policies, access log off) against bare
// http-proxy-3 with the same keep-alive agent and a bare undici forwarder
// (Pool.dispatch, the thinnest Node forwarder), in front of the same local
// upstream, in one run. Rounds alternate the targets (A B A B ...) so that
// the machine's noise hits both; the report gives medians and the ratios.
//
//   ROUNDS=3 DURATION=10 CONNECTIONS=50 RATE=1000 npm run bench
//   BENCH_CONFIG=file.yaml npm run bench   (Breakwater with another config;
//                                            @UPSTREAM@, @PORT@, @ADMIN_PORT@ replaced)
//   BENCH_VARIANTS="limit=test/bench/limit.yaml,open=test/bench/circuit-open.yaml"
//                                           (more Breakwater targets, same run)
//   BENCH_VARIANTS="limit=test/bench/limit.yaml,shared=test/bench/shared.yaml,old=test/bench/shared.yaml=/tmp/old/dist/cli.js"
//                                           (a third field: another build's cli.js, e.g. the
//                                            commit before a change; a config with @REDIS@
//                                            gets a redis-server started on CPU 0, one with @OTLP@
//                                            an OTLP/HTTP receiver that drops what it gets)
//
// Closed loop (as fast as it goes, CONNECTIONS connections) gives req/s,
// p50 and p99; an open loop at RATE req/s gives the latency at a fixed load.
// The proxies run on CPU 1, the upstream and the load generator on CPU 0
// (when taskset exists). Everything listens on 127.0.0.1 and stops itself.
import { spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const DURATION = Number(process.env.DURATION ?? 10);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 50);
const RATE = Number(process.env.RATE ?? 1000);
const WARMUP = Number(process.env.WARMUP ?? 2);
// BENCH_POST=1024: every target gets POSTs of a chat-completion JSON body of that many bytes (max_tokens 256)
// instead of GETs: what a cost read from the body (pacing.cost, rateLimit.cost) adds.
const POST_BYTES = Number(process.env.BENCH_POST ?? 0);
const chatBody = (() => {
  if (!POST_BYTES) return null;
  const shape = (content) => JSON.stringify({ model: 'bench', max_tokens: 256, messages: [{ role: 'user', content }] });
  return Buffer.from(shape('x'.repeat(Math.max(0, POST_BYTES - shape('').length))));
})();
const postOptions = chatBody ? { method: 'POST', body: chatBody, headers: { 'content-type': 'application/json' } } : {};
const work = mkdtempSync(path.join(tmpdir(), 'breakwater-bench-'));
const hasTaskset = spawnSync('taskset', ['-c', '0', 'true']).status === 0;
const children = new Set();

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

async function waitForOk(url) {
  return waitForStatus(url, 200);
}

async function waitForStatus(url, status) {
  for (let i = 0; i < 200; i++) {
    const ok = await fetch(url).then(
      (res) => res.arrayBuffer().then(() => res.status === status),
      () => false,
    );
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`no 200 from ${url}`);
}

function stop(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', resolve);
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 5000).unref();
  });
}

/** Peak RSS of a process (MiB), from /proc (Linux). */
function peakRssMiB(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/VmHWM:\s+(\d+) kB/.exec(status)[1]) / 1024;
  } catch {
    return NaN;
  }
}

function load(url, options) {
  return new Promise((resolve, reject) => {
    autocannon(
      { url, connections: CONNECTIONS, duration: DURATION, timeout: 10, ...postOptions, ...options },
      (error, result) => (error ? reject(error) : resolve(result)),
    );
  });
}

/**
 * Open loop at a fixed rate: requests are sent on schedule whether or not
 * earlier ones have come back, and each latency is measured from its
 * scheduled time (no coordinated omission). autocannon's overallRate sends
 * in bursts, which made p99 at a fixed rate meaningless here.
 */
function fixedRate(url, rate, seconds, expectStatus = 200) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const total = Math.round(rate * seconds);
  const interval = 1000 / rate;
  const latencies = [];
  let errors = 0;
  let done = 0;
  let sent = 0;
  const start = performance.now();
  return new Promise((resolve) => {
    const finish = () => {
      if (++done < total) return;
      agent.destroy();
      latencies.sort((a, b) => a - b);
      const pick = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
      resolve({ achieved: total / ((performance.now() - start) / 1000), p50: pick(0.5), p99: pick(0.99), errors });
    };
    const tick = () => {
      const now = performance.now();
      while (sent < total && start + sent * interval <= now) {
        const scheduled = start + sent * interval;
        sent++;
        const req = http.request(
          url,
          { agent, method: chatBody ? 'POST' : 'GET', headers: postOptions.headers },
          (res) => {
            res.resume();
            res.on('end', () => {
              if (res.statusCode !== expectStatus) errors++;
              latencies.push(performance.now() - scheduled);
              finish();
            });
          },
        );
        req.on('error', () => {
          errors++;
          finish();
        });
        req.end(chatBody ?? undefined);
      }
      if (sent < total) setTimeout(tick, Math.max(0, start + sent * interval - performance.now()));
    };
    tick();
  });
}

const UPSTREAM_SCRIPT = `
const http = require('node:http');
const body = Buffer.from(JSON.stringify({ id: 'evt_1', object: 'event', data: 'x'.repeat(960) }).slice(0, 1024));
// A quota announced on every response, as real APIs do, with plenty left
// (the pacing variant reads it and never has to wait).
let remaining = 1e9;
// Under /missing: a provider's 404, as Stripe words it (the error-journal variants).
const missing = Buffer.from(JSON.stringify({ error: { type: 'invalid_request_error', message: 'No such event: evt_missing', code: 'resource_missing' } }));
http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    if (req.url.startsWith('/missing')) {
      res.writeHead(404, { 'content-type': 'application/json', 'content-length': missing.length, 'request-id': 'req_bench' });
      return res.end(missing);
    }
    remaining -= 1;
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length, 'x-ratelimit-limit': '1000000000', 'x-ratelimit-remaining': String(remaining), 'x-ratelimit-reset': '3600' });
    res.end(body);
  });
}).listen(Number(process.env.PORT), '127.0.0.1');
`;

const BARE_SCRIPT = `
const http = require('node:http');
const { createProxyServer } = require('http-proxy-3');
// The same agent settings as Breakwater's defaults for an upstream.
const agent = new http.Agent({ keepAlive: true, maxSockets: 256, scheduling: 'lifo' });
const proxy = createProxyServer({ target: process.env.UPSTREAM_URL, agent });
proxy.on('error', (err, req, res) => { if (!res.headersSent) res.writeHead(502); res.end(); });
http.createServer((req, res) => proxy.web(req, res)).listen(Number(process.env.PORT), '127.0.0.1');
`;

function breakwaterConfig(port, adminPort, upstreamUrl, file = process.env.BENCH_CONFIG) {
  if (file) {
    return readFileSync(file, 'utf8')
      .replaceAll('@OTLP@', otlpUrl)
      .replaceAll('@REDIS@', redisUrl)
      .replaceAll('@UPSTREAM@', upstreamUrl)
      .replaceAll('@PORT@', String(port))
      .replaceAll('@ADMIN_PORT@', String(adminPort));
  }
  return `version: 1
listen: { host: 127.0.0.1, port: ${port} }
admin: { host: 127.0.0.1, port: ${adminPort} }
logging: { level: warn, accessLog: false }
upstreams:
  bench: { url: "${upstreamUrl}" }
routes:
  - { name: bench, upstream: bench }
`;
}

let redisUrl = '';
let otlpUrl = '';

/** A loopback OTLP/HTTP receiver (CPU 0) that takes and drops every export, for variants whose config names @OTLP@. */
async function startOtlpSink() {
  const port = await freePort();
  writeFileSync(
    path.join(work, 'otlp-sink.cjs'),
    "require('node:http').createServer((q, s) => { q.resume(); q.on('end', () => s.end()); }).listen(Number(process.env.PORT), '127.0.0.1');",
  );
  const child = start('otlp', 0, [path.join(work, 'otlp-sink.cjs')], { PORT: String(port) });
  otlpUrl = `http://127.0.0.1:${port}/v1/traces`;
  await waitForStatus(`http://127.0.0.1:${port}/`, 200);
  return child;
}

/** A redis-server on loopback (CPU 0), for variants whose config names @REDIS@. */
async function startRedis() {
  const port = await freePort();
  const child = spawn(
    hasTaskset ? 'taskset' : 'redis-server',
    [
      ...(hasTaskset ? ['-c', '0', 'redis-server'] : []),
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
    ],
    { stdio: 'ignore' },
  );
  children.add(child);
  child.on('exit', () => children.delete(child));
  for (let i = 0; i < 100; i++) {
    const up = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.end('PING\r\n');
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (up) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  redisUrl = `redis://127.0.0.1:${port}`;
  return child;
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};

/** The thinnest Node forwarder (undici Pool.dispatch, raw handler callbacks, no policies): the Node ceiling. */
const UNDICI_SCRIPT = `
const http = require('node:http');
const { Pool } = require('undici');
const pool = new Pool(process.env.UPSTREAM_URL, { connections: 256, pipelining: 1, keepAliveTimeout: 60000 });
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host']);
http.createServer((req, res) => {
  const headers = {};
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    if (!HOP.has(name)) headers[name] = raw[i + 1];
  }
  const body = req.method === 'GET' || req.method === 'HEAD' ? null : req;
  pool.dispatch({ path: req.url, method: req.method, headers, body }, {
    onConnect() {},
    onError() { if (!res.headersSent) res.writeHead(502); res.end(); },
    onHeaders(status, rawHeaders, resume) {
      const out = [];
      for (let i = 0; i < rawHeaders.length; i += 2) {
        const name = rawHeaders[i].toString();
        if (!HOP.has(name.toLowerCase())) out.push(name, rawHeaders[i + 1].toString());
      }
      res.writeHead(status, out);
      res.on('drain', resume);
      return true;
    },
    onData(chunk) { return res.write(chunk); },
    onComplete() { res.end(); },
  });
}).listen(Number(process.env.PORT), '127.0.0.1');
`;

async function main() {
  const upstreamPort = await freePort();
  writeFileSync(path.join(work, 'upstream.cjs'), UPSTREAM_SCRIPT);
  // The secret file of the credentials variants (credentials-*.yaml), beside the configs.
  writeFileSync(path.join(work, 'bench-secret'), 'sk-bench-0123456789abcdef\n');
  writeFileSync(path.join(work, 'bare.cjs'), BARE_SCRIPT);
  writeFileSync(path.join(work, 'undici.cjs'), UNDICI_SCRIPT);
  const upstream = start('upstream', 0, [path.join(work, 'upstream.cjs')], { PORT: String(upstreamPort) });
  const upstreamUrl = `http://127.0.0.1:${upstreamPort}`;
  await waitForOk(upstreamUrl);

  const targets = {
    'http-proxy-3': async () => {
      const port = await freePort();
      const child = start('http-proxy-3', 1, [path.join(work, 'bare.cjs')], {
        PORT: String(port),
        UPSTREAM_URL: upstreamUrl,
        NODE_PATH: path.join(ROOT, 'node_modules'),
      });
      return { child, url: `http://127.0.0.1:${port}/v1/events` };
    },
    undici: async () => {
      const port = await freePort();
      const child = start('undici', 1, [path.join(work, 'undici.cjs')], {
        PORT: String(port),
        UPSTREAM_URL: upstreamUrl,
        NODE_PATH: path.join(ROOT, 'node_modules'),
      });
      return { child, url: `http://127.0.0.1:${port}/v1/events` };
    },
    breakwater: async () => {
      const [port, adminPort] = [await freePort(), await freePort()];
      const file = path.join(work, 'breakwater.yaml');
      writeFileSync(file, breakwaterConfig(port, adminPort, upstreamUrl));
      const child = start('breakwater', 1, [path.join(ROOT, 'dist/cli.js'), 'run', '--config', file]);
      return { child, url: `http://127.0.0.1:${port}/v1/events` };
    },
  };

  const variants = (process.env.BENCH_VARIANTS ?? '').split(',').filter(Boolean);
  const names = (placeholder) =>
    variants.some((variant) => readFileSync(path.resolve(ROOT, variant.split('=')[1]), 'utf8').includes(placeholder));
  const redis = names('@REDIS@') ? await startRedis() : null;
  const otlp = names('@OTLP@') ? await startOtlpSink() : null;
  for (const variant of variants) {
    const [name, file, cli = path.join(ROOT, 'dist/cli.js')] = variant.split('=');
    targets[`breakwater-${name}`] = async () => {
      const [port, adminPort] = [await freePort(), await freePort()];
      const config = path.join(work, `${name}.yaml`);
      writeFileSync(config, breakwaterConfig(port, adminPort, upstreamUrl, path.resolve(ROOT, file)));
      const child = start(name, 1, [path.resolve(ROOT, cli), 'run', '--config', config]);
      // A config may name the status every answer has: "# bench-expect: 404".
      const expected = /^# bench-expect: (\d{3})$/m.exec(readFileSync(path.resolve(ROOT, file), 'utf8'));
      return {
        child,
        url: `http://127.0.0.1:${port}/v1/events`,
        expectStatus: expected ? Number(expected[1]) : name === 'open' ? 503 : 200,
      };
    };
  }

  const results = Object.fromEntries(
    Object.keys(targets).map((name) => [
      name,
      { rps: [], p50: [], p99: [], fixedP50: [], fixedP99: [], rate: [], errors: 0, rss: [] },
    ]),
  );
  for (let round = 1; round <= ROUNDS; round++) {
    for (const [name, launch] of Object.entries(targets)) {
      const { child, url, expectStatus = 200 } = await launch();
      await waitForStatus(url, expectStatus);
      await load(url, { duration: WARMUP });
      const closed = await load(url);
      const fixed = await fixedRate(url, RATE, DURATION, expectStatus);
      const rss = peakRssMiB(child.pid);
      await stop(child);
      const r = results[name];
      r.rps.push(closed.requests.average);
      r.p50.push(closed.latency.p50);
      r.p99.push(closed.latency.p99);
      r.fixedP50.push(fixed.p50);
      r.fixedP99.push(fixed.p99);
      r.rate.push(fixed.achieved);
      // Answers with another status than the expected one are errors (autocannon counts non-2xx).
      r.errors += closed.errors + (expectStatus < 300 ? closed.non2xx : 0) + fixed.errors;
      r.rss.push(rss);
      process.stderr.write(
        `round ${round} ${name}: ${Math.round(closed.requests.average)} req/s p50 ${closed.latency.p50} ms p99 ${closed.latency.p99} ms; ` +
          `at ${RATE}/s p50 ${fixed.p50.toFixed(2)} ms p99 ${fixed.p99.toFixed(2)} ms; peak RSS ${rss.toFixed(1)} MiB\n`,
      );
    }
  }
  await stop(upstream);
  if (redis) await stop(redis);
  if (otlp) await stop(otlp);

  const summary = Object.fromEntries(
    Object.entries(results).map(([name, r]) => [
      name,
      {
        rps: median(r.rps),
        p50: median(r.p50),
        p99: median(r.p99),
        fixedRate: median(r.rate),
        fixedP50: median(r.fixedP50),
        fixedP99: median(r.fixedP99),
        rss: Math.max(...r.rss),
        errors: r.errors,
      },
    ]),
  );
  const bw = summary.breakwater;
  const bare = summary['http-proxy-3'];
  const row = (name, s) =>
    `| ${name} | ${Math.round(s.rps)} | ${s.p50} | ${s.p99} | ${Math.round(s.fixedRate)} | ${s.fixedP50.toFixed(2)} | ${s.fixedP99.toFixed(2)} | ${s.rss.toFixed(1)} | ${s.errors} |`;
  console.log(
    `\nBreakwater vs bare http-proxy-3, ${ROUNDS} rounds (medians), ${DURATION}s closed loop with ${CONNECTIONS} connections, then ${RATE} req/s open loop; node ${process.version}${hasTaskset ? ', proxies on CPU 1' : ''}\n`,
  );
  console.log(
    '| target | req/s | p50 ms | p99 ms | fixed req/s | fixed p50 ms | fixed p99 ms | peak RSS MiB | errors |',
  );
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const [name, s] of Object.entries(summary)) console.log(row(name, s));
  for (const [name, s] of Object.entries(summary)) {
    if (name.startsWith('breakwater-'))
      console.log(
        `${name} / breakwater: req/s ${(s.rps / bw.rps).toFixed(2)}x, p99 at ${RATE}/s ${(s.fixedP99 / bw.fixedP99).toFixed(2)}x`,
      );
  }
  console.log(
    `\nratios (breakwater / http-proxy-3): req/s ${(bw.rps / bare.rps).toFixed(2)}x, p99 ${(bw.p99 / bare.p99).toFixed(2)}x, ` +
      `p99 at ${RATE}/s ${(bw.fixedP99 / bare.fixedP99).toFixed(2)}x, peak RSS ${(bw.rss / bare.rss).toFixed(2)}x`,
  );
  const undici = summary.undici;
  console.log(
    `ratios (breakwater / bare undici forwarder): req/s ${(bw.rps / undici.rps).toFixed(2)}x, p99 at ${RATE}/s ${(bw.fixedP99 / undici.fixedP99).toFixed(2)}x, peak RSS ${(bw.rss / undici.rss).toFixed(2)}x`,
  );
  console.log(
    JSON.stringify({
      summary,
      ratios: {
        rps: bw.rps / bare.rps,
        p99: bw.p99 / bare.p99,
        fixedP99: bw.fixedP99 / bare.fixedP99,
        rss: bw.rss / bare.rss,
      },
    }),
  );
}

main().then(
  () => process.exit(0),
  async (error) => {
    console.error(error);
    await Promise.all([...children].map(stop));
    process.exit(1);
  },
);
process.on('SIGINT', async () => {
  await Promise.all([...children].map(stop));
  process.exit(130);
});
