/**
 * Shared rate limits (SPEC §3 `rateLimit.shared`, `redis`) on a real
 * redis-server: one limit across replicas, what happens while Redis is
 * down (per `redis.onError`, counted, flagged, never a failed request), and
 * recovery after Redis comes back empty or loses the limiter's keys.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, waitUntil, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { startRedis, type RedisServer } from '../fixtures/redis.js';
import { startReplica, writeTemp } from '../helpers/cli.js';
import { metricValue, request, startProxy } from '../helpers/proxy.js';

let redis: RedisServer;
let upstream: FaultUpstream;

beforeAll(async () => {
  redis = await startRedis();
  upstream = await startFaultUpstream(() => ({ kind: 'respond', body: 'ok' }));
});

afterAll(async () => {
  await upstream.close();
  await redis.stop();
});

function config(route: string, onError: 'local' | 'allow', rate = '5/min', burst = 5): string {
  return `version: 1
defaults: { retry: { maxRetries: 0 } }
redis: { url: "${redis.url}", onError: ${onError} }
upstreams: { u: { url: "${upstream.url}" } }
routes:
  - name: ${route}
    upstream: u
    rateLimit: { rate: ${rate}, burst: ${burst}, queue: { size: 0 }, shared: true }
`;
}

describe('shared rate limits', () => {
  it('holds one limit across two Breakwater processes', async () => {
    const yaml = config('shared-two', 'local').replace(
      'version: 1',
      'version: 1\nlisten: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\nlogging: { accessLog: false }',
    );
    const [a, b] = await Promise.all([
      startReplica(writeTemp('a.yaml', yaml)),
      startReplica(writeTemp('b.yaml', yaml)),
    ]);
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 20; i++) statuses.push((await request(`${(i % 2 ? a : b).url}/x`)).status);
      const ok = statuses.filter((s) => s === 200).length;
      expect(ok).toBeGreaterThanOrEqual(5);
      expect(ok).toBeLessThanOrEqual(6); // 5, +1 if a token refilled (one per 12 s)
      expect(statuses.filter((s) => s === 429).length).toBe(20 - ok);
    } finally {
      for (const replica of [a, b]) replica.child.kill('SIGTERM');
      await Promise.all([a, b].map((replica) => new Promise((resolve) => replica.child.once('exit', resolve))));
    }
  });

  it('holds maxConcurrent across two replicas: queued requests wait for a slot of either, none runs beyond the cap', async () => {
    let inFlight = 0;
    let peak = 0;
    let served = 0;
    const slow = await startFaultUpstream(() => ({
      kind: 'custom',
      handle: (_req, res) => {
        inFlight += 1;
        peak = Math.max(peak, inFlight);
        setTimeout(() => {
          inFlight -= 1;
          served += 1;
          res.end('ok');
        }, 150);
      },
    }));
    const yaml = `version: 1
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
logging: { accessLog: false }
defaults: { retry: { maxRetries: 0 } }
redis: { url: "${redis.url}", onError: local }
upstreams: { u: { url: "${slow.url}" } }
routes:
  - { name: slots, upstream: u, rateLimit: { maxConcurrent: 3, queue: { size: 20, timeout: 20s }, shared: true } }
`;
    const [a, b] = await Promise.all([
      startReplica(writeTemp('slots-a.yaml', yaml)),
      startReplica(writeTemp('slots-b.yaml', yaml)),
    ]);
    try {
      const statuses = await Promise.all(
        Array.from({ length: 16 }, (_, i) => request(`${(i % 2 ? a : b).url}/x`).then((r) => r.status)),
      );
      expect(statuses).toEqual(Array(16).fill(200));
      expect(served).toBe(16);
      expect(peak).toBe(3);
      // Every slot was given back (a release goes out with the replica's next tick): the lease set empties.
      const admin = redis.client();
      await expect.poll(() => admin.zcard('breakwater:rl:{slots:}:slots'), { timeout: 2_000 }).toBe(0);
    } finally {
      for (const replica of [a, b]) replica.child.kill('SIGTERM');
      await Promise.all([a, b].map((replica) => new Promise((resolve) => replica.child.once('exit', resolve))));
      await slow.close();
    }
  });

  it('queues for a shared token in arrival order and answers every waiter once its token is due', async () => {
    const proxy = await startProxy(`version: 1
defaults: { retry: { maxRetries: 0 } }
redis: { url: "${redis.url}", onError: local }
upstreams: { u: { url: "${upstream.url}" } }
routes:
  - { name: queued, upstream: u, rateLimit: { rate: 10/s, burst: 1, queue: { size: 10, timeout: 10s }, shared: true } }
`);
    try {
      const order: number[] = [];
      const started = Date.now();
      const statuses = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          request(`${proxy.url}/x?i=${i}`).then((r) => {
            order.push(i);
            return r.status;
          }),
        ),
      );
      expect(statuses).toEqual(Array(6).fill(200));
      // One token at once, then one each 100 ms: at least 0.5 s for six.
      expect(Date.now() - started).toBeGreaterThanOrEqual(450);
      expect(await metricValue(proxy.metrics, 'breakwater_rate_limit_degraded_total', { route: 'queued' })).toBe(0);
      // A full queue refuses at once with the RateLimit headers of the shared bucket.
      const burst = await Promise.all(Array.from({ length: 14 }, () => request(`${proxy.url}/x`)));
      const refused = burst.filter((r) => r.status === 429);
      expect(refused.length).toBeGreaterThanOrEqual(3);
      expect(refused[0]!.headers['ratelimit-policy']).toBe('"queued";q=1;w=1');
      expect(refused[0]!.headers['retry-after']).toBe('1');
    } finally {
      await proxy.close();
    }
  });

  it.each(['local', 'allow'] as const)(
    'two replicas share one limit again after Redis restarts empty, within 5 s of it answering (onError: %s)',
    async (onError) => {
      const yaml = config(`restarted-${onError}`, onError).replace(
        'version: 1',
        'version: 1\nlisten: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\nlogging: { accessLog: false }',
      );
      const [a, b] = await Promise.all([
        startReplica(writeTemp('r-a.yaml', yaml)),
        startReplica(writeTemp('r-b.yaml', yaml)),
      ]);
      try {
        // Spend the shared burst of 5 before the restart.
        for (let i = 0; i < 6; i++) await request(`${(i % 2 ? a : b).url}/x`);
        await redis.stop();
        for (let i = 0; i < 4; i++) {
          const started = Date.now();
          expect((await request(`${(i % 2 ? a : b).url}/x`)).status).toBe(200); // degraded: each replica's own limit, or none
          expect(Date.now() - started).toBeLessThan(1_250); // a refused Redis costs nothing to wait for
        }
        await redis.restart();
        const back = Date.now();
        for (const replica of [a, b]) {
          while (
            (await request(`${replica.adminUrl}/status`)).json<{ redis: { state: string } }>().redis.state !== 'ready'
          ) {
            expect(Date.now() - back).toBeLessThan(5_000);
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
        }
        const statuses: number[] = [];
        for (let i = 0; i < 20; i++) statuses.push((await request(`${(i % 2 ? a : b).url}/x`)).status);
        const ok = statuses.filter((s) => s === 200).length;
        expect(ok).toBeGreaterThanOrEqual(5);
        expect(ok).toBeLessThanOrEqual(6);
      } finally {
        for (const replica of [a, b]) replica.child.kill('SIGTERM');
        await Promise.all([a, b].map((replica) => new Promise((resolve) => replica.child.once('exit', resolve))));
      }
    },
  );

  it('keeps serving while Redis is down (onError: local), counts it, and shares again when Redis is back', async () => {
    const proxy = await startProxy(config('shared-down', 'local', '600/min', 100));
    try {
      const degraded = () =>
        metricValue(proxy.metrics, 'breakwater_rate_limit_degraded_total', { route: 'shared-down' });
      expect((await request(`${proxy.url}/x`)).status).toBe(200);
      expect(await degraded()).toBe(0);

      const redisStatus = async () =>
        (await request(`${proxy.adminUrl}/status`)).json<{ redis: { state: string; since: string } | null }>().redis;
      expect(await redisStatus()).toMatchObject({ state: 'ready', since: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) });
      await redis.stop();
      const during = [];
      for (let i = 0; i < 10; i++) during.push(await request(`${proxy.url}/x`));
      expect(during.every((r) => r.status === 200)).toBe(true);
      expect(await degraded()).toBe(10);
      expect((await redisStatus())!.state).toBe('degraded');
      expect((await request(`${proxy.adminUrl}/readyz`)).status).toBe(200);
      const flagged = proxy.accessLogs().filter((line) => (line.flags as string[]).includes('RATE_LIMIT_DEGRADED'));
      expect(flagged).toHaveLength(10);

      await redis.restart();
      const route = proxy.app.runtime().routes[0]!;
      expect(route.name).toBe('shared-down');
      // ioredis reconnects on its own; once it has, decisions are shared again.
      await waitUntil(
        () =>
          proxy
            .logs()
            .some(
              (line) =>
                line.msg === 'redis ready: rate limits and pacing are shared' && line.time! > flagged.at(-1)!.time!,
            ),
        15_000,
        'redis to reconnect',
      );
      const after = await degraded();
      const res = await request(`${proxy.url}/x`);
      expect(res.status).toBe(200);
      expect(await degraded()).toBe(after);
      const keys = await redis.client().keys('breakwater:rl:*');
      expect(keys.length).toBeGreaterThan(0);
    } finally {
      await proxy.close();
    }
  });

  it.each(['local', 'allow'] as const)(
    'keeps the process up when Redis is gone and a tenant not seen before arrives (issue 17: it used to exit; onError: %s)',
    async (onError) => {
      const file = writeTemp(
        'tenant.yaml',
        `version: 1
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
defaults: { retry: { maxRetries: 0 } }
redis: { url: "${redis.url}", onError: ${onError} }
upstreams: { u: { url: "${upstream.url}" } }
routes:
  - { name: tenants, upstream: u, rateLimit: { rate: 100/s, key: "header:X-Tenant", shared: true } }
`,
      );
      const replica = await startReplica(file);
      try {
        expect((await request(`${replica.url}/x`, { headers: { 'x-tenant': 'seen' } })).status).toBe(200);
        await redis.stop();
        for (const tenant of ['new-1', 'new-2', 'seen']) {
          const res = await request(`${replica.url}/x`, { headers: { 'x-tenant': tenant } });
          expect(res.status).toBe(200);
        }
        await new Promise((resolve) => setTimeout(resolve, 500));
        expect(replica.child.exitCode).toBeNull();
        expect((await request(`${replica.url}/x`, { headers: { 'x-tenant': 'new-3' } })).status).toBe(200);
        // Handled where it happens: not even the last net saw it.
        expect(replica.output()).not.toContain('internal error');
      } finally {
        replica.child.kill('SIGTERM');
        await new Promise((resolve) => replica.child.once('exit', resolve));
        await redis.restart();
      }
    },
  );

  it.each(['local', 'allow'] as const)(
    'a hung Redis (SIGSTOP) costs no request more than redis.timeout and never a 429 (onError: %s); sharing resumes when it answers',
    async (onError) => {
      const proxy = await startProxy(config(`hung-${onError}`, onError, '600/min', 100));
      const redisState = async () =>
        (await request(`${proxy.adminUrl}/status`)).json<{ redis: { state: string } }>().redis.state;
      const degraded = () =>
        metricValue(proxy.metrics, 'breakwater_rate_limit_degraded_total', { route: `hung-${onError}` });
      try {
        expect((await request(`${proxy.url}/x`)).status).toBe(200);
        expect(await redisState()).toBe('ready');
        redis.pause();
        const took: number[] = [];
        const statuses: number[] = [];
        for (let i = 0; i < 10; i++) {
          const started = Date.now();
          statuses.push((await request(`${proxy.url}/x`)).status);
          took.push(Date.now() - started);
        }
        expect(statuses).toEqual(Array(10).fill(200));
        // redis.timeout is 250ms; the first request pays it, the others are decided at once (slack for a loaded machine).
        expect(Math.max(...took)).toBeLessThan(1_250);
        expect(took.slice(1).filter((ms) => ms >= 250).length).toBeLessThanOrEqual(1);
        expect(await degraded()).toBe(10);
        expect(await redisState()).toBe('degraded');
        expect(
          proxy.accessLogs().filter((line) => (line.flags as string[]).includes('RATE_LIMIT_DEGRADED')),
        ).toHaveLength(10);
        redis.resume();
        const back = Date.now();
        for (;;) {
          if ((await redisState()) === 'ready') break;
          expect(Date.now() - back).toBeLessThan(5_000);
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        const before = await degraded();
        expect((await request(`${proxy.url}/x`)).status).toBe(200);
        expect(await degraded()).toBe(before);
      } finally {
        redis.resume();
        await proxy.close();
      }
    },
  );

  it.each(['local', 'allow'] as const)(
    'a slow Redis (DEBUG SLEEP) is a failing one, and a FLUSHALL only restarts the limits full (onError: %s)',
    async (onError) => {
      const route = `slow-${onError}`;
      const proxy = await startProxy(config(route, onError, '600/min', 100));
      const degraded = () => metricValue(proxy.metrics, 'breakwater_rate_limit_degraded_total', { route });
      const admin = redis.client();
      try {
        expect((await request(`${proxy.url}/x`)).status).toBe(200);
        // Redis busy for 1.5 s: each command waits past redis.timeout.
        await admin.ping();
        const sleeping = admin.call('DEBUG', 'SLEEP', '1.5');
        await new Promise((resolve) => setTimeout(resolve, 50));
        const started = Date.now();
        const during = await Promise.all(Array.from({ length: 5 }, () => request(`${proxy.url}/x`)));
        expect(during.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
        // About one redis.timeout for all five (measured ~260 ms); one after the other would be 1.25 s.
        expect(Date.now() - started).toBeLessThan(1_000);
        expect(await degraded()).toBe(5);
        await sleeping;
        // Back to shared decisions within 5 s.
        await waitUntil(() => proxy.app.runtime().redisStatus()?.state === 'ready', 5_000, 'redis to be probed ready');
        // A flush loses the shared counters: nothing fails, nothing is degraded.
        const before = await degraded();
        await admin.flushall();
        const after = [];
        for (let i = 0; i < 5; i++) after.push((await request(`${proxy.url}/x`)).status);
        expect(after).toEqual([200, 200, 200, 200, 200]);
        expect(await degraded()).toBe(before);
      } finally {
        await proxy.close();
      }
    },
  );

  it.each(['local', 'allow'] as const)(
    'starts with Redis refused (onError: %s): serves degraded, then shares once Redis is up',
    async (onError) => {
      const route = `refused-${onError}`;
      await redis.stop();
      const proxy = await startProxy(config(route, onError, '600/min', 100));
      const degraded = () => metricValue(proxy.metrics, 'breakwater_rate_limit_degraded_total', { route });
      try {
        const started = Date.now();
        const statuses = [];
        for (let i = 0; i < 5; i++) statuses.push((await request(`${proxy.url}/x`)).status);
        expect(statuses).toEqual([200, 200, 200, 200, 200]);
        expect(Date.now() - started).toBeLessThan(1_000); // refused connects fail fast: nothing waits
        expect(await degraded()).toBe(5);
        expect(proxy.app.runtime().redisStatus()?.state).toBe('degraded');
        expect((await request(`${proxy.adminUrl}/readyz`)).status).toBe(200);
        await redis.restart();
        await waitUntil(() => proxy.app.runtime().redisStatus()?.state === 'ready', 5_000, 'redis to be ready');
        const before = await degraded();
        expect((await request(`${proxy.url}/x`)).status).toBe(200);
        expect(await degraded()).toBe(before);
      } finally {
        await proxy.close();
        await redis.restart();
      }
    },
  );

  it('lets requests through while Redis is down with onError: allow', async () => {
    const proxy = await startProxy(config('shared-allow', 'allow', '1/min', 1));
    try {
      expect((await request(`${proxy.url}/x`)).status).toBe(200);
      expect((await request(`${proxy.url}/x`)).status).toBe(429); // shared limit: 1
      await redis.stop();
      const during = [];
      for (let i = 0; i < 5; i++) during.push(await request(`${proxy.url}/x`));
      expect(during.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
      expect(await metricValue(proxy.metrics, 'breakwater_rate_limit_degraded_total', { route: 'shared-allow' })).toBe(
        5,
      );
    } finally {
      await proxy.close();
      await redis.restart();
    }
  });

  it("recovers when the limiter's keys vanish from Redis: the limit restarts full, nothing degraded", async () => {
    const proxy = await startProxy(config('shared-flush', 'local', '600/min', 100));
    try {
      const degraded = () =>
        metricValue(proxy.metrics, 'breakwater_rate_limit_degraded_total', { route: 'shared-flush' });
      expect((await request(`${proxy.url}/x`)).status).toBe(200);
      const admin = redis.client();
      const keys = await admin.keys('breakwater:rl:{shared-flush:}:*');
      expect(keys).toEqual(['breakwater:rl:{shared-flush:}:tokens']);
      await admin.del(...keys);
      for (let i = 0; i < 3; i++) expect((await request(`${proxy.url}/x`)).status).toBe(200);
      expect(await degraded()).toBe(0);
      // The bucket is back in Redis: 100 tokens, 4 taken (a few refilled meanwhile).
      const tokens = Number(await admin.hget('breakwater:rl:{shared-flush:}:tokens', 't'));
      expect(tokens).toBeGreaterThanOrEqual(96);
      expect(tokens).toBeLessThan(100);
    } finally {
      await proxy.close();
    }
  });
});
