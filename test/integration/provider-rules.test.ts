/**
 * Provider-aware decisions (SPEC §14) against a scripted fake provider on
 * real sockets: for every row of the table, the attempts the provider saw,
 * what the app got, and what the breaker and pacer did; the controls
 * (a plain 429, a 400 validation error, a 403 forbidden) as before;
 * errorRules and providerRules: off. Delays run on a clock whose sleeps
 * pass at once and are recorded.
 */
import type { IncomingMessage } from 'node:http';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, type Behaviour, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { skippingClock, type SkippingClock } from '../helpers/clock.js';
import { metricValue, request, startProxy, type TestProxy } from '../helpers/proxy.js';

const scripts = new Map<string, (k: number, req: IncomingMessage) => Behaviour>();
const seen = new Map<string, number>();
const hits = (path: string) => seen.get(path) ?? 0;
let provider: FaultUpstream;
let proxy: TestProxy;
let clock: SkippingClock;

const json = (status: number, body: unknown, headers: Record<string, string> = {}): Behaviour => ({
  kind: 'respond',
  status,
  headers: { 'content-type': 'application/json', ...headers },
  body: JSON.stringify(body),
});
const ok: Behaviour = { kind: 'respond', status: 200, body: 'ok' };
/** The k-th answer from the list, the last one repeated. */
const then =
  (...answers: Behaviour[]) =>
  (k: number): Behaviour =>
    answers[Math.min(k, answers.length) - 1]!;

const OPENAI_QUOTA = {
  error: {
    message: 'You exceeded your current quota, please check your plan and billing details.',
    type: 'insufficient_quota',
    param: null,
    code: 'insufficient_quota',
  },
};
const OPENAI_RATE = {
  error: { message: 'Rate limit reached for requests', type: 'requests', param: null, code: 'rate_limit_exceeded' },
};
const GITHUB_SECONDARY = {
  message: 'You have exceeded a secondary rate limit. Please wait a few minutes before you try again.',
  documentation_url: 'https://docs.github.com/rest/overview/rate-limits-for-the-rest-api',
};
const GITHUB_FORBIDDEN = {
  message: 'Resource not accessible by integration',
  documentation_url: 'https://docs.github.com/rest',
};
const AWS_THROTTLED = {
  __type: 'com.amazonaws.dynamodb.v20120810#ThrottlingException',
  message: 'Rate of requests exceeds the allowed throughput.',
};
const AWS_INVALID = { __type: 'com.amazon.coral.validate#ValidationException', message: '1 validation error detected' };
const GOOGLE_RATE = {
  error: {
    code: 403,
    message: 'Rate Limit Exceeded',
    status: 'PERMISSION_DENIED',
    errors: [{ reason: 'rateLimitExceeded', domain: 'usageLimits', message: 'Rate Limit Exceeded' }],
  },
};
const STRIPE_DECLINED = {
  error: {
    type: 'card_error',
    code: 'card_declined',
    decline_code: 'generic_decline',
    message: 'Your card was declined.',
    doc_url: 'https://stripe.com/docs/error-codes/card-declined',
  },
};

/** One upstream (its own breaker and pacer) and one route per case, all to the same fake provider. */
const CASES = [
  'quota',
  'plain429',
  'primary',
  'secondary',
  'aws',
  'google',
  'anthropic',
  'stripe',
  'shouldno',
  'shouldyes',
  'control',
  'rules',
  'off',
  'proxy',
];

