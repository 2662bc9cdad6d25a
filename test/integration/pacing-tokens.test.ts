/**
 * Pacing in several dimensions at once (SPEC §15) against a fake LLM
 * provider that enforces requests and tokens per window, charged at
 * admission as OpenAI and Anthropic charge (test/fixtures/token-provider.ts):
 * 20 concurrent requests of about 300 tokens against 2,000 tokens per 2 s
 * window meet no 429 when the pacer charges their estimate, and do when it
 * paces requests only (the control). A request that can never fit the
 * window is refused at once, not retryable.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startTokenProvider, type TokenProvider, type TokenProviderOptions } from '../fixtures/token-provider.js';
import { expectProblem } from '../helpers/problem.js';
import { metricValue, request, startProxy, type TestProxy } from '../helpers/proxy.js';

const WINDOW_MS = 2000;
const TOKENS = 2000;

let provider: TokenProvider | undefined;
let proxy: TestProxy | undefined;

afterEach(async () => {
  await proxy?.close();
  await provider?.upstream.close();
  proxy = undefined;
  provider = undefined;
});

/** The fake provider (100 requests and 2,000 tokens per 2 s window unless `options` says) behind a paced route. */
async function start(
  dialect: 'openai' | 'anthropic',
  pacing: string,
  options: Partial<TokenProviderOptions> = {},
): Promise<void> {
  provider = await startTokenProvider({ requests: 100, tokens: TOKENS, windowMs: WINDOW_MS, dialect, ...options });
  proxy = await startProxy(`version: 1
defaults: { retry: { maxRetries: 0 }, timeouts: { perTry: 30s, total: 60s } }
upstreams:
  llm:
    url: "${provider.url}"
    circuitBreaker: { failureRate: 100 }
    pacing: ${pacing}
routes:
  - { name: chat, upstream: llm }
`);
}

/** A chat request: 400 bytes of prompt (100 tokens) and max_tokens 200: about 300 tokens at admission. */
function chat(maxTokens = 200): string {
  const shape = (content: string) =>
    JSON.stringify({ model: 'm', max_tokens: maxTokens, messages: [{ role: 'user', content }] });
  return shape('x'.repeat(400 - shape('').length));
}

async function post(body: string) {
  return request(`${proxy!.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
  });
}

/** One request to learn the quota, then 20 at once; their statuses and the time they took. */
async function burst(): Promise<{ statuses: number[]; elapsedMs: number }> {
  expect((await post(chat())).status).toBe(200);
  const started = Date.now();
  const answers = await Promise.all(Array.from({ length: 20 }, () => post(chat())));
  return { statuses: answers.map((a) => a.status), elapsedMs: Date.now() - started };
}

describe('pacing on tokens as well as requests', () => {
  // Anthropic's headers on the same load: test/contract/pacing-docs.test.ts runs the docs' Anthropic example.
  for (const dialect of ['openai'] as const) {
    it(`releases 20 requests of ~300 tokens against 2,000 per window without a 429 (${dialect})`, async () => {
      await start(dialect, `{ enabled: true, headers: ${dialect}, cost: ${dialect}, maxWait: 30s }`);
      const { statuses, elapsedMs } = await burst();
      expect(provider!.tooMany()).toBe(0);
      expect(statuses.filter((s) => s === 200)).toHaveLength(20);
      // 21 x 300 tokens at 1,900 a window (5 % reserve): about 3.3 windows, the ideal ~6 s from the burst;
      // within 2.5x that, on a loaded machine.
      expect(elapsedMs).toBeLessThan(2.5 * ((20 * 300) / TOKENS) * WINDOW_MS);
      const paced = proxy!.accessLogs().filter((line) => (line.flags as string[]).includes('PACED')).length;
      expect(paced).toBeGreaterThan(0);
      // Each window's tokens went to the requests that fit them.
      const perWindow = new Map<number, number>();
      for (const seen of provider!.seen) perWindow.set(seen.window, (perWindow.get(seen.window) ?? 0) + seen.charge);
      for (const tokens of perWindow.values()) expect(tokens).toBeLessThanOrEqual(TOKENS);
    }, 40_000);
  }

  it('keeps a window of slow and fast answers free of 429s and at least 80 % used, counting what is in flight once', async () => {
    // Answers take 800 ms (a JSON generation) and announce the quota as it stands then: the requests in flight
    // were charged at admission and are in that remaining already.
    await start('openai', '{ enabled: true, headers: openai, cost: openai, maxWait: 30s, reserve: 0% }', {
      tokens: 3000,
      windowMs: 3000,
      latencyMs: 800,
    });
    // One every 100 ms for 3.6 s: 36 requests of ~300 tokens against 3,000 a 3 s window (1.2 times the quota).
    const answers: Promise<unknown>[] = [];
    for (let i = 0; i < 36; i++) {
      answers.push(post(chat()));
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await Promise.all(answers);
    expect(provider!.tooMany()).toBe(0);
    // A remaining that already counts the slow requests in flight must not let more through (429s), nor hold
    // back what fits: the first window takes at least 80 % of its tokens (measured 90 %).
    const first = provider!.seen.filter((seen) => seen.window === 0).reduce((sum, seen) => sum + seen.charge, 0);
    expect(first).toBeGreaterThanOrEqual(0.8 * 3000);
  }, 40_000);

  it('draws 429s from the same load paced on requests only (the control)', async () => {
    await start('openai', '{ enabled: true, headers: openai, maxWait: 30s }');
    const { statuses } = await burst();
    expect(provider!.tooMany()).toBeGreaterThan(0);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(0);
  }, 40_000);

  it('refuses at once a request whose estimate exceeds the whole window, never sending it', async () => {
    await start('openai', '{ enabled: true, headers: openai, cost: openai, maxWait: 30s }');
    expect((await post(chat())).status).toBe(200);
    const started = Date.now();
    const answer = await post(chat(5000));
    expect(Date.now() - started).toBeLessThan(1000);
    const body = expectProblem(answer, 'RATE_LIMITED', {
      route: 'chat',
      upstream: 'llm',
      attempts: 0,
      retryable: false,
      detail: /costs 5100 tokens; .* is 1900 per window, so it can never be sent/,
    });
    expect(answer.headers['retry-after']).toBeUndefined();
    expect(body.retryAfterSeconds).toBeUndefined();
    expect(provider!.seen).toHaveLength(1);
    // The journal says the same.
    const journal = (await request(`${proxy!.adminUrl}/errors`)).json<{ errors: { retryable: boolean }[] }>();
    expect(journal.errors[0]!.retryable).toBe(false);
  });

  it('shows each dimension in /status and in the quota gauge', async () => {
    await start('openai', '{ enabled: true, headers: openai, cost: openai }');
    expect((await post(chat())).status).toBe(200);
    const status = (await request(`${proxy!.adminUrl}/status`)).json<{
      upstreams: {
        pacing: {
          remaining: number;
          dimensions: Record<string, { limit: number; remaining: number; inFlight: number }>;
        }[];
      }[];
    }>();
    const pacer = status.upstreams[0]!.pacing[0]!;
    expect(pacer.dimensions.tokens).toMatchObject({ limit: TOKENS, remaining: TOKENS - 300, inFlight: 0 });
    expect(pacer.dimensions.requests).toMatchObject({ limit: 100, remaining: 99 });
    expect(pacer.remaining).toBe(99);
    const tokens = await metricValue(proxy!.metrics, 'breakwater_upstream_quota_remaining', {
      upstream: 'llm',
      scope: '',
      dimension: 'tokens',
    });
    expect(tokens).toBe(TOKENS - 300);
  });
});
