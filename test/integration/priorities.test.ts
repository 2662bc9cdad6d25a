/**
 * Priority classes in rate-limit queues (SPEC §13), on real sockets, local
 * and shared (Redis): a queue releases a higher class first and FIFO within
 * a class; a full queue makes room for a higher class by refusing the
 * newest waiter of the lowest one (one 429, counted `displaced`); a
 * request's class comes from its route or the header, which may lower it,
 * never raise it, and is never forwarded; the access log names the class.
 *
 * The queue is made with `maxConcurrent: 1` and a first request the
 * upstream holds until the test lets it go: everything after it waits, and
 * the upstream sees the order the queue released them in.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, waitUntil, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { startRedis, type RedisServer } from '../fixtures/redis.js';
import { startWindowProvider, type WindowProvider } from '../fixtures/window-provider.js';
import { metricValue, request, startProxy, type TestProxy, type TestResponse } from '../helpers/proxy.js';

let upstream: FaultUpstream;
let redis: RedisServer;
let releaseGate: () => void = () => {};

beforeAll(async () => {
  redis = await startRedis();
  upstream = await startFaultUpstream((_n, req) => {
    if ((req.url ?? '').includes('gate')) {
      return { kind: 'custom', handle: (_req, res) => (releaseGate = () => res.end('gate')) };
    }
    return { kind: 'respond', status: 200, body: 'ok' };
  });
});

afterAll(async () => {
  await upstream?.close();
  await redis?.stop();
});

function config(shared: boolean, queueSize: number, promoteAfter?: string): string {
  return `version: 1
priorities:
  default: normal
${promoteAfter ? `  promoteAfter: ${promoteAfter}\n` : ''}  classes: [{ name: critical }, { name: normal }, { name: batch }]
${shared ? `redis: { url: "${redis.url}" }\n` : ''}upstreams:
  api: { url: "${upstream.url}" }
routes:
  - name: sync
    match: { pathPrefix: /sync }
    upstream: api
    priority: batch
    rateLimit: { maxConcurrent: 1, queue: { size: ${queueSize}, timeout: 20s }${shared ? ', shared: true' : ''} }
  - name: api
    upstream: api
    rateLimit: { maxConcurrent: 1, queue: { size: ${queueSize}, timeout: 20s }${shared ? ', shared: true' : ''} }
`;
}

const queued = (proxy: TestProxy, route: string) =>
  proxy.app
    .runtime()
    .routes.find((r) => r.name === route)!
    .rateLimit!.queueDepth();

/** Sends a request and waits until it waits in the route's queue; `response` is its eventual answer. */
async function enqueue(
  proxy: TestProxy,
  route: string,
  path: string,
  priority?: string,
): Promise<{ response: Promise<TestResponse> }> {
  const before = queued(proxy, route);
  const response = request(`${proxy.url}${path}`, { headers: priority ? { 'x-breakwater-priority': priority } : {} });
  await waitUntil(() => queued(proxy, route) === before + 1, 10_000, `${path} queued`);
  return { response };
}

