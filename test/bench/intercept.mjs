#!/usr/bin/env node
// What TLS interception adds to a request: the same HTTPS upstream reached
// through Breakwater's CONNECT, intercepted (TLS terminated, policies, TLS
// re-originated) and tunnelled (bytes passed through), by one keep-alive
// undici client making sequential requests. Rounds alternate the two;
// prints the p50/p99 of each and the p50 added by interception. Also the
// first request to a new host (a leaf minted, two handshakes).
//
//   npm run build && node test/bench/intercept.mjs      (REQUESTS=2000 ROUNDS=3)
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ProxyAgent, request } from 'undici';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const REQUESTS = Number(process.env.REQUESTS ?? 2000);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const { createCa, createLeafIssuer } = await import(path.join(ROOT, 'dist/tls/certificates.js'));

const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
const dir = mkdtempSync(path.join(os.tmpdir(), 'bw-bench-intercept-'));
const ca = await createCa(['localhost']);
const upstreamCa = await createCa([], { name: 'Upstream bench CA' });
writeFileSync(path.join(dir, 'ca.crt'), ca.certPem);
writeFileSync(path.join(dir, 'ca.key'), ca.keyPem, { mode: 0o600 });
writeFileSync(path.join(dir, 'upstream-ca.crt'), upstreamCa.certPem);
const issuer = await createLeafIssuer(upstreamCa);
const body = Buffer.alloc(1024, 'x');
const upstream = https.createServer(
  { key: issuer.keyPem, cert: (await issuer.issue('localhost')).certChainPem },
  (req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
    res.end(body);
  },
);
await new Promise((resolve) => upstream.listen(0, '127.0.0.1', resolve));
const upstreamPort = upstream.address().port;

async function startBreakwater(mode) {
  const port = await freePort();
  const adminPort = await freePort();
  const file = path.join(dir, `${mode}.yaml`);
  writeFileSync(
    file,
    `version: 1
listen: { host: 127.0.0.1, port: ${port} }
admin: { host: 127.0.0.1, port: ${adminPort} }
logging: { level: warn, accessLog: false }
upstreams: {}
routes:
  - { name: egress, match: { host: localhost } }
forwardProxy:
  enabled: true
  allowHosts: [localhost]
  allowPorts: [${upstreamPort}]
  connect: { mode: ${mode} }
  intercept: { caCert: ca.crt, caKey: ca.key, hosts: [localhost], upstreamCa: upstream-ca.crt }
`,
  );
  const child = spawn(process.execPath, [path.join(ROOT, 'dist/cli.js'), 'run', '--config', file], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  for (let i = 0; i < 100; i++) {
    try {
      await fetch(`http://127.0.0.1:${adminPort}/readyz`);
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { child, url: `http://127.0.0.1:${port}` };
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];

async function measure(proxyUrl, caPem) {
  const agent = new ProxyAgent({ uri: proxyUrl, requestTls: { ca: caPem }, connections: 1 });
  const t0 = performance.now();
  await (await request(`https://localhost:${upstreamPort}/first`, { dispatcher: agent })).body.arrayBuffer();
  const first = performance.now() - t0;
  const times = [];
  for (let i = 0; i < REQUESTS; i++) {
    const t = performance.now();
    const res = await request(`https://localhost:${upstreamPort}/r`, { dispatcher: agent });
    await res.body.arrayBuffer();
    times.push(performance.now() - t);
  }
  await agent.close();
  times.sort((a, b) => a - b);
  return { p50: percentile(times, 0.5), p99: percentile(times, 0.99), first };
}

const results = { intercept: [], tunnel: [] };
for (let round = 1; round <= ROUNDS; round++) {
  for (const mode of ['tunnel', 'intercept']) {
    const bw = await startBreakwater(mode);
    // Intercepted: the client trusts our CA; tunnelled: the upstream's.
    const r = await measure(bw.url, mode === 'intercept' ? ca.certPem : upstreamCa.certPem);
    results[mode].push(r);
    console.log(
      `round ${round} ${mode}: p50 ${r.p50.toFixed(3)} ms p99 ${r.p99.toFixed(3)} ms; first request (new host) ${r.first.toFixed(1)} ms`,
    );
    bw.child.kill('SIGTERM');
    await new Promise((resolve) => bw.child.once('exit', resolve));
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const p50 = {
  intercept: median(results.intercept.map((r) => r.p50)),
  tunnel: median(results.tunnel.map((r) => r.p50)),
};
const first = {
  intercept: median(results.intercept.map((r) => r.first)),
  tunnel: median(results.tunnel.map((r) => r.first)),
};
console.log(
  `\nmedian p50: intercepted ${p50.intercept.toFixed(3)} ms, tunnelled ${p50.tunnel.toFixed(3)} ms: +${(p50.intercept - p50.tunnel).toFixed(3)} ms (${(p50.intercept / p50.tunnel).toFixed(2)}x)`,
);
console.log(
  `first request to a new host: intercepted ${first.intercept.toFixed(1)} ms, tunnelled ${first.tunnel.toFixed(1)} ms`,
);
upstream.close();