beforeAll(async () => {
  provider = await startFaultUpstream((_n, req) => {
    const path = (req.url ?? '').split('?')[0]!;
    const k = (seen.get(path) ?? 0) + 1;
    seen.set(path, k);
    return scripts.get(path)?.(k, req) ?? ok;
  });
  clock = skippingClock();
  const breaker =
    '{ failureRate: 50, minimumRequests: 4, openFor: 30s, maxOpenFor: 30s, hold: 0s, shedding: { enabled: false }, failOn: [5xx, "429", "402"] }';
  const upstream = (name: string, extra = '', cb = breaker) =>
    `  ${name}: { url: "${provider.url}", circuitBreaker: ${cb}${extra} }`;
  proxy = await startProxy(
    `version: 1
defaults:
  retry: { maxRetries: 2, retryOn: [gateway-error, connect-failure, reset, "429"], backoff: { base: 1ms, max: 2ms }, retryAfter: { max: 120s } }
  timeouts: { total: 300s }
  errors: { normalize: all }
upstreams:
${upstream('anthropic', '', breaker.replace('minimumRequests: 4', 'minimumRequests: 6'))}
${CASES.filter((name) => !['quota', 'primary', 'rules', 'plain429', 'anthropic'].includes(name))
  .map((name) => upstream(name))
  .join('\n')}
${upstream('quota', ', pacing: { enabled: true, headers: openai }')}
${upstream('plain429', ', pacing: { enabled: true, headers: openai }')}
${upstream('primary', ', pacing: { enabled: true, headers: x-ratelimit, resetFormat: epoch }')}
${upstream(
  'rules',
  `, errorRules: [
      { when: { status: 400, code: QuotaLow }, as: "429" },
      { when: { header: { x-app-fault: "yes" } }, retryable: false, breakerFailure: false, responsibility: client },
      { when: { message: "try later" }, retryable: true },
      { when: { status: 418 }, breakerFailure: true } ]`,
)}
routes:
${CASES.map((name) => `  - { name: ${name}, match: { pathPrefix: /${name} }, upstream: ${name}${name === 'off' ? ', errors: { normalize: all, providerRules: off }' : name === 'proxy' ? ', errors: { normalize: proxy }' : ''} }`).join('\n')}
`,
    { clock },
  );
});

afterAll(async () => {
  await proxy.close();
  await provider.close();
});

const transitions = (upstream: string, to = 'open') =>
  metricValue(proxy.metrics, 'breakwater_circuit_transitions_total', { upstream, to });
const access = (path: string) =>
  proxy
    .accessLogs()
    .filter((line) => line.path === path)
    .at(-1)!;

