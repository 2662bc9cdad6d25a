/**
 * Shared pacing (SPEC §3 `pacing.shared`) under every Redis fault of SPEC §9,
 * with `redis.onError: local` and `allow`: refused at start, killed mid-run
 * (a pacer already in Redis and a new one), hung (SIGSTOP), slowed (DEBUG
 * SLEEP), flushed, restarted empty. For each: nothing fails, no request
 * waits longer than redis.timeout plus slack, each decision made without
 * Redis is flagged RATE_LIMIT_DEGRADED and counted (not for a flush), and
 * the pacer's state is written to Redis again once it answers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, waitUntil, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { startRedis, type RedisServer } from '../fixtures/redis.js';
import { metricValue, request, startProxy, type TestProxy } from '../helpers/proxy.js';

let redis: RedisServer;
let provider: FaultUpstream;

beforeAll(async () => {
  redis = await startRedis();
  // A provider announcing a large quota: pacing never has to wait, so any slowness is Redis's.
  let remaining = 100_000;
  provider = await startFaultUpstream(() => ({
    kind: 'respond',
    headers: { 'x-ratelimit-limit': '100000', 'x-ratelimit-remaining': String(--remaining), 'x-ratelimit-reset': '60' },
    body: 'ok',
  }));
});

afterAll(async () => {
  await provider.close();
  await redis.stop();
});

type Fault =
  | 'refused at start'
  | 'killed, a pacer already in Redis'
  | 'killed, a new pacer'
  | 'hung (SIGSTOP)'
  | 'slowed (DEBUG SLEEP)'
  | 'flushed'
  | 'restarted empty';
const FAULTS: readonly Fault[] = [
  'refused at start',
  'killed, a pacer already in Redis',
  'killed, a new pacer',
  'hung (SIGSTOP)',
  'slowed (DEBUG SLEEP)',
  'flushed',
  'restarted empty',
];
/** redis.timeout is 250 ms; slack for a loaded 2-core machine. */
const MAX_REQUEST_MS = 1_250;

const cases = FAULTS.flatMap((fault) => (['local', 'allow'] as const).map((onError) => [fault, onError] as const));

describe('shared pacing under Redis faults', () => {
  it.each(cases)(
    '%s (onError: %s): nothing fails or waits on Redis; degraded decisions counted; shared again after',
    async (fault, onError) => {
      const route = `p-${FAULTS.indexOf(fault)}-${onError}`;
      if (fault === 'refused at start') await redis.stop();
      const proxy: TestProxy = await startProxy(`version: 1
defaults: { retry: { maxRetries: 0 } }
redis: { url: "${redis.url}", onError: ${onError} }
upstreams:
  provider: { url: "${provider.url}", circuitBreaker: { failureRate: 100 }, pacing: { enabled: true, shared: true, key: "header:X-Api-Key" } }
routes:
  - { name: ${route}, upstream: provider }
`);
      const degraded = () => metricValue(proxy.metrics, 'breakwater_rate_limit_degraded_total', { route });
      const timed = async (key: string) => {
        const started = Date.now();
        const res = await request(`${proxy.url}/x`, { headers: { 'x-api-key': key } });
        return { status: res.status, ms: Date.now() - started };
      };
      const pacersInRedis = async () => (await redis.client().keys('breakwater:pacing:provider:*')).length;
      let sleeping: Promise<unknown> | undefined;
      try {
        if (fault !== 'refused at start') {
          expect((await timed('existing')).status).toBe(200);
          expect(await pacersInRedis()).toBe(1);
          expect(await degraded()).toBe(0);
        }
        switch (fault) {
          case 'killed, a pacer already in Redis':
          case 'killed, a new pacer':
          case 'restarted empty':
            await redis.stop();
            break;
          case 'hung (SIGSTOP)':
            redis.pause();
            break;
          case 'slowed (DEBUG SLEEP)': {
            // Connected first, then asleep before the requests start.
            const admin = redis.client();
            await admin.ping();
            sleeping = admin.call('DEBUG', 'SLEEP', '2');
            await new Promise((resolve) => setTimeout(resolve, 100));
            break;
          }
          case 'flushed':
            await redis.client().flushall();
            break;
          default:
            break;
        }
        if (fault === 'restarted empty') await redis.restart();

        const key = fault === 'killed, a new pacer' ? 'new' : 'existing';
        const during = [];
        for (let i = 0; i < 6; i++) during.push(await timed(key));
        expect(during.map((r) => r.status)).toEqual(Array(6).fill(200));
        expect(Math.max(...during.map((r) => r.ms))).toBeLessThan(MAX_REQUEST_MS);
        const flagged = proxy
          .accessLogs()
          .filter((line) => (line.flags as string[]).includes('RATE_LIMIT_DEGRADED')).length;
        if (fault === 'flushed') {
          expect(await degraded()).toBe(0);
          expect(flagged).toBe(0);
        } else if (fault === 'restarted empty') {
          // Back before the requests: at most the first ones are decided without it while the client reconnects.
          expect(await degraded()).toBe(flagged);
        } else {
          expect(await degraded()).toBe(6);
          expect(flagged).toBe(6);
          expect(proxy.app.runtime().redisStatus()?.state).toBe('degraded');
        }

        // Redis answers again: shared decisions within 5 s, the pacer's state back in Redis.
        if (fault === 'hung (SIGSTOP)') redis.resume();
        if (fault === 'slowed (DEBUG SLEEP)') await sleeping;
        if (fault === 'refused at start' || fault.startsWith('killed')) await redis.restart();
        const back = Date.now();
        await waitUntil(() => proxy.app.runtime().redisStatus()?.state === 'ready', 5_000, 'redis to be ready');
        expect(Date.now() - back).toBeLessThan(5_000);
        const before = await degraded();
        expect((await timed(key)).status).toBe(200);
        expect(await degraded()).toBe(before);
        expect(await pacersInRedis()).toBeGreaterThanOrEqual(1);
      } finally {
        redis.resume();
        await sleeping?.catch(() => {});
        await proxy.close();
        await redis.restart();
      }
    },
  );
});

describe('shared pacing: one wait for Redis, however many requests share a pacer', () => {
  it('answers 12 concurrent requests on one pacer of a hung Redis within about one redis.timeout', async () => {
    const route = 'concurrent';
    const proxy: TestProxy = await startProxy(`version: 1
defaults: { retry: { maxRetries: 0 } }
redis: { url: "${redis.url}", onError: local, timeout: 250ms }
upstreams:
  provider: { url: "${provider.url}", circuitBreaker: { failureRate: 100 }, pacing: { enabled: true, shared: true } }
routes:
  - { name: ${route}, upstream: provider }
`);
    try {
      expect((await request(`${proxy.url}/first`)).status).toBe(200);
      redis.pause();
      const started = Date.now();
      const timings = await Promise.all(
        Array.from({ length: 12 }, async (_, i) => {
          const res = await request(`${proxy.url}/c${i}`);
          return { status: res.status, ms: Date.now() - started };
        }),
      );
      expect(timings.map((t) => t.status)).toEqual(Array(12).fill(200));
      // Queued one behind another on the pacer, each waiting its own timeout, the last took 12 x 250 ms.
      expect(Math.max(...timings.map((t) => t.ms))).toBeLessThan(MAX_REQUEST_MS);
      expect(await metricValue(proxy.metrics, 'breakwater_rate_limit_degraded_total', { route })).toBe(12);
    } finally {
      redis.resume();
      await proxy.close();
      await redis.restart();
    }
  });
});
