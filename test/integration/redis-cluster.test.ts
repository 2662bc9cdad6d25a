/**
 * Shared limits on a Redis Cluster (SPEC §9 `redis.cluster`): a real
 * three-master cluster started here; two Breakwater processes share keyed
 * limits whose keys spread over the masters, each limit's keys on one slot.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { startRedisCluster, type RedisCluster } from '../fixtures/redis-cluster.js';
import { startReplica, writeTemp, type Replica } from '../helpers/cli.js';
import { request } from '../helpers/proxy.js';

let cluster: RedisCluster;
let upstream: FaultUpstream;
const replicas: Replica[] = [];

beforeAll(async () => {
  cluster = await startRedisCluster();
  upstream = await startFaultUpstream(() => ({ kind: 'respond', body: 'ok' }));
  const yaml = `version: 1
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
logging: { accessLog: false }
defaults: { retry: { maxRetries: 0 } }
redis: { cluster: { nodes: ["${cluster.nodes[0]}"] }, onError: local }
upstreams: { u: { url: "${upstream.url}" } }
routes:
  - { name: tenants, upstream: u, rateLimit: { rate: 5/min, burst: 5, maxConcurrent: 4, key: "header:X-Tenant", queue: { size: 0 }, shared: true } }
`;
  // One seed node is enough: the rest of the cluster is discovered.
  replicas.push(
    ...(await Promise.all([startReplica(writeTemp('c-a.yaml', yaml)), startReplica(writeTemp('c-b.yaml', yaml))])),
  );
}, 60_000);

afterAll(async () => {
  await Promise.all(replicas.map((replica) => replica.stop()));
  await upstream?.close();
  await cluster?.stop();
});

describe('redis.cluster', () => {
  it("holds each tenant's limit across two replicas, the limits spread over the masters, none degraded", async () => {
    const tenants = ['acme', 'globex', 'initech', 'umbrella', 'hooli', 'stark', 'wayne', 'wonka']; // their slots fall on all three masters
    for (const replica of replicas) {
      // Both share through the cluster (the Redis lines of its log say why not, if it never does).
      const deadline = Date.now() + 15_000;
      while (
        (await request(`${replica.adminUrl}/status`)).json<{ redis: { state: string } }>().redis.state !== 'ready'
      ) {
        if (Date.now() > deadline)
          throw new Error(
            `a replica never shared through the cluster:\n${replica
              .output()
              .split('\n')
              .filter((line) => line.includes('redis'))
              .slice(-8)
              .join('\n')}`,
          );
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    for (const tenant of tenants) {
      const statuses: number[] = [];
      for (let i = 0; i < 10; i++)
        statuses.push((await request(`${replicas[i % 2]!.url}/x`, { headers: { 'x-tenant': tenant } })).status);
      const ok = statuses.filter((s) => s === 200).length;
      expect(ok, tenant).toBeGreaterThanOrEqual(5);
      expect(ok, tenant).toBeLessThanOrEqual(6); // +1 if a token refilled (one per 12 s)
      expect(statuses.filter((s) => s === 429).length, tenant).toBe(10 - ok);
    }
    for (const replica of replicas) {
      const text = (await request(`${replica.adminUrl}/metrics`)).body.toString();
      expect(text).toMatch(/^breakwater_rate_limit_degraded_total\{route="tenants"\} 0$/m);
    }
    // Every tenant's bucket is in the cluster, on one slot with its lease set; each master holds some.
    const perNode = await cluster.eachNode(async (client) =>
      (await client.keys('breakwater:rl:*')).filter((key) => key.endsWith(':tokens')),
    );
    expect(perNode.flat()).toHaveLength(tenants.length);
    expect(perNode.filter((keys) => keys.length > 0).length).toBe(3);
    const slots = await cluster.eachNode(async (client) => {
      const keys = await client.keys('breakwater:rl:*');
      return Promise.all(
        keys.map(
          async (key) =>
            [key.replace(/:(tokens|slots)$/, ''), Number(await client.call('CLUSTER', 'KEYSLOT', key))] as const,
        ),
      );
    });
    const slotOf = new Map<string, Set<number>>();
    for (const [limiter, slot] of slots.flat()) slotOf.set(limiter, (slotOf.get(limiter) ?? new Set()).add(slot));
    for (const set of slotOf.values()) expect(set.size).toBe(1);
  });
});
