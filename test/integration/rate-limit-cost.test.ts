/**
 * Rate limits in a cost unit (SPEC §15 `rateLimit.cost`, `settle`): a
 * per-tenant token budget, local and shared in a real Redis. Each chat
 * request is estimated at 400 tokens (100 of prompt, max_tokens 300)
 * against a burst of 1,000: a tenant's third is refused at once (its wait
 * is known to exceed the queue's timeout), the other tenant's is not; with
 * `settle: usage` the answer's usage (a tenth of the estimate) replaces the
 * charge and more requests go through. A request above the burst can never
 * fit: refused, not retryable.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTokenProvider, type TokenProvider } from '../fixtures/token-provider.js';
import { startRedis, type RedisServer } from '../fixtures/redis.js';
import { expectProblem } from '../helpers/problem.js';
import { request, startProxy, type TestProxy } from '../helpers/proxy.js';

let redis: RedisServer;
let provider: TokenProvider;

beforeAll(async () => {
  redis = await startRedis();
  // Generous provider quotas: only Breakwater's rate limit refuses here.
  provider = await startTokenProvider({
    requests: 10_000,
    tokens: 10_000_000,
    windowMs: 60_000,
    dialect: 'openai',
    usageShare: 0.1,
  });
});

afterAll(async () => {
  await provider.upstream.close();
  await redis.stop();
});

let routes = 0;

/** A proxy whose one route (named `chat-<n>`: a fresh shared bucket in Redis) limits each tenant. */
async function start(shared: boolean, extra = ''): Promise<TestProxy> {
  routes += 1;
  return startProxy(`version: 1
defaults: { retry: { maxRetries: 0 } }
redis: { url: "${redis.url}" }
upstreams: { llm: { url: "${provider.url}" } }
routes:
  - name: chat-${routes}
    upstream: llm
    rateLimit: { rate: 1000/min, burst: 1000, key: "header:x-tenant", cost: openai, shared: ${shared}${extra} }
`);
}

/** A chat request of 400 bytes (100 tokens) asking for at most `maxTokens`; `chunked`: without Content-Length. */
function chat(tenant: string, proxy: TestProxy, maxTokens = 300, chunked = false) {
  const shape = (content: string) => JSON.stringify({ model: 'm', max_tokens: maxTokens, messages: [{ content }] });
  return request(`${proxy.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-tenant': tenant },
    body: shape('x'.repeat(400 - shape('').length)),
    chunked,
  });
}

describe('a chunked body on a route that reads its cost', () => {
  it('is refused with PAYLOAD_TOO_LARGE past retry.bufferLimit, never sent', async () => {
    const proxy = await startProxy(`version: 1
upstreams: { llm: { url: "${provider.url}" } }
routes:
  - name: small
    upstream: llm
    retry: { maxRetries: 0, bufferLimit: 256B }
    rateLimit: { rate: 1000/min, burst: 1000, cost: openai }
`);
    try {
      const before = provider.seen.length;
      const answer = await chat('f', proxy, 300, true);
      const body = expectProblem(answer, 'PAYLOAD_TOO_LARGE', { route: 'small', upstream: 'llm', attempts: 0 });
      expect(body.detail).toMatch(/body of unknown length \(chunked\) must fit retry.bufferLimit \(256 bytes\)/);
      expect(provider.seen.length).toBe(before);
    } finally {
      await proxy.close();
    }
  });
});

describe.each([false, true])('a per-tenant token budget (shared: %s)', (shared) => {
  it("refuses a tenant's third request of 400 tokens against 1,000, at once, and not the other tenant's", async () => {
    const proxy = await start(shared);
    try {
      expect((await chat('a', proxy)).status).toBe(200);
      expect((await chat('a', proxy)).status).toBe(200);
      const started = Date.now();
      const third = await chat('a', proxy);
      // 200 left, 400 needed at 1,000/min: 12 s away, past queue.timeout (2 s): refused without waiting for it.
      expect(Date.now() - started).toBeLessThan(1500);
      expectProblem(third, 'RATE_LIMITED', { route: `chat-${routes}`, upstream: 'llm', attempts: 0 });
      const retryAfter = Number(third.headers['retry-after']);
      expect(retryAfter).toBeGreaterThanOrEqual(11);
      expect(retryAfter).toBeLessThanOrEqual(13);
      expect(third.headers.ratelimit).toMatch(/;r=(19\d|200);/);
      expect((await chat('b', proxy)).status).toBe(200);
    } finally {
      await proxy.close();
    }
  });

  it('lets more through when each answer settles the charge to its usage', async () => {
    const proxy = await start(shared, ', settle: usage');
    try {
      // Each answer used 40 tokens of the 400 charged: the rest comes back once it has ended.
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) statuses.push((await chat('c', proxy)).status);
      expect(statuses).toEqual([200, 200, 200, 200, 200, 200]);
    } finally {
      await proxy.close();
    }
  });

  it('reads the cost of a chunked body too (within bufferLimit), so that none goes uncounted', async () => {
    const proxy = await start(shared);
    try {
      const before = provider.seen.length;
      // Without Content-Length: still read, its 5,100 tokens never fit the burst.
      expectProblem(await chat('e', proxy, 5000, true), 'RATE_LIMITED', {
        route: `chat-${routes}`,
        upstream: 'llm',
        attempts: 0,
        retryable: false,
      });
      expect((await chat('e', proxy, 300, true)).status).toBe(200);
      expect(provider.seen.length).toBe(before + 1);
    } finally {
      await proxy.close();
    }
  });

  it('refuses a request costing more than the burst, not retryable, never sent', async () => {
    const proxy = await start(shared);
    try {
      const before = provider.seen.length;
      const answer = await chat('d', proxy, 5000);
      const body = expectProblem(answer, 'RATE_LIMITED', {
        route: `chat-${routes}`,
        upstream: 'llm',
        attempts: 0,
        retryable: false,
        detail: /costs 5100; .* allows a burst of 1000, so it can never be sent/,
      });
      expect(body.retryAfterSeconds).toBeUndefined();
      expect(provider.seen.length).toBe(before);
    } finally {
      await proxy.close();
    }
  });
});
