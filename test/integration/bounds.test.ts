/**
 * Issue 32, "unbounded work": what a client chooses (rate-limit key values,
 * forward-proxy targets) makes bounded state. The rate-limit key table stays
 * at its cap under a flood of new key values, and a flood cannot reset a
 * key's spent bucket by pushing it out; forward-proxy targets get at most
 * MAX_TARGET_SERIES `upstream` series per metric family, the rest counted
 * under OTHER_TARGETS.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_TARGET_SERIES, OTHER_TARGETS } from '../../src/observe/metrics.js';
import { MAX_KEYS } from '../../src/policy/rate-limit/limiters.js';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { request, startProxy, type TestProxy } from '../helpers/proxy.js';

let upstream: FaultUpstream;

beforeAll(async () => {
  upstream = await startFaultUpstream(() => ({ kind: 'respond', body: 'ok' }));
});

afterAll(async () => {
  await upstream.close();
});

/** Sends `count` requests, `parallel` at a time, on keep-alive connections; `send(i)` makes the i-th. Resolves with the statuses in order. */
async function flood(
  count: number,
  parallel: number,
  send: (i: number, agent: http.Agent) => Promise<number>,
): Promise<number[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: parallel });
  const statuses: number[] = new Array<number>(count);
  let next = 0;
  try {
    await Promise.all(
      Array.from({ length: parallel }, async () => {
        while (next < count) {
          const i = next++;
          statuses[i] = await send(i, agent);
        }
      }),
    );
  } finally {
    agent.destroy();
  }
  return statuses;
}

/** One GET through `proxy` with the key header, on `agent`; resolves with the status. */
function keyed(proxy: TestProxy, key: string, agent: http.Agent | false = false, path = '/x'): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${proxy.url}${path}`, { agent, headers: { 'x-key': key } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
  });
}

type Status = { routes: { name: string; rateLimit: { keys: number } | null }[] };

describe('rate-limit keys chosen by the client', () => {
  let proxy: TestProxy;

  beforeAll(async () => {
    // 1 token a minute: a bucket spent in this test is never full again before it ends.
    proxy = await startProxy(`version: 1
logging: { accessLog: false }
upstreams: { u: { url: "${upstream.url}" } }
routes:
  - { name: long, match: { pathPrefix: /long }, upstream: u, rateLimit: { rate: 1/min, burst: 2, queue: { size: 0 }, key: "header:x-key" } }
  - { name: keyed, upstream: u, rateLimit: { rate: 1/min, burst: 2, queue: { size: 0 }, key: "header:x-key" } }
`);
  });

  afterAll(async () => {
    await proxy.close();
  });

  it(`keeps the table at ${MAX_KEYS} keys under 5,000 new key values, and a spent key stays limited`, async () => {
    expect([await keyed(proxy, 'busy'), await keyed(proxy, 'busy'), await keyed(proxy, 'busy')]).toEqual([
      200, 200, 429,
    ]);

    const statuses = await flood(5000, 16, (i, agent) => keyed(proxy, `key-${i}`, agent));

    const status = (await request(`${proxy.adminUrl}/status`)).json<Status>();
    expect(status.routes.find((route) => route.name === 'keyed')!.rateLimit!.keys).toBe(MAX_KEYS);
    // No spent bucket was dropped to make room: the busy key is still refused.
    expect(await keyed(proxy, 'busy')).toBe(429);
    // The key values the table could hold (MAX_KEYS - 1 besides `busy`) got their own burst; the
    // rest shared the route's one overflow limit: 2 tokens, and at most one more refilled meanwhile.
    const passed = statuses.filter((code) => code === 200).length;
    expect(passed).toBeGreaterThanOrEqual(MAX_KEYS - 1 + 2);
    expect(passed).toBeLessThanOrEqual(MAX_KEYS - 1 + 3);
    expect(statuses.filter((code) => code !== 200 && code !== 429)).toEqual([]);
  });

  it('keeps two long key values that share their first characters apart (hashed, not cut)', async () => {
    const prefix = 'k'.repeat(200);
    for (const key of [`${prefix}-a`, `${prefix}-b`]) {
      expect([await keyed(proxy, key, false, '/long'), await keyed(proxy, key, false, '/long')]).toEqual([200, 200]);
      expect(await keyed(proxy, key, false, '/long')).toBe(429);
    }
  });
});

describe('forward-proxy targets in the metrics', () => {
  it(`gives 300 distinct targets at most ${MAX_TARGET_SERIES} + 1 upstream series per family`, async () => {
    const ports = Array.from({ length: 300 }, (_, i) => 41000 + i);
    const proxy = await startProxy(`version: 1
logging: { accessLog: false }
defaults: { retry: { maxRetries: 0 }, timeouts: { connect: 200ms } }
forwardProxy: { enabled: true, allowHosts: ["127.0.0.1"], allowPorts: [${ports.join(', ')}] }
routes: [ { name: out } ]
`);
    try {
      // Nothing listens on these ports: each request is one attempt (connect_failure) to its own target.
      await flood(ports.length, 16, (i, agent) => {
        const port = ports[i]!;
        return new Promise((resolve, reject) => {
          const target = new URL(proxy.url);
          const req = http.get(
            {
              host: target.hostname,
              port: target.port,
              path: `http://127.0.0.1:${port}/`,
              agent,
              headers: { host: `127.0.0.1:${port}` },
            },
            (res) => {
              res.resume();
              res.on('end', () => resolve(res.statusCode ?? 0));
            },
          );
          req.on('error', reject);
        });
      });
      const text = (await request(`${proxy.adminUrl}/metrics`)).text;
      const upstreamsOf = (family: string) => {
        const values = new Set<string>();
        let total = 0;
        for (const line of text.split('\n')) {
          if (!line.startsWith(`${family}{`)) continue;
          const value = /upstream="([^"]*)"/.exec(line)?.[1];
          if (value !== undefined) values.add(value);
          total += Number(line.slice(line.lastIndexOf(' ') + 1));
        }
        return { values, total };
      };
      const attempts = upstreamsOf('breakwater_upstream_attempts_total');
      expect(attempts.values.size).toBe(MAX_TARGET_SERIES + 1);
      expect(attempts.values.has(OTHER_TARGETS)).toBe(true);
      expect(attempts.total).toBe(300); // every attempt counted, under its target or under the overflow value
      const durations = upstreamsOf('breakwater_upstream_attempt_duration_seconds_count');
      expect(durations.values.size).toBe(MAX_TARGET_SERIES + 1);
      expect(durations.total).toBe(300);
      for (const family of ['breakwater_circuit_transitions_total', 'breakwater_circuit_rejections_total']) {
        expect(upstreamsOf(family).values.size, family).toBeLessThanOrEqual(MAX_TARGET_SERIES + 1);
      }
    } finally {
      await proxy.close();
    }
  });
});
