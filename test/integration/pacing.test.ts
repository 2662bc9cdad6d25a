/**
 * Proactive pacing (SPEC §3 `upstreams.*.pacing`) against a fixed-window
 * fake provider: 20 requests per 2 s window, a 429 beyond, its quota
 * announced in one dialect at a time. Paced, 100 requests from 8 clients
 * meet no 429 and take about 10 s; unpaced, they meet 429s. Shopify and
 * Salesforce name no reset: their fake is a bucket of 20 leaking 10 per
 * second (the same average), which the pacer measures. Two replicas with
 * `shared: true` pace from one state in a real Redis.
 */
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { startRedis } from '../fixtures/redis.js';
import { startWindowProvider } from '../fixtures/window-provider.js';
import { expectProblem } from '../helpers/problem.js';
import { metricValue, request, startProxy, type TestProxy } from '../helpers/proxy.js';

const WINDOW_MS = 2000;
const LIMIT = 20;

type Dialect = 'ietf' | 'x-ratelimit-epoch' | 'x-ratelimit-delta' | 'openai' | 'anthropic' | 'shopify' | 'salesforce';
const DIALECTS = [
  'ietf',
  'x-ratelimit-epoch',
  'x-ratelimit-delta',
  'openai',
  'anthropic',
  'shopify',
  'salesforce',
] as const;

interface Provider {
  upstream: FaultUpstream;
  tooMany: () => number;
}

/** The fake provider: fixed windows of `limit`, a 429 beyond, the quota in one dialect (test/fixtures/window-provider.ts). */
async function startProvider(dialect: Dialect | 'none', limit = LIMIT, latencyMs = 0): Promise<Provider> {
  if (dialect === 'shopify' || dialect === 'salesforce') return startBucketProvider(dialect, limit);
  return startWindowProvider({ limit, windowMs: WINDOW_MS, dialect, latencyMs });
}

/** A leaking bucket of `capacity` that drains `capacity / 2 s`; each request adds one, a 429 when it would overflow. Announces `used/max`, no reset. */
async function startBucketProvider(dialect: 'shopify' | 'salesforce', capacity: number): Promise<Provider> {
  const leakPerMs = capacity / WINDOW_MS;
  let level = 0;
  let last = Date.now();
  let tooMany = 0;
  const upstream = await startFaultUpstream(() => {
    const now = Date.now();
    level = Math.max(0, level - (now - last) * leakPerMs);
    last = now;
    const over = level + 1 > capacity;
    if (over) tooMany += 1;
    else level += 1;
    const used = Math.ceil(level);
    const headers: http.OutgoingHttpHeaders =
      dialect === 'shopify'
        ? { 'x-shopify-shop-api-call-limit': `${used}/${capacity}` }
        : { 'sforce-limit-info': `api-usage=${used}/${capacity}` };
    return over
      ? { kind: 'respond', status: 429, headers, body: 'too many' }
      : { kind: 'respond', status: 200, headers, body: 'ok' };
  });
  return { upstream, tooMany: () => tooMany };
}

let provider: Provider | undefined;
let proxy: TestProxy | undefined;

afterEach(async () => {
  await proxy?.close();
  await provider?.upstream.close();
  proxy = undefined;
  provider = undefined;
});

async function start(dialect: Dialect | 'none', pacing: string, limit = LIMIT): Promise<void> {
  provider = await startProvider(dialect, limit);
  proxy = await startProxy(`version: 1
defaults: { retry: { maxRetries: 0 }, timeouts: { perTry: 30s, total: 60s } }
upstreams:
  provider:
    url: "${provider.upstream.url}"
    circuitBreaker: { failureRate: 100 }
    pacing: ${pacing}
routes:
  - { name: api, upstream: provider }
`);
}

/** `total` requests from `clients` concurrent clients; returns statuses and the elapsed time. */
async function drive(total: number, clients: number): Promise<{ statuses: number[]; elapsedMs: number }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
  const statuses: number[] = [];
  let next = 0;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < total) {
        next++;
        statuses.push(
          await new Promise<number>((resolve) => {
            http
              .get(`${proxy!.url}/x`, { agent }, (res) => {
                res.resume();
                res.on('end', () => resolve(res.statusCode ?? 0));
              })
              .on('error', () => resolve(0));
          }),
        );
      }
    }),
  );
  agent.destroy();
  return { statuses, elapsedMs: Date.now() - started };
}