const seen = (from: number) => upstream.requests.slice(from).map((r) => r.url.replace(/^\/(sync|api)\//, ''));

describe.each([
  ['local', false],
  ['shared (Redis)', true],
])('priority classes in a %s rate-limit queue', (_name, shared) => {
  let proxy: TestProxy;
  beforeAll(async () => {
    proxy = await startProxy(config(shared, 100));
  });
  afterAll(async () => {
    await proxy?.close();
  });

  it('releases critical requests queued after 20 batch ones before them, and the default class before batch', async () => {
    const from = upstream.requests.length;
    const gate = request(`${proxy.url}/api/gate`);
    await waitUntil(() => upstream.requests.length === from + 1, 10_000, 'the gate request upstream');
    const waiting: Promise<TestResponse>[] = [];
    for (let i = 1; i <= 20; i++) waiting.push((await enqueue(proxy, 'api', `/api/b${i}`, 'batch')).response);
    for (let i = 1; i <= 3; i++) waiting.push((await enqueue(proxy, 'api', `/api/c${i}`, 'critical')).response);
    for (let i = 1; i <= 3; i++) waiting.push((await enqueue(proxy, 'api', `/api/n${i}`)).response);
    // /status shows who waits, by class.
    const status = (await request(`${proxy.adminUrl}/status`)).json<{
      routes: { name: string; rateLimit: { queued: number; queuedByClass: Record<string, number> } }[];
    }>();
    expect(status.routes.find((r) => r.name === 'api')!.rateLimit).toMatchObject({
      queued: 26,
      queuedByClass: { critical: 3, normal: 3, batch: 20 },
    });
    // So does the queue-depth gauge, with a `priority` label because classes are configured.
    const depth = (priority: string) =>
      metricValue(proxy.metrics, 'breakwater_rate_limit_queue_depth', { route: 'api', priority });
    expect([await depth('critical'), await depth('normal'), await depth('batch')]).toEqual([3, 3, 20]);
    expect((await proxy.metrics.render(false)).body).not.toMatch(/^breakwater_rate_limit_queue_depth\{route="api"\}/m);
    releaseGate();
    expect((await gate).status).toBe(200);
    for (const response of await Promise.all(waiting)) expect(response.status).toBe(200);
    expect(seen(from)).toEqual([
      'gate',
      'c1',
      'c2',
      'c3',
      'n1',
      'n2',
      'n3',
      ...Array.from({ length: 20 }, (_, i) => `b${i + 1}`),
    ]);
    // The class is the access log's `priority`; the header never reaches the upstream.
    const logged = new Map(proxy.accessLogs().map((line) => [String(line.path), line.priority]));
    expect([logged.get('/api/c1'), logged.get('/api/n1'), logged.get('/api/b1')]).toEqual([
      'critical',
      'normal',
      'batch',
    ]);
    for (const received of upstream.requests.slice(from))
      expect(received.headers['x-breakwater-priority']).toBeUndefined();
  });

  it("lets the header lower a route's class, never raise it; ignores an unknown class", async () => {
    // Route sync is batch: "critical" in the header is ignored. Route api: "batch" lowers it, an unknown name is ignored.
    const asked = [
      ['/sync/raised', 'critical'],
      ['/api/lowered', 'batch'],
      ['/api/unknown', 'urgent'],
      ['/api/Critical', 'Critical'],
    ];
    for (const [path, priority] of asked)
      expect((await request(`${proxy.url}${path!}`, { headers: { 'x-breakwater-priority': priority! } })).status).toBe(
        200,
      );
    const logged = new Map(proxy.accessLogs().map((line) => [String(line.path), line.priority]));
    expect(asked.map(([path]) => logged.get(path!))).toEqual(['batch', 'batch', 'normal', 'normal']);
  });

  it('releases a batch request that has waited priorities.promoteAfter before later critical ones (the starvation guard)', async () => {
    const guarded = await startProxy(config(shared, 100, '1500ms'));
    try {
      const from = upstream.requests.length;
      const gate = request(`${guarded.url}/api/gate`);
      await waitUntil(() => upstream.requests.length === from + 1, 10_000, 'the gate request upstream');
      const old = await enqueue(guarded, 'api', '/api/b-old', 'batch');
      // Past promoteAfter: its promotion timer, set when it joined the queue and shorter than this sleep, has fired.
      // The later ones are released well within promoteAfter, so they keep their class.
      await new Promise((resolve) => setTimeout(resolve, 2000));
      const later = [];
      for (const [path, priority] of [
        ['/api/c1', 'critical'],
        ['/api/b-new', 'batch'],
        ['/api/c2', 'critical'],
      ] as const)
        later.push((await enqueue(guarded, 'api', path, priority)).response);
      releaseGate();
      for (const response of await Promise.all([gate, old.response, ...later])) expect(response.status).toBe(200);
      // The old batch request goes first, as one of the highest class; the new one keeps its class.
      expect(seen(from)).toEqual(['gate', 'b-old', 'c1', 'c2', 'b-new']);
      // It keeps its class in the log, flagged PROMOTED (it went ahead of critical ones); the new one was not.
      expect(guarded.accessLogs().find((line) => line.path === '/api/b-old')).toMatchObject({
        priority: 'batch',
        flags: ['PROMOTED'],
      });
      expect(guarded.accessLogs().find((line) => line.path === '/api/b-new')).toMatchObject({
        priority: 'batch',
        flags: [],
      });
    } finally {
      await guarded.close();
    }
  });
});

describe.each([
  ['local', false],
  ['shared (Redis)', true],
])('a full %s queue', (_name, shared) => {
  it('admits a critical request by displacing the newest batch one: exactly one 429, counted displaced', async () => {
    const proxy = await startProxy(config(shared, 5));
    try {
      // Every shed series the route can count is there at zero from the start.
      const exposition = (await proxy.metrics.render(false)).body;
      for (const priority of ['critical', 'normal', 'batch']) {
        for (const reason of ['displaced', 'queue_full', 'queue_timeout'])
          expect(exposition).toContain(
            `breakwater_shed_total{route="api",priority="${priority}",reason="${reason}"} 0`,
          );
      }
      expect(exposition).not.toContain('reason="max_wait"'); // no pacing here
      const from = upstream.requests.length;
      const gate = request(`${proxy.url}/api/gate`);
      await waitUntil(() => upstream.requests.length === from + 1, 10_000, 'the gate request upstream');
      const batch: Promise<TestResponse>[] = [];
      for (let i = 1; i <= 5; i++) batch.push((await enqueue(proxy, 'api', `/api/b${i}`, 'batch')).response);
      const critical = request(`${proxy.url}/api/c1`, { headers: { 'x-breakwater-priority': 'critical' } });
      // b5, the newest batch waiter, makes room at once.
      const displaced = await batch[4]!;
      expect(displaced.status).toBe(429);
      expect(displaced.json()).toMatchObject({ code: 'RATE_LIMITED' });
      expect(displaced.json<{ detail: string }>().detail).toContain('higher priority class');
      expect(
        await metricValue(proxy.metrics, 'breakwater_shed_total', {
          route: 'api',
          priority: 'batch',
          reason: 'displaced',
        }),
      ).toBe(1);
      // Full, and no class below the newcomer's waits: the newcomer itself is refused.
      const another = await request(`${proxy.url}/api/b6`, { headers: { 'x-breakwater-priority': 'batch' } });
      expect(another.status).toBe(429);
      expect(
        await metricValue(proxy.metrics, 'breakwater_shed_total', {
          route: 'api',
          priority: 'batch',
          reason: 'queue_full',
        }),
      ).toBe(1);
      expect(
        await metricValue(proxy.metrics, 'breakwater_shed_total', {
          route: 'api',
          priority: 'batch',
          reason: 'displaced',
        }),
      ).toBe(1);
      releaseGate();
      await gate;
      expect((await critical).status).toBe(200);
      for (const response of await Promise.all(batch.slice(0, 4))) expect(response.status).toBe(200);
      expect(seen(from)).toEqual(['gate', 'c1', 'b1', 'b2', 'b3', 'b4']);
    } finally {
      await proxy.close();
    }
  });
});

const WINDOW = 2000;
const windowProviders: FaultUpstream[] = [];

/** A provider with fixed windows of `limit` requests: OpenAI's quota headers on every answer, a 429 beyond; closed by the test. */
async function windowProvider(limit: number, windowMs: number): Promise<WindowProvider> {
  const provider = await startWindowProvider({ limit, windowMs, dialect: 'openai' });
  windowProviders.push(provider.upstream);
  return provider;
}

describe.each([
  ['local', false],
  ['shared (Redis)', true],
])('quotaFloor with %s pacing on a fixed-window provider', (_name, shared) => {
  it('stops batch traffic at about half of each window’s quota, while a critical request then goes at once; no 429', async () => {
    const { url, started, seenAt, tooMany } = await windowProvider(20, WINDOW);
    const proxy = await startProxy(`version: 1
priorities:
  default: normal
  classes: [{ name: critical }, { name: normal }, { name: batch, quotaFloor: 50% }]
defaults: { retry: { maxRetries: 0 } }
${shared ? `redis: { url: "${redis.url}" }\n` : ''}upstreams:
  openai: { url: "${url}", circuitBreaker: { failureRate: 100 }, pacing: { enabled: true, engageBelow: 10%, maxWait: 10s, shared: ${shared} } }
routes:
  - { name: embeddings, match: { pathPrefix: /v1/embeddings }, upstream: openai, priority: batch }
  - { name: chat, upstream: openai }
`);
    try {
      const stopAt = Date.now() + 3 * WINDOW + 500;
      let sent = 0;
      const statuses: number[] = [];
      const batch = (async () => {
        while (Date.now() < stopAt) statuses.push((await request(`${proxy.url}/v1/embeddings/${sent++}`)).status);
      })();
      // Batch is held: half the window's quota is spent and nothing new has gone for a while.
      const current = () => Math.floor((Date.now() - started) / WINDOW);
      await waitUntil(
        () =>
          seenAt.filter((s) => s.window === current()).length >= 9 &&
          Date.now() - (started + current() * WINDOW) < WINDOW - 600 &&
          seenAt.at(-1)!.path.includes('embeddings') &&
          sent > seenAt.length,
        10_000,
        'batch held at its floor',
      );
      const window = current();
      const chat = await request(`${proxy.url}/v1/chat/completions`, {
        headers: { 'x-breakwater-priority': 'critical' },
      });
      expect(chat.status).toBe(200);
      // It went in the same window, past the batch floor, without waiting.
      expect(seenAt.find((s) => s.path === '/v1/chat/completions')).toMatchObject({ window });
      expect(proxy.accessLogs().find((line) => line.path === '/v1/chat/completions')).toMatchObject({
        priority: 'critical',
        flags: [],
      });
      await batch;
      expect(tooMany()).toBe(0);
      expect(statuses.every((status) => status === 200)).toBe(true);
      // Each window the batch traffic saw from its start: about half the quota (the floor, plus what was in flight).
      const perWindow = new Map<number, number>();
      for (const s of seenAt)
        if (s.path.includes('embeddings')) perWindow.set(s.window, (perWindow.get(s.window) ?? 0) + 1);
      const full = [...perWindow.entries()].filter(([w]) => w >= 1 && w <= 2);
      expect(full.length).toBe(2);
      for (const [, count] of full) {
        expect(count).toBeGreaterThanOrEqual(8);
        expect(count).toBeLessThanOrEqual(11);
      }
    } finally {
      await proxy.close();
      await windowProviders.pop()?.close();
    }
  });
});

/**
 * A paced upstream of 4 requests per 4 s window (the setup must fit in one, on a loaded
 * machine too), its window's quota spent: what comes next waits for the reset.
 * `send(path, class)` resolves once that request waits for the pacer.
 */
async function spentPacer(shared: boolean, promoteAfter?: string) {
  const window = 4000;
  const provider = await windowProvider(4, window);
  const proxy = await startProxy(`version: 1
priorities:
  default: normal
${promoteAfter ? `  promoteAfter: ${promoteAfter}\n` : ''}  classes: [{ name: critical }, { name: normal }, { name: batch }]
defaults: { retry: { maxRetries: 0 } }
${shared ? `redis: { url: "${redis.url}" }\n` : ''}upstreams:
  api: { url: "${provider.url}", circuitBreaker: { failureRate: 100 }, pacing: { enabled: true, engageBelow: 10%, maxWait: 10s, shared: ${shared} } }
routes:
  - { name: api, upstream: api }
`);
  const close = async () => {
    await proxy.close();
    await windowProviders.pop()?.close();
  };
  /** The pacer's waiters by rank (critical, normal, batch), sleeping towards a slot or waiting for their turn. */
  const waiting = (rank: number) =>
    proxy.app.runtime().upstreams.get('api')!.pacing!.snapshot()[0]?.waitingByRank[rank] ?? 0;
  const ranks: Record<string, number> = { critical: 0, normal: 1, batch: 2 };
  const send = async (path: string, priority: string): Promise<{ response: Promise<TestResponse> }> => {
    const before = waiting(ranks[priority]!);
    const response = request(`${proxy.url}${path}`, { headers: { 'x-breakwater-priority': priority } });
    await waitUntil(() => waiting(ranks[priority]!) === before + 1, 5_000, `${path} waiting`);
    return { response };
  };
  /** The paths the provider saw after the spending, in order. */
  const sent = () => provider.seenAt.map((s) => s.path).filter((path) => !path.startsWith('/spend'));
  try {
    await waitUntil(() => (Date.now() - provider.started) % window < 150, 2 * window, 'the start of a window');
    for (let i = 1; i <= 4; i++) expect((await request(`${proxy.url}/spend/${i}`)).status).toBe(200);
  } catch (error) {
    await close();
    throw error;
  }
  return { proxy, tooMany: provider.tooMany, send, sent, close };
}

describe.each([
  ['local', false],
  ['shared (Redis)', true],
])('%s pacing with priority classes', (_name, shared) => {
  it('lets critical requests that come while batch ones wait for the reset go first after it', async () => {
    const { proxy, tooMany, send, sent, close } = await spentPacer(shared);
    try {
      // The first batch request waits for the reset; the others wait their turn behind it.
      const batch: Promise<TestResponse>[] = [];
      for (let i = 1; i <= 5; i++) batch.push((await send(`/batch/${i}`, 'batch')).response);
      expect(sent()).toEqual([]);
      const critical = [1, 2].map((i) =>
        request(`${proxy.url}/critical/${i}`, { headers: { 'x-breakwater-priority': 'critical' } }),
      );
      // /status shows the pacer's waiters by class: the batch one sleeping towards its slot and four behind it, then two critical ones.
      const waitingByClass = async () => {
        const status = (await request(`${proxy.adminUrl}/status`)).json<{
          upstreams: { targets: { pacing: { waitingByClass: Record<string, number> }[] }[] }[];
        }>();
        return status.upstreams[0]!.targets[0]!.pacing[0]!.waitingByClass;
      };
      let last = await waitingByClass();
      for (const stopAt = Date.now() + 5_000; last.critical !== 2 && Date.now() < stopAt;)
        last = await waitingByClass();
      expect(last).toEqual({ critical: 2, normal: 0, batch: 5 });
      const all = await Promise.all([...batch, ...critical]);
      for (const response of all) expect(response.status).toBe(200);
      const order = sent();
      expect(order.slice(0, 3).sort()).toEqual(['/batch/1', '/critical/1', '/critical/2']);
      expect(order.slice(3)).toEqual(['/batch/2', '/batch/3', '/batch/4', '/batch/5']);
      expect(tooMany()).toBe(0);
      // Pacing waits are counted by class (classes are configured): the batch one that waited for the reset at least.
      const byClass = new Map<unknown, number>();
      proxy.metrics.pacingWait.each((labels, _counts, n) =>
        byClass.set(labels.priority, (byClass.get(labels.priority) ?? 0) + n),
      );
      expect(byClass.get('batch')).toBeGreaterThanOrEqual(1);
      expect(byClass.has(undefined)).toBe(false);
      expect((await waitingByClass()).batch).toBe(0);
    } finally {
      await close();
    }
  });
});

describe.each([
  ['local', false],
  ['shared (Redis)', true],
])('%s pacing: a higher class before a lower one asleep towards its slot', (_name, shared) => {
  it('sends three critical requests first after the reset, then the batch one that slept towards its slot', async () => {
    const { tooMany, send, sent, close } = await spentPacer(shared);
    try {
      // The batch request sleeps towards its slot at the reset (three per window); then three critical ones come.
      const all = [(await send('/batch/1', 'batch')).response];
      for (let i = 1; i <= 3; i++) all.push((await send(`/critical/${i}`, 'critical')).response);
      expect(sent()).toEqual([]);
      for (const response of await Promise.all(all)) expect(response.status).toBe(200);
      // SPEC §13: the waiting critical requests are released before the batch one (before the fix it went first).
      expect(sent().slice(0, 3).sort()).toEqual(['/critical/1', '/critical/2', '/critical/3']);
      expect(sent()[3]).toBe('/batch/1');
      expect(tooMany()).toBe(0);
    } finally {
      await close();
    }
  }, 30_000);
});

describe('local pacing with the starvation guard', () => {
  it("lets batch requests that waited priorities.promoteAfter for the pacer's turn go before a critical one that came later", async () => {
    const { proxy, tooMany, send, sent, close } = await spentPacer(false, '300ms');
    try {
      const all: Promise<TestResponse>[] = [];
      for (let i = 1; i <= 3; i++) all.push((await send(`/batch/${i}`, 'batch')).response);
      // Past promoteAfter (the promotion timers, set when they began to wait and shorter, have fired), a critical request comes.
      await new Promise((resolve) => setTimeout(resolve, 600));
      all.push((await send('/critical/1', 'critical')).response);
      expect(sent()).toEqual([]);
      for (const response of await Promise.all(all)) expect(response.status).toBe(200);
      // Without the guard the critical request would go right after the one asleep towards the reset; with it, last.
      const order = sent();
      expect(order.slice(0, 3).sort()).toEqual(['/batch/1', '/batch/2', '/batch/3']);
      expect(order[3]).toBe('/critical/1');
      expect(tooMany()).toBe(0);
      // The two that waited for their turn went ahead of the critical one; the one asleep towards the reset held the turn.
      const flagsOf = (path: string) => proxy.accessLogs().find((line) => line.path === path)?.flags as string[];
      expect(
        ['/batch/1', '/batch/2', '/batch/3', '/critical/1'].map((path) => flagsOf(path).includes('PROMOTED')),
      ).toEqual([false, true, true, false]);
    } finally {
      await close();
    }
  });
});
