/**
 * Issue 32, "unbounded work", for shared rate limits (SPEC §3
 * `rateLimit.shared`) on a real redis-server: a key value the client
 * chooses makes a Redis key of bounded length (long values hashed), and
 * every key Breakwater writes expires.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { startRedis, type RedisServer } from '../fixtures/redis.js';
import { request, startProxy, type TestProxy } from '../helpers/proxy.js';

let redis: RedisServer;
let upstream: FaultUpstream;
let proxy: TestProxy;

beforeAll(async () => {
  redis = await startRedis();
  upstream = await startFaultUpstream(() => ({ kind: 'respond', body: 'ok' }));
  proxy = await startProxy(`version: 1
defaults: { retry: { maxRetries: 0 } }
redis: { url: "${redis.url}", onError: local }
upstreams: { u: { url: "${upstream.url}" } }
routes:
  - { name: shared-keys, upstream: u, rateLimit: { rate: 1/min, burst: 2, maxConcurrent: 5, queue: { size: 0 }, key: "header:x-key", shared: true } }
`);
});

afterAll(async () => {
  await proxy.close();
  await upstream.close();
  await redis.stop();
});

describe('shared rate-limit keys chosen by the client', () => {
  it('makes Redis keys of bounded length for a 10 KB key value, each with a TTL, and the limit holds', async () => {
    const long = 'v'.repeat(10_000);
    const statuses: number[] = [];
    for (const key of [long, long, long, 'short'])
      statuses.push((await request(`${proxy.url}/x`, { headers: { 'x-key': key } })).status);
    expect(statuses).toEqual([200, 200, 429, 200]);
    const admin = redis.client();
    const keys = await admin.keys('breakwater:rl:*');
    expect(keys.length).toBeGreaterThanOrEqual(2);
    for (const key of keys) {
      expect(key.length, key.slice(0, 80)).toBeLessThanOrEqual(160);
      expect(await admin.pttl(key), key.slice(0, 80)).toBeGreaterThan(0);
    }
  });
});