describe('pacing from announced quotas', () => {
  for (const dialect of DIALECTS) {
    it(`keeps 100 requests from 8 clients under the quota (${dialect})`, async () => {
      await start(dialect, `{ enabled: true, engageBelow: 50%, reserve: 5% }`);
      const { statuses, elapsedMs } = await drive(100, 8);
      expect(provider!.tooMany()).toBe(0);
      expect(statuses.filter((s) => s === 200)).toHaveLength(100);
      // 100 requests at 20 per 2 s window: about 10 s (measured 10.2-11.4 s);
      // the bound leaves room for a loaded machine.
      expect(elapsedMs).toBeGreaterThan(8000);
      expect(elapsedMs).toBeLessThan(15_000);
      const paced = proxy!.accessLogs().filter((line) => (line.flags as string[]).includes('PACED')).length;
      expect(paced).toBeGreaterThan(0);
    }, 60_000);
  }

  for (const dialect of DIALECTS) {
    it(`meets 429s without pacing (the same load, pacing off, ${dialect})`, async () => {
      await start(dialect, '{ enabled: false }');
      await drive(100, 8);
      expect(provider!.tooMany()).toBeGreaterThan(0);
    }, 30_000);
  }

  it('adds no wait while the remaining share is above engageBelow', async () => {
    await start('ietf', '{ enabled: true, engageBelow: 10% }', 1000);
    const { statuses } = await drive(50, 8);
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(proxy!.accessLogs().filter((line) => (line.flags as string[]).includes('PACED'))).toHaveLength(0);
  });
});

describe('pauses, AIMD and maxWait', () => {
  it('pauses every request to the upstream after a 429 with Retry-After', async () => {
    let paused = false;
    let reachedDuringPause = 0;
    const upstream = await startFaultUpstream((n) => {
      if (paused) reachedDuringPause++;
      if (n === 1) {
        paused = true;
        setTimeout(() => (paused = false), 1000).unref();
        return { kind: 'respond', status: 429, headers: { 'retry-after': '1' }, body: 'slow down' };
      }
      return { kind: 'respond', body: 'ok' };
    });
    provider = { upstream, tooMany: () => 0 };
    proxy = await startProxy(`version: 1
defaults: { retry: { maxRetries: 0 } }
upstreams:
  provider: { url: "${upstream.url}", circuitBreaker: { failureRate: 100 }, pacing: { enabled: true } }
routes:
  - { name: api, upstream: provider }
`);
    expect((await request(`${proxy.url}/first`)).status).toBe(429);
    const started = Date.now();
    const others = await Promise.all(Array.from({ length: 6 }, () => request(`${proxy!.url}/next`)));
    expect(others.every((r) => r.status === 200)).toBe(true);
    expect(reachedDuringPause).toBe(0);
    expect(Date.now() - started).toBeGreaterThanOrEqual(800);
  });

  it("caps the pause at the routes' retry.retryAfter.max", async () => {
    const upstream = await startFaultUpstream((n) =>
      n === 1
        ? { kind: 'respond', status: 429, headers: { 'retry-after': '20' }, body: 'slow down' }
        : { kind: 'respond', body: 'ok' },
    );
    provider = { upstream, tooMany: () => 0 };
    proxy = await startProxy(`version: 1
defaults: { retry: { maxRetries: 0, retryAfter: { max: 1s } } }
upstreams:
  provider: { url: "${upstream.url}", circuitBreaker: { failureRate: 100 }, pacing: { enabled: true, maxWait: 30s } }
routes:
  - { name: api, upstream: provider }
`);
    expect((await request(`${proxy.url}/first`)).status).toBe(429);
    const started = Date.now();
    expect((await request(`${proxy.url}/next`)).status).toBe(200);
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(800); // paused...
    expect(waited).toBeLessThan(10_000); // ...for 1 s, not the 20 s asked
  });

  it('converges under an upstream that 429s above 10 req/s without headers (AIMD)', async () => {
    const times: number[] = [];
    let tooMany = 0;
    const upstream = await startFaultUpstream(() => {
      const now = Date.now();
      while (times.length > 0 && now - times[0]! > 1000) times.shift();
      if (times.length >= 10) {
        tooMany++;
        return { kind: 'respond', status: 429, body: 'too many' };
      }
      times.push(now);
      return { kind: 'respond', body: 'ok' };
    });
    provider = { upstream, tooMany: () => tooMany };
    proxy = await startProxy(`version: 1
defaults: { retry: { maxRetries: 0 } }
upstreams:
  provider:
    url: "${upstream.url}"
    circuitBreaker: { failureRate: 100 }
    pacing: { enabled: true, minRate: 1/s, aimd: { decrease: 0.5, increaseBy: 1/s, increaseEvery: 10s } }
routes:
  - { name: api, upstream: provider }
`);
    const first = await drive(60, 8);
    const early = tooMany;
    expect(early).toBeGreaterThan(0); // it has to learn
    const second = await drive(20, 8);
    expect(second.statuses.every((s) => s === 200)).toBe(true);
    expect(tooMany).toBe(early);
    expect(first.statuses.length).toBe(60);
  }, 60_000);

  it('refuses at once with RATE_LIMITED when the wait would exceed maxWait', async () => {
    const upstream = await startFaultUpstream(() => ({
      kind: 'respond',
      status: 200,
      headers: { 'x-ratelimit-limit': '100', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '30' },
      body: 'ok',
    }));
    provider = { upstream, tooMany: () => 0 };
    proxy = await startProxy(`version: 1
defaults: { retry: { maxRetries: 0 } }
upstreams:
  provider: { url: "${upstream.url}", pacing: { enabled: true, maxWait: 5s } }
routes:
  - { name: api, upstream: provider }
`);
    expect((await request(`${proxy.url}/learn`)).status).toBe(200); // learns: 0 left, reset in 30 s
    const started = Date.now();
    const res = await request(`${proxy.url}/wait`);
    expect(Date.now() - started).toBeLessThan(2000);
    const body = expectProblem(res, 'RATE_LIMITED', {
      route: 'api',
      upstream: 'provider',
      attempts: 0,
      detail: /more than pacing.maxWait/,
    });
    expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(29);
    expect(body.retryAfterSeconds).toBe(Number(res.headers['retry-after']));
    expect(upstream.requests.map((r) => r.url)).toEqual(['/learn']);
  });
});