describe('the built-in table', () => {
  it('answers an OpenAI insufficient_quota 429 at once: UPSTREAM_QUOTA_EXHAUSTED, the client’s, no breaker failure, no pacing', async () => {
    const path = '/quota/v1/chat';
    scripts.set(path, () => json(429, OPENAI_QUOTA, { 'retry-after': '20' }));
    const pausesBefore = await metricValue(proxy.metrics, 'breakwater_pacing_pauses_total', { upstream: 'quota' });
    for (let i = 0; i < 6; i++) {
      const res = await request(`${proxy.url}${path}`);
      expect(res.status).toBe(429);
      const body = res.json();
      expect(body).toMatchObject({
        code: 'UPSTREAM_QUOTA_EXHAUSTED',
        responsibility: 'client',
        retryable: false,
        source: 'upstream',
        attempts: 1,
      });
      expect(body.hint).toMatch(/billing/);
      expect((body.provider as Record<string, unknown>).code).toBe('insufficient_quota');
    }
    expect(hits(path)).toBe(6);
    expect(await transitions('quota')).toBe(0);
    expect(await metricValue(proxy.metrics, 'breakwater_pacing_pauses_total', { upstream: 'quota' })).toBe(
      pausesBefore,
    );
    expect(access(path)).toMatchObject({ rule: 'openai-insufficient-quota', attempts: 1 });
    expect(access(path).flags).toContain('PROVIDER_RULE');
  });

  it('control: a plain 429 (rate_limit_exceeded) is retried after its Retry-After and counted as before', async () => {
    const path = '/plain429/v1/chat';
    scripts.set(path, then(json(429, OPENAI_RATE, { 'retry-after': '2' }), ok));
    const sleeps = clock.sleeps.length;
    const res = await request(`${proxy.url}${path}`);
    expect(res.status).toBe(200);
    expect(hits(path)).toBe(2);
    expect(clock.sleeps.slice(sleeps)).toEqual([2000]);
    expect(access(path).flags).not.toContain('PROVIDER_RULE');
    expect(access(path).rule).toBeUndefined();
  });

  it("treats GitHub's 403 with X-RateLimit-Remaining: 0 as a 429: retried after X-RateLimit-Reset, the pacer paused", async () => {
    const path = '/primary/repos/x';
    const date = new Date(Math.floor(clock.wall() / 1000) * 1000);
    const reset = String(Math.floor(date.getTime() / 1000) + 30);
    scripts.set(
      path,
      then(
        json(
          403,
          { message: 'API rate limit exceeded', documentation_url: 'https://docs.github.com' },
          {
            'x-ratelimit-remaining': '0',
            'x-ratelimit-limit': '5000',
            'x-ratelimit-reset': reset,
            date: date.toUTCString(),
          },
        ),
        ok,
      ),
    );
    const pausesBefore = await metricValue(proxy.metrics, 'breakwater_pacing_pauses_total', { upstream: 'primary' });
    const sleeps = clock.sleeps.length;
    const res = await request(`${proxy.url}${path}`);
    expect(res.status).toBe(200);
    expect(hits(path)).toBe(2);
    // The retry waited for the reset, read against the answer's Date (30 s; the pacer may add its jitter).
    const waited = clock.sleeps.slice(sleeps).reduce((sum, ms) => sum + ms, 0);
    expect(waited).toBeGreaterThanOrEqual(29_000);
    expect(waited).toBeLessThan(31_000 + 200);
    expect(await metricValue(proxy.metrics, 'breakwater_pacing_pauses_total', { upstream: 'primary' })).toBe(
      pausesBefore + 1,
    );
    expect(access(path)).toMatchObject({ rule: 'github-primary-rate-limit', attempts: 2, status: 200 });
  });

  it("treats GitHub's secondary rate limit as a 429 with Retry-After 60 s when none is sent", async () => {
    const path = '/secondary/search';
    scripts.set(path, then(json(403, GITHUB_SECONDARY), ok));
    const sleeps = clock.sleeps.length;
    const res = await request(`${proxy.url}${path}`);
    expect(res.status).toBe(200);
    expect(hits(path)).toBe(2);
    expect(clock.sleeps.slice(sleeps)).toEqual([60_000]);
  });

  it('answers a secondary limit it cannot wait for with UPSTREAM_RATE_LIMITED and retryAfterSeconds', async () => {
    const path = '/secondary/always';
    scripts.set(path, () => json(429, GITHUB_SECONDARY, { 'retry-after': '600' }));
    const res = await request(`${proxy.url}${path}`);
    expect(res.status).toBe(429);
    expect(res.json()).toMatchObject({
      code: 'UPSTREAM_RATE_LIMITED',
      retryable: true,
      retryAfterSeconds: 600,
      attempts: 1,
    });
    expect(hits(path)).toBe(1);
  });

  it('control: a GitHub 403 without a rate limit passes as FORBIDDEN, not retried', async () => {
    const path = '/secondary/forbidden';
    scripts.set(path, () => json(403, GITHUB_FORBIDDEN));
    const res = await request(`${proxy.url}${path}`);
    expect(res.status).toBe(403);
    expect(res.json()).toMatchObject({ code: 'FORBIDDEN', retryable: false, attempts: 1 });
    expect(hits(path)).toBe(1);
  });

  it('retries an AWS 400 ThrottlingException with backoff; control: a 400 ValidationException is not retried', async () => {
    const path = '/aws/';
    scripts.set(path, then(json(400, AWS_THROTTLED, { 'content-type': 'application/x-amz-json-1.0' }), ok));
    const res = await request(`${proxy.url}${path}`, {
      method: 'POST',
      body: '{}',
      headers: { 'idempotency-key': 'k' },
    });
    expect(res.status).toBe(200);
    expect(hits(path)).toBe(2);
    const invalid = '/aws/invalid';
    scripts.set(invalid, () => json(400, AWS_INVALID, { 'content-type': 'application/x-amz-json-1.0' }));
    const bad = await request(`${proxy.url}${invalid}`);
    expect(bad.status).toBe(400);
    expect(bad.json()).toMatchObject({ code: 'BAD_REQUEST', retryable: false, attempts: 1 });
    expect(hits(invalid)).toBe(1);
  });

  it('retries a Google 403 rateLimitExceeded as a 429', async () => {
    const path = '/google/drive/v3/files';
    scripts.set(path, then(json(403, GOOGLE_RATE), json(403, GOOGLE_RATE), ok));
    const res = await request(`${proxy.url}${path}`);
    expect(res.status).toBe(200);
    expect(hits(path)).toBe(3);
    expect(access(path)).toMatchObject({ rule: 'google-rate-limit', attempts: 3 });
  });

  it("retries Anthropic's 529 as a 503 and counts it against the breaker", async () => {
    const overloaded: Behaviour = {
      kind: 'respond',
      status: 529,
      headers: { 'content-type': 'application/json' },
      body: '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
    };
    // Three failed attempts (of the 6 the breaker needs): the app gets the 529 as UPSTREAM_UNAVAILABLE.
    const once = '/anthropic/once';
    scripts.set(once, () => overloaded);
    const failed = await request(`${proxy.url}${once}`);
    expect(failed.status).toBe(529);
    expect(failed.json()).toMatchObject({
      code: 'UPSTREAM_UNAVAILABLE',
      responsibility: 'upstream',
      retryable: true,
      attempts: 3,
    });
    const path = '/anthropic/v1/messages';
    scripts.set(path, then(overloaded, ok));
    expect((await request(`${proxy.url}${path}`)).status).toBe(200);
    expect(hits(path)).toBe(2);
    expect(await transitions('anthropic')).toBe(0);
    // One more 529 makes 5 failures of the last 6 calls: the breaker opens and the retry is refused.
    const down = '/anthropic/down';
    scripts.set(down, () => overloaded);
    const refused = await request(`${proxy.url}${down}`);
    expect(refused.status).toBe(503);
    expect(refused.headers['x-breakwater-error']).toBe('CIRCUIT_OPEN');
    expect(await transitions('anthropic')).toBe(1);
  });

  it("answers a Stripe card_declined 402 at once as the client's, never a breaker failure (even with 402 in failOn)", async () => {
    const path = '/stripe/v1/charges';
    scripts.set(path, () => json(402, STRIPE_DECLINED));
    for (let i = 0; i < 6; i++) {
      const res = await request(`${proxy.url}${path}`, {
        method: 'POST',
        body: '{}',
        headers: { 'idempotency-key': `c${i}` },
      });
      expect(res.status).toBe(402);
      const body = res.json();
      expect(body).toMatchObject({
        code: 'UPSTREAM_CLIENT_ERROR',
        responsibility: 'client',
        retryable: false,
        attempts: 1,
      });
      expect((body.provider as Record<string, unknown>).code).toBe('card_declined');
    }
    expect(hits(path)).toBe(6);
    expect(await transitions('stripe')).toBe(0);
  });

  it('obeys X-Should-Retry: false on a 503 and Stripe-Should-Retry: true on a 409', async () => {
    const no = '/shouldno/x';
    scripts.set(no, () => ({ kind: 'respond', status: 503, headers: { 'x-should-retry': 'false' }, body: 'no' }));
    expect((await request(`${proxy.url}${no}`)).status).toBe(503);
    expect(hits(no)).toBe(1);
    expect(access(no).rule).toBe('should-retry-false');
    const yes = '/shouldyes/x';
    scripts.set(
      yes,
      then({ kind: 'respond', status: 409, headers: { 'stripe-should-retry': 'true' }, body: 'lock' }, ok),
    );
    expect(
      (await request(`${proxy.url}${yes}`, { method: 'POST', body: '{}', headers: { 'idempotency-key': 'y' } })).status,
    ).toBe(200);
    expect(hits(yes)).toBe(2);
    // Still within the retry rules: a POST without Idempotency-Key is not sent again.
    const unsafe = '/shouldyes/unsafe';
    scripts.set(unsafe, then({ kind: 'respond', status: 409, headers: { 'stripe-should-retry': 'true' } }, ok));
    expect((await request(`${proxy.url}${unsafe}`, { method: 'POST', body: '{}' })).status).toBe(409);
    expect(hits(unsafe)).toBe(1);
  });

  it('control: a 404 is not read for rules and passes as before', async () => {
    const path = '/control/missing';
    scripts.set(path, () => json(404, { message: 'Not Found' }));
    const res = await request(`${proxy.url}${path}`);
    expect(res.json()).toMatchObject({ code: 'NOT_FOUND', attempts: 1 });
    expect(access(path).flags).not.toContain('PROVIDER_RULE');
  });
});

