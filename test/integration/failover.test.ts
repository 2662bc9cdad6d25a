/**
 * Failover targets (SPEC §8.1) against two scripted upstreams on real
 * sockets: which target each attempt reaches, what each one receives, and
 * what the app, the access log and the metrics are told.
 */
import type { IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, type Behaviour, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { skippingClock, type SkippingClock } from '../helpers/clock.js';
import { expectProblem } from '../helpers/problem.js';
import { metricValue, request, startProxy, type TestProxy } from '../helpers/proxy.js';

/** Per-path scripts for each upstream: the k-th request to a path there gets script(k). */
function scripted() {
  const scripts = new Map<string, (k: number, req: IncomingMessage) => Behaviour>();
  const seen = new Map<string, number>();
  return {
    scripts,
    hits: (path: string) => seen.get(path) ?? 0,
    handle: (_n: number, req: IncomingMessage): Behaviour => {
      const path = (req.url ?? '').split('?')[0]!;
      const k = (seen.get(path) ?? 0) + 1;
      seen.set(path, k);
      return scripts.get(path)?.(k, req) ?? { kind: 'respond', status: 200, body: `default ${path}` };
    },
  };
}

const a = scripted();
const b = scripted();
let primary: FaultUpstream;
let secondary: FaultUpstream;
let proxy: TestProxy;
let clock: SkippingClock;
let closedPort = 0;

const ok = (body: string): Behaviour => ({ kind: 'respond', status: 200, body });

beforeAll(async () => {
  primary = await startFaultUpstream(a.handle);
  secondary = await startFaultUpstream(b.handle);
  const spare = await startFaultUpstream(() => ({ kind: 'respond' }));
  closedPort = spare.port;
  await spare.close();
  clock = skippingClock();
  proxy = await startProxy(
    `version: 1
defaults:
  retry: { maxRetries: 2, retryOn: [5xx, connect-failure, reset, "429"], backoff: { base: 5s, max: 10s }, retryAfter: { max: 5s } }
  timeouts: { total: 60s }
upstreams:
  api:
    url: "${primary.url}"
    # failureRate 100 never opens: these targets fail on purpose.
    circuitBreaker: { failureRate: 100 }
    failover:
      - { name: b, url: "${secondary.url}", headers: { set: { authorization: "Bearer b-token" }, remove: [x-a-only] } }
  down:
    url: "http://127.0.0.1:${closedPort}"
    circuitBreaker: { failureRate: 100 }
    failover: [{ url: "${secondary.url}" }]
  paced:
    url: "${primary.url}"
    circuitBreaker: { failureRate: 100 }
    pacing: { enabled: true, headers: x-ratelimit, resetFormat: delta }
    failover: [{ name: b, url: "${secondary.url}" }]
  breaking:
    url: "${primary.url}"
    circuitBreaker: { failureRate: 50, minimumRequests: 4, openFor: 30s, maxOpenFor: 30s, hold: 0s, shedding: { enabled: false } }
    failover: [{ name: b, url: "${secondary.url}" }]
routes:
  - { name: api, match: { pathPrefix: /api }, upstream: api }
  - { name: down, match: { pathPrefix: /down }, upstream: down }
  # Backoff of 1-2 ms: its retries' sleeps must not move the proxy's clock past the breakers' 30 s open period.
  - { name: breaking, match: { pathPrefix: /breaking }, upstream: breaking, retry: { backoff: { base: 1ms, max: 2ms } } }
  - { name: paced, match: { pathPrefix: /paced }, upstream: paced }
`,
    { clock },
  );
});

afterAll(async () => {
  await proxy.close();
  await primary.close();
  await secondary.close();
});

const lastAccess = (path: string) =>
  proxy
    .accessLogs()
    .filter((line) => line.path === path)
    .at(-1)!;

describe('failover targets', () => {
  it('sends a retry after a primary 503 to the secondary, at once: one attempt each', async () => {
    a.scripts.set('/api/one', () => ({ kind: 'respond', status: 503, body: 'down' }));
    b.scripts.set('/api/one', () => ok('from b'));
    const failoversBefore = await metricValue(proxy.metrics, 'breakwater_failovers_total', {
      route: 'api',
      upstream: 'api',
      target: 'api/b',
    });
    const sleeps = clock.sleeps.length;
    const res = await request(`${proxy.url}/api/one`);
    expect(res.status).toBe(200);
    expect(res.text).toBe('from b');
    expect(res.headers['x-breakwater-target']).toBe('api/b');
    expect(res.headers['x-breakwater-attempts']).toBe('2');
    expect([a.hits('/api/one'), b.hits('/api/one')]).toEqual([1, 1]);
    // No backoff before an attempt on another target (the backoff base is 5 s).
    expect(clock.sleeps.length).toBe(sleeps);
    expect(
      await metricValue(proxy.metrics, 'breakwater_failovers_total', {
        route: 'api',
        upstream: 'api',
        target: 'api/b',
      }),
    ).toBe(failoversBefore + 1);
    expect(lastAccess('/api/one')).toMatchObject({
      route: 'api',
      upstream: 'api',
      target: 'api/b',
      attempts: 2,
      status: 200,
    });
  });

  it('names the primary on its own answers', async () => {
    const res = await request(`${proxy.url}/api/plain`);
    expect(res.status).toBe(200);
    expect(res.headers['x-breakwater-target']).toBe('api');
    expect(lastAccess('/api/plain')).toMatchObject({ upstream: 'api', target: 'api' });
  });

  it('sends each target only its own credentials', async () => {
    a.scripts.set('/api/creds', () => ({ kind: 'respond', status: 503 }));
    b.scripts.set('/api/creds', () => ({ kind: 'echo' }));
    const res = await request(`${proxy.url}/api/creds`, {
      headers: { authorization: 'Bearer app-token', 'x-a-only': 'secret-for-a' },
    });
    expect(res.status).toBe(200);
    const toA = primary.requests.filter((r) => r.url === '/api/creds');
    const toB = secondary.requests.filter((r) => r.url === '/api/creds');
    expect(toA.map((r) => [r.headers.authorization, r.headers['x-a-only']])).toEqual([
      ['Bearer app-token', 'secret-for-a'],
    ]);
    expect(toB.map((r) => [r.headers.authorization, r.headers['x-a-only']])).toEqual([['Bearer b-token', undefined]]);
  });

  it('moves off a refused primary at once', async () => {
    b.scripts.set('/down/x', () => ok('from down/1'));
    const sleeps = clock.sleeps.length;
    const res = await request(`${proxy.url}/down/x`);
    expect(res.status).toBe(200);
    expect(res.text).toBe('from down/1');
    expect(res.headers['x-breakwater-target']).toBe('down/1');
    expect(clock.sleeps.length).toBe(sleeps);
  });

  it('never sends a POST without Idempotency-Key that got a 503 anywhere again', async () => {
    a.scripts.set('/api/pay', () => ({ kind: 'respond', status: 503, body: 'busy' }));
    const res = await request(`${proxy.url}/api/pay`, { method: 'POST', body: '{}' });
    expect(res.status).toBe(503);
    expect(res.headers['x-breakwater-target']).toBe('api');
    expect([a.hits('/api/pay'), b.hits('/api/pay')]).toEqual([1, 0]);
  });

  it('sends a POST with Idempotency-Key on to the secondary', async () => {
    a.scripts.set('/api/pay-idem', () => ({ kind: 'respond', status: 503 }));
    b.scripts.set('/api/pay-idem', () => ok('paid'));
    const res = await request(`${proxy.url}/api/pay-idem`, {
      method: 'POST',
      body: '{}',
      headers: { 'idempotency-key': 'k1' },
    });
    expect(res.status).toBe(200);
    expect([a.hits('/api/pay-idem'), b.hits('/api/pay-idem')]).toEqual([1, 1]);
  });

  it('keeps a target that answered 429 Retry-After: 30 out of rotation for the cooldown, beyond retryAfter.max', async () => {
    a.scripts.set('/api/quota', () => ({ kind: 'respond', status: 429, headers: { 'retry-after': '30' } }));
    b.scripts.set('/api/quota', () => ok('b'));
    const first = await request(`${proxy.url}/api/quota`);
    expect(first.status).toBe(200);
    expect(first.headers['x-breakwater-target']).toBe('api/b');
    for (let i = 0; i < 10; i++) {
      const res = await request(`${proxy.url}/api/quota`);
      expect(res.headers['x-breakwater-target']).toBe('api/b');
    }
    expect([a.hits('/api/quota'), b.hits('/api/quota')]).toEqual([1, 11]);
    const status = (await (await fetch(`${proxy.adminUrl}/status`)).json()) as {
      upstreams: { name: string; targets: { name: string; coolingForMs: number }[] }[];
    };
    const targets = status.upstreams.find((u) => u.name === 'api')!.targets;
    expect(targets.map((t) => t.name)).toEqual(['api', 'api/b']);
    expect(targets[0]!.coolingForMs).toBeGreaterThan(20_000);
    expect(targets[0]!.coolingForMs).toBeLessThanOrEqual(30_000);
    // Past the cooldown (on the proxy's clock), the primary is first again.
    clock.advance(31_000);
    const back = await request(`${proxy.url}/api/after-cooldown`);
    expect(back.headers['x-breakwater-target']).toBe('api');
  });
});

describe('failover and millisecond hints (SPEC §15)', () => {
  it('cools a target for the retry-after-ms of its 429, not for the Retry-After beside it', async () => {
    a.scripts.set('/api/ms-quota', () => ({
      kind: 'respond',
      status: 429,
      headers: { 'retry-after-ms': '4000', 'retry-after': '30' },
    }));
    b.scripts.set('/api/ms-quota', () => ok('b'));
    const first = await request(`${proxy.url}/api/ms-quota`);
    expect(first.headers['x-breakwater-target']).toBe('api/b');
    const status = (await (await fetch(`${proxy.adminUrl}/status`)).json()) as {
      upstreams: { name: string; targets: { name: string; coolingForMs: number }[] }[];
    };
    const primary = status.upstreams.find((u) => u.name === 'api')!.targets[0]!;
    expect(primary.coolingForMs).toBeGreaterThan(0);
    expect(primary.coolingForMs).toBeLessThanOrEqual(4000);
    clock.advance(4_100);
    const back = await request(`${proxy.url}/api/after-ms-cooldown`);
    expect(back.headers['x-breakwater-target']).toBe('api');
  });
});

describe('failover and pacing', () => {
  it('takes a paced target whose announced quota is spent out of rotation until its reset', async () => {
    a.scripts.set('/paced/x', () => ({
      kind: 'respond',
      status: 200,
      headers: { 'x-ratelimit-limit': '100', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '60' },
      body: 'a',
    }));
    b.scripts.set('/paced/x', () => ok('b'));
    const first = await request(`${proxy.url}/paced/x`);
    expect(first.headers['x-breakwater-target']).toBe('paced');
    for (let i = 0; i < 5; i++)
      expect((await request(`${proxy.url}/paced/x`)).headers['x-breakwater-target']).toBe('paced/b');
    expect([a.hits('/paced/x'), b.hits('/paced/x')]).toEqual([1, 5]);
  });
});

describe('failover and a paced target that refuses', () => {
  it("moves to another target when a target's pacer would wait past maxWait", async () => {
    const shared = await startProxy(`version: 1
upstreams:
  p:
    url: "${primary.url}"
    circuitBreaker: { failureRate: 100 }
    cooldownMax: 1ms
    pacing: { enabled: true, headers: x-ratelimit, resetFormat: delta, maxWait: 1s }
    failover: [{ name: b, url: "${secondary.url}" }]
routes:
  - { name: p, upstream: p, retry: { maxRetries: 0 } }
`);
    try {
      // The quota is spent until a reset in 60 s; the cooldown (1 ms) passes at once, so the primary is tried again and its pacer refuses.
      a.scripts.set('/refusing', () => ({
        kind: 'respond',
        status: 200,
        headers: { 'x-ratelimit-limit': '10', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '60' },
        body: 'a',
      }));
      b.scripts.set('/refusing', () => ok('b'));
      expect((await request(`${shared.url}/refusing`)).headers['x-breakwater-target']).toBe('p');
      await new Promise((resolve) => setTimeout(resolve, 20));
      const res = await request(`${shared.url}/refusing`);
      expect(res.status).toBe(200);
      expect(res.headers['x-breakwater-target']).toBe('p/b');
      expect(a.hits('/refusing')).toBe(1);
    } finally {
      await shared.close();
    }
  });
});

describe('failover and the breakers', () => {
  it("sends nothing to a target whose breaker is open, and says which target's breaker", async () => {
    a.scripts.set('/breaking/x', () => ({ kind: 'respond', status: 503 }));
    b.scripts.set('/breaking/x', () => ok('b'));
    // Failures open the primary's breaker (more than 50 % of 4 calls); each request still ends on b.
    for (let i = 0; i < 4; i++) expect((await request(`${proxy.url}/breaking/x`)).status).toBe(200);
    const hitsWhenOpen = a.hits('/breaking/x');
    expect(hitsWhenOpen).toBeGreaterThanOrEqual(3);
    for (let i = 0; i < 20; i++) {
      const res = await request(`${proxy.url}/breaking/x`);
      expect(res.status).toBe(200);
      expect(res.headers['x-breakwater-target']).toBe('breaking/b');
    }
    expect(a.hits('/breaking/x')).toBe(hitsWhenOpen);
    expect(
      await metricValue(proxy.metrics, 'breakwater_circuit_transitions_total', { upstream: 'breaking', to: 'open' }),
    ).toBe(1);
    expect(
      await metricValue(proxy.metrics, 'breakwater_circuit_transitions_total', { upstream: 'breaking/b', to: 'open' }),
    ).toBe(0);
  });

  it('answers CIRCUIT_OPEN with the soonest Retry-After when every target is open', async () => {
    // The primary is open (previous test); now open the secondary too.
    b.scripts.set('/breaking/all', () => ({ kind: 'respond', status: 503 }));
    for (let i = 0; i < 4; i++) await request(`${proxy.url}/breaking/all`);
    const status = (await (await fetch(`${proxy.adminUrl}/status`)).json()) as {
      upstreams: { name: string; targets: { name: string; breaker: { state: string; openForMs: number } }[] }[];
    };
    const targets = status.upstreams.find((u) => u.name === 'breaking')!.targets;
    expect(targets.map((t) => t.breaker.state)).toEqual(['open', 'open']);
    const soonest = Math.min(...targets.map((t) => t.breaker.openForMs));
    const res = await request(`${proxy.url}/breaking/all`);
    const body = expectProblem(res, 'CIRCUIT_OPEN', { route: 'breaking', upstream: 'breaking', attempts: 0 });
    const retryAfter = Number(res.headers['retry-after']);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(Math.ceil(soonest / 1000) + 1);
    // No attempt was made: no target (SPEC §5); the detail names the breaker that refused, the one to probe first.
    expect(body.target).toBeNull();
    expect(body.detail).toContain(`'${targets.find((t) => t.breaker.openForMs === soonest)!.name}'`);
  });
});
