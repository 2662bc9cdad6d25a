/**
 * Shared limits through a Redis Sentinel group (SPEC §9 `redis.sentinel`):
 * a real master, a replica and a sentinel started here; the master killed;
 * the sentinel promotes the replica and shared decisions continue on it.
 * Nothing fails meanwhile: requests are decided per onError while there is
 * no master.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { freePort } from '../helpers/net.js';
import { killAll } from '../fixtures/redis-cluster.js';
import { metricValue, request, startProxy, type TestProxy } from '../helpers/proxy.js';

const children: ChildProcess[] = [];
let upstream: FaultUpstream;
let proxy: TestProxy | undefined;
let masterPort = 0;
let replicaPort = 0;
let sentinelPort = 0;
let master: ChildProcess;

function redisServer(args: string[]): ChildProcess {
  const child = spawn('redis-server', args, { stdio: 'ignore' });
  children.push(child);
  return child;
}

async function ping(port: number): Promise<string> {
  const client = new Redis({
    port,
    host: '127.0.0.1',
    lazyConnect: true,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    return await client.ping();
  } catch {
    return '';
  } finally {
    client.disconnect();
  }
}

async function keysOn(port: number): Promise<string[]> {
  const client = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
  client.on('error', () => {});
  try {
    return await client.keys('breakwater:rl:*');
  } finally {
    client.disconnect();
  }
}

beforeAll(async () => {
  upstream = await startFaultUpstream(() => ({ kind: 'respond', body: 'ok' }));
  [masterPort, replicaPort, sentinelPort] = [await freePort(), await freePort(), await freePort()];
  const dir = mkdtempSync(path.join(tmpdir(), 'breakwater-sentinel-'));
  const common = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir];
  master = redisServer(['--port', String(masterPort), ...common]);
  redisServer(['--port', String(replicaPort), ...common, '--replicaof', '127.0.0.1', String(masterPort)]);
  const conf = path.join(dir, 'sentinel.conf');
  writeFileSync(
    conf,
    [
      `port ${sentinelPort}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor mymaster 127.0.0.1 ${masterPort} 1`,
      'sentinel down-after-milliseconds mymaster 1000',
      'sentinel failover-timeout mymaster 3000',
      '',
    ].join('\n'),
  );
  redisServer([conf, '--sentinel']);
  for (const port of [masterPort, replicaPort, sentinelPort]) {
    const deadline = Date.now() + 10_000;
    while ((await ping(port)) !== 'PONG') {
      if (Date.now() > deadline) throw new Error(`redis on ${port} did not answer`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
});

afterAll(async () => {
  await proxy?.close();
  await upstream.close();
  await killAll(children);
});

describe('redis.sentinel', () => {
  it("shares limits through the sentinel's master and keeps sharing after a failover, nothing failing meanwhile", async () => {
    proxy = await startProxy(`version: 1
defaults: { retry: { maxRetries: 0 } }
redis:
  sentinel: { name: mymaster, sentinels: ["127.0.0.1:${sentinelPort}"] }
  onError: local
upstreams: { u: { url: "${upstream.url}" } }
routes:
  - { name: sentinel, upstream: u, rateLimit: { rate: 6000/min, burst: 1000, shared: true } }
`);
    const degraded = () => metricValue(proxy!.metrics, 'breakwater_rate_limit_degraded_total', { route: 'sentinel' });
    expect((await request(`${proxy.url}/x`)).status).toBe(200);
    expect(await degraded()).toBe(0);
    expect((await keysOn(masterPort)).length).toBeGreaterThan(0);

    // The sentinel learns of replicas from the master's INFO (every 10 s):
    // until it knows this one, a failover would have no candidate.
    const watcher = new Redis({ port: sentinelPort, host: '127.0.0.1', maxRetriesPerRequest: 1 });
    watcher.on('error', () => {});
    try {
      const known = Date.now();
      for (;;) {
        const replicas = (await watcher.call('SENTINEL', 'replicas', 'mymaster')) as string[][];
        const entry = replicas.map((fields) =>
          Object.fromEntries(fields.flatMap((_, i) => (i % 2 === 0 ? [[fields[i], fields[i + 1]]] : []))),
        );
        if (entry.some((r) => Number(r.port) === replicaPort && r['master-link-status'] === 'ok')) break;
        expect(Date.now() - known).toBeLessThan(25_000);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    } finally {
      watcher.disconnect();
    }
    master.kill('SIGKILL');
    // Until the sentinel promotes the replica, requests are decided locally (onError); afterwards, on the new master.
    const statuses: number[] = [];
    const started = Date.now();
    const sentinel = new Redis({ port: sentinelPort, host: '127.0.0.1', maxRetriesPerRequest: 1 });
    sentinel.on('error', () => {});
    let promoted = false;
    try {
      while (Date.now() - started < 30_000 && !promoted) {
        statuses.push((await request(`${proxy.url}/x`)).status);
        const [, port] = (await sentinel.call('SENTINEL', 'get-master-addr-by-name', 'mymaster')) as [string, string];
        promoted = Number(port) === replicaPort;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    } finally {
      sentinel.disconnect();
    }
    expect(promoted).toBe(true);
    const degradedDuringFailover = await degraded();
    expect(degradedDuringFailover).toBeGreaterThan(0);
    // Shared again on the promoted replica within 10 s: a request that is not degraded, and /status ready.
    let shared = false;
    while (Date.now() - started < 40_000 && !shared) {
      const before = await degraded();
      statuses.push((await request(`${proxy.url}/x`)).status);
      shared = (await degraded()) === before && proxy.app.runtime().redisStatus()?.state === 'ready';
      if (!shared) await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(shared).toBe(true);
    expect(statuses.every((status) => status === 200)).toBe(true);
    // /config never shows a password; the sentinel block is there.
    const config = (await request(`${proxy.adminUrl}/config`)).json<{ redis: { sentinel: { name: string } } }>();
    expect(config.redis.sentinel.name).toBe('mymaster');
  }, 90_000);
});