describe('errorRules and providerRules: off', () => {
  it('matches on status and code, and treats the answer as the status it names', async () => {
    const path = '/rules/code';
    scripts.set(path, then(json(400, { message: 'quota low', code: 'QuotaLow' }), ok));
    expect((await request(`${proxy.url}${path}`)).status).toBe(200);
    expect(hits(path)).toBe(2);
    expect(access(path).rule).toBe('errorRules[0]');
  });

  it('matches on a header: not retried, not a breaker failure, the client’s', async () => {
    const path = '/rules/header';
    scripts.set(path, () => ({ kind: 'respond', status: 503, headers: { 'x-app-fault': 'YES' }, body: 'bad input' }));
    for (let i = 0; i < 5; i++) {
      const res = await request(`${proxy.url}${path}`);
      expect(res.json()).toMatchObject({
        code: 'UPSTREAM_UNAVAILABLE',
        responsibility: 'client',
        retryable: false,
        attempts: 1,
      });
    }
    expect(hits(path)).toBe(5);
    expect(await transitions('rules')).toBe(0);
  });

  it('matches on a message substring: retried although 422 is not in retryOn', async () => {
    const path = '/rules/message';
    scripts.set(path, then(json(422, { message: 'Busy, TRY LATER please' }), ok));
    expect((await request(`${proxy.url}${path}`)).status).toBe(200);
    expect(hits(path)).toBe(2);
  });

  it('makes a breaker failure of what failOn does not name', async () => {
    const path = '/rules/teapot';
    scripts.set(path, () => ({ kind: 'respond', status: 418, body: 'teapot' }));
    for (let i = 0; i < 4; i++) await request(`${proxy.url}${path}`);
    expect(await transitions('rules')).toBe(1);
  });

  it('providerRules: off retries an insufficient_quota 429 like any 429', async () => {
    const path = '/off/v1/chat';
    scripts.set(path, () => json(429, OPENAI_QUOTA));
    const res = await request(`${proxy.url}${path}`);
    expect(res.json()).toMatchObject({ code: 'UPSTREAM_RATE_LIMITED', attempts: 3 });
    expect(hits(path)).toBe(3);
  });
});