describe('scopes and shared pacing', () => {
  it('paces each scope by its own quota (scope: header), learned from the path', async () => {
    // GitHub-like: /search/* counts against "search" (5 per 2 s), the rest against "core" (1000 per 2 s).
    const windows = new Map<string, { start: number; used: number }>();
    let tooMany = 0;
    const upstream = await startFaultUpstream((_n, req) => {
      const scope = req.url!.startsWith('/search/') ? 'search' : 'core';
      const limit = scope === 'search' ? 5 : 1000;
      const now = Date.now();
      let window = windows.get(scope);
      if (!window || now - window.start >= WINDOW_MS) windows.set(scope, (window = { start: now, used: 0 }));
      window.used += 1;
      const over = window.used > limit;
      if (over) tooMany++;
      const headers = {
        'x-ratelimit-resource': scope,
        'x-ratelimit-limit': String(limit),
        'x-ratelimit-remaining': String(Math.max(0, limit - window.used)),
        'x-ratelimit-reset': String(Math.ceil((window.start + WINDOW_MS - now) / 1000)),
      };
      return over
        ? { kind: 'respond', status: 429, headers, body: 'too many' }
        : { kind: 'respond', headers, body: 'ok' };
    });
    provider = { upstream, tooMany: () => tooMany };
    proxy = await startProxy(`version: 1
defaults: { retry: { maxRetries: 0 }, timeouts: { perTry: 30s, total: 60s } }
upstreams:
  github:
    url: "${upstream.url}"
    circuitBreaker: { failureRate: 100 }
    pacing: { enabled: true, scope: "header:x-ratelimit-resource", resetFormat: delta }
routes:
  - { name: api, upstream: github }
`);
    // One search request teaches the path -> scope map, then search and core requests mix.
    expect((await request(`${proxy.url}/search/issues?q=0`)).status).toBe(200);
    const paths = Array.from({ length: 40 }, (_, i) => (i % 2 ? `/search/issues?q=${i}` : `/repos/o/r/issues/${i}`));
    const statuses = await Promise.all(paths.map((path) => request(`${proxy!.url}${path}`).then((r) => r.status)));
    expect(tooMany).toBe(0);
    expect(statuses.every((s) => s === 200)).toBe(true);
    const lines = proxy.accessLogs();
    const paced = (prefix: string) =>
      lines.filter((line) => (line.path as string).startsWith(prefix) && (line.flags as string[]).includes('PACED'))
        .length;
    expect(paced('/search/')).toBeGreaterThan(0);
    expect(paced('/repos/')).toBe(0); // core has room: the search quota never slows it
    const status = (await (await fetch(`${proxy.adminUrl}/status`)).json()) as {
      upstreams: {
        pacing: {
          scope: string;
          limit: number | null;
          remaining: number | null;
          dimensions: Record<string, { limit: number | null; remaining: number | null; inFlight: number }>;
        }[];
      }[];
    };
    const known = status.upstreams[0]!.pacing.filter((p) => p.limit !== null);
    expect(known.map((p) => `${p.scope}:${p.limit}`).sort()).toEqual(['core:1000', 'search:5']);
    // Per dimension (SPEC §15): the requests, as the pacer's own fields describe them.
    for (const pacer of known) {
      expect(Object.keys(pacer.dimensions)).toEqual(['requests']);
      expect(pacer.dimensions.requests).toMatchObject({ limit: pacer.limit, remaining: pacer.remaining, inFlight: 0 });
    }
    // The quota gauge, read at scrape: one series per scope.
    const core = await metricValue(proxy.metrics, 'breakwater_upstream_quota_remaining', {
      upstream: 'github',
      scope: 'core',
      dimension: 'requests',
    });
    expect(core).toBeGreaterThan(900);
    expect(core).toBeLessThan(1000);
    const text = (await proxy.metrics.render(false)).body;
    const search =
      /^breakwater_upstream_quota_remaining\{upstream="github",scope="search",dimension="requests"\} (\d+)$/m.exec(
        text,
      );
    expect(search, 'the search series is exported').not.toBeNull();
    expect(Number(search![1])).toBeLessThan(5);
  }, 60_000);

  it('keeps two replicas with shared: true within one quota (real Redis)', async () => {
    const redis = await startRedis();
    const replicas: TestProxy[] = [];
    try {
      provider = await startProvider('ietf');
      const yaml = (shared: boolean) => `version: 1
defaults: { retry: { maxRetries: 0 }, timeouts: { perTry: 30s, total: 60s } }
redis: { url: "${redis.url}" }
upstreams:
  provider:
    url: "${provider!.upstream.url}"
    circuitBreaker: { failureRate: 100 }
    pacing: { enabled: true, shared: ${shared}, engageBelow: 50%, reserve: 5% }
routes:
  - { name: api, upstream: provider }
`;
      const driveBoth = async () => {
        let next = 0;
        const statuses: number[] = [];
        const started = Date.now();
        // 8 clients, 4 on each replica, 100 requests in all.
        await Promise.all(
          Array.from({ length: 8 }, async (_, client) => {
            while (next < 100) {
              next++;
              const res = await request(`${replicas[client % 2]!.url}/x`);
              statuses.push(res.status);
            }
          }),
        );
        return { statuses, elapsedMs: Date.now() - started };
      };
      // Each replica on its own believes it has the whole quota: together they overrun it.
      replicas.push(await startProxy(yaml(false)), await startProxy(yaml(false)));
      await driveBoth();
      expect(provider!.tooMany()).toBeGreaterThan(0);
      await Promise.all(replicas.splice(0).map((r) => r.close()));
      await provider!.upstream.close();

      provider = await startProvider('ietf');
      replicas.push(await startProxy(yaml(true)), await startProxy(yaml(true)));
      const { statuses, elapsedMs } = await driveBoth();
      expect(provider!.tooMany()).toBe(0);
      expect(statuses.filter((s) => s === 200)).toHaveLength(100);
      expect(elapsedMs).toBeGreaterThan(8000);
      expect(elapsedMs).toBeLessThan(15_000);
      const keys = await redis.client().keys('breakwater:pacing:*');
      expect(keys).toContain('breakwater:pacing:provider::');
    } finally {
      await Promise.all(replicas.map((r) => r.close()));
      await redis.stop();
    }
  }, 90_000);

  /** One replica pacing through Redis with onError: local (the Redis fault tests below). */
  const sharedPacingConfig = (redisUrl: string) => `version: 1
defaults: { retry: { maxRetries: 0 }, timeouts: { perTry: 30s, total: 60s } }
redis: { url: "${redisUrl}", onError: local }
upstreams:
  provider:
    url: "${provider!.upstream.url}"
    circuitBreaker: { failureRate: 100 }
    pacing: { enabled: true, shared: true }
routes:
  - { name: api, upstream: provider }
`;

  it('paces locally while Redis is down (redis.onError: local), nothing fails', async () => {
    const redis = await startRedis();
    let replica: TestProxy | undefined;
    try {
      provider = await startProvider('ietf');
      replica = await startProxy(sharedPacingConfig(redis.url));
      proxy = replica;
      expect((await request(`${replica.url}/x`)).status).toBe(200);
      expect(await redis.client().keys('breakwater:pacing:*')).toHaveLength(1);
      await redis.stop();
      const { statuses } = await drive(40, 8);
      expect(statuses.filter((s) => s === 200)).toHaveLength(40);
      expect(provider.tooMany()).toBe(0); // paced by the local fallback
      expect(proxy.accessLogs().filter((line) => (line.flags as string[]).includes('PACED')).length).toBeGreaterThan(0);
    } finally {
      await redis.stop().catch(() => {});
    }
  }, 60_000);

  it('paces locally while Redis hangs (SIGSTOP): no request waits on it, nothing fails', async () => {
    const redis = await startRedis();
    try {
      provider = await startProvider('ietf');
      proxy = await startProxy(sharedPacingConfig(redis.url));
      expect((await request(`${proxy.url}/x`)).status).toBe(200);
      redis.pause();
      const started = Date.now();
      const { statuses } = await drive(40, 8);
      expect(statuses.filter((s) => s === 200)).toHaveLength(40);
      expect(provider.tooMany()).toBe(0); // paced by the local fallback
      // 40 requests at the quota's pace take a few seconds; a request waiting on the hung Redis would wait for ever.
      expect(Date.now() - started).toBeLessThan(20_000);
      expect(proxy.logs().some((line) => String(line.msg).startsWith('shared pacing unavailable'))).toBe(true);
    } finally {
      redis.resume();
      await redis.stop().catch(() => {});
    }
  }, 60_000);

  it.each([
    ['local', false],
    ['shared (real Redis)', true],
  ])(
    'keeps 12 clients on a quota of 6 per window under it, in every window (%s)',
    async (_name, shared) => {
      // Regressions: (1) a slot two windows on, or at a reset assumed from the
      // longest time to a reset seen (a window's length known only from
      // below), fell in the window before; (2) shared, a request was uncounted
      // as soon as its answer came, while the quota it announced was still on
      // its way to Redis. A small quota, no reserve, twice as many clients,
      // answers out of order (up to 40 ms late).
      const redis = shared ? await startRedis() : undefined;
      try {
        provider = await startProvider('openai', 6, 40);
        proxy = await startProxy(`version: 1
defaults: { retry: { maxRetries: 0 }, timeouts: { perTry: 30s, total: 60s } }
${redis ? `redis: { url: "${redis.url}" }\n` : ''}upstreams:
  provider: { url: "${provider.upstream.url}", circuitBreaker: { failureRate: 100 }, pacing: { enabled: true, shared: ${shared}, engageBelow: 10%, reserve: 0%, maxWait: 10s } }
routes:
  - { name: api, upstream: provider }
`);
        // One answer first: before it the pacer knows no quota (12 at once would overrun any first window).
        expect((await request(`${proxy.url}/x`)).status).toBe(200);
        const { statuses } = await drive(36, 12);
        expect(provider.tooMany()).toBe(0);
        // Nobody waited past maxWait: the waiters beyond a window kept their place.
        expect(statuses.filter((s) => s === 200)).toHaveLength(36);
      } finally {
        await redis?.stop();
      }
    },
    60_000,
  );

  it('serves 60 concurrent requests through one replica with shared state, none falling back', async () => {
    const redis = await startRedis();
    try {
      provider = await startProvider('ietf', 1000);
      proxy = await startProxy(`version: 1
defaults: { retry: { maxRetries: 0 } }
redis: { url: "${redis.url}" }
upstreams:
  provider: { url: "${provider.upstream.url}", circuitBreaker: { failureRate: 100 }, pacing: { enabled: true, shared: true } }
routes:
  - { name: api, upstream: provider }
`);
      const statuses = await Promise.all(
        Array.from({ length: 60 }, () => request(`${proxy!.url}/x`).then((r) => r.status)),
      );
      expect(statuses.every((s) => s === 200)).toBe(true);
      // Every update went through Redis: none gave up on a contended compare-and-set.
      expect(proxy.logs().filter((line) => String(line.msg).startsWith('shared pacing unavailable'))).toEqual([]);
      const stored = JSON.parse((await redis.client().get('breakwater:pacing:provider::'))!) as {
        s: { answered: number; dims: Record<string, { remaining: number }> };
        f: Record<string, unknown>;
      };
      expect(stored.s.answered).toBe(60);
      // The fake's one IETF policy is named "window": a dimension of that name (SPEC §15).
      expect(stored.s.dims.window!.remaining).toBe(940);
      expect(stored.f).toEqual({}); // nothing left in flight
    } finally {
      await redis.stop();
    }
  }, 60_000);
});