describe('the answer itself', () => {
  it('passes the provider’s bytes through unchanged with normalize: proxy, gzip included, while the decision still applies', async () => {
    const path = '/proxy/v1/chat';
    const gzipped = gzipSync(JSON.stringify(OPENAI_QUOTA));
    scripts.set(path, () => ({
      kind: 'respond',
      status: 429,
      headers: {
        'content-type': 'application/json',
        'content-encoding': 'gzip',
        'content-length': String(gzipped.length),
      },
      body: gzipped,
    }));
    const res = await request(`${proxy.url}${path}`, { headers: { 'accept-encoding': 'gzip' } });
    expect(res.status).toBe(429);
    expect(res.headers['content-encoding']).toBe('gzip');
    expect(Buffer.compare(res.body, gzipped)).toBe(0);
    expect(hits(path)).toBe(1);
    expect(access(path)).toMatchObject({ rule: 'openai-insufficient-quota' });
  });

  it('sends a large error body whole: the read part first, then the rest', async () => {
    const path = '/proxy/v1/big';
    const big = JSON.stringify({
      error: { type: 'insufficient_quota', code: 'insufficient_quota', param: null, message: 'x'.repeat(400_000) },
    });
    scripts.set(path, () => ({
      kind: 'respond',
      status: 429,
      headers: { 'content-type': 'application/json' },
      body: big,
    }));
    const res = await request(`${proxy.url}${path}`);
    expect(res.status).toBe(429);
    expect(res.text).toBe(big);
  });
});

describe('reading an error answer safely', () => {
  let guarded: TestProxy;
  beforeAll(async () => {
    guarded = await startProxy(`version: 1
upstreams: { g: { url: "${provider.url}", circuitBreaker: { failureRate: 100 } } }
routes:
  - { name: g, upstream: g, timeouts: { perTry: 300ms, total: 2s }, retry: { maxRetries: 0 } }
`);
  });
  afterAll(() => guarded.close());

  it('cuts a stalled error body at the per-try deadline: UPSTREAM_TIMEOUT, no hang', async () => {
    const path = '/stalled';
    // A 429 the OpenAI rule must read: its body starts and then stalls.
    scripts.set(path, () => ({
      kind: 'custom',
      handle: (_req, res) => res.writeHead(429, { 'content-type': 'application/json' }).write('{"error": {'),
    }));
    const started = Date.now();
    const res = await request(`${guarded.url}${path}`);
    expect(res.status).toBe(504);
    expect(res.headers['x-breakwater-error']).toBe('UPSTREAM_TIMEOUT');
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('decodes at most the cap of a compressed error body (a 20 MB gzip bomb is answered, not expanded)', async () => {
    const path = '/bomb';
    const bomb = gzipSync(Buffer.alloc(20 * 1024 * 1024, 0x20));
    scripts.set(path, () => ({
      kind: 'respond',
      status: 400,
      headers: {
        'content-type': 'application/json',
        'content-encoding': 'gzip',
        'content-length': String(bomb.length),
      },
      body: bomb,
    }));
    const before = process.memoryUsage().rss;
    const res = await request(`${guarded.url}${path}`, { headers: { 'accept-encoding': 'gzip' } });
    expect(res.status).toBe(400);
    expect(Buffer.compare(res.body, bomb)).toBe(0);
    // Decoding it whole would have taken 20 MB more at least.
    expect(process.memoryUsage().rss - before).toBeLessThan(15 * 1024 * 1024);
  });
});
