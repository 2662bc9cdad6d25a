/**
 * Reading every quota dimension an answer announces (SPEC §15), estimating
 * what a request costs, and reading the usage an answer reports: the pure
 * parts of multi-dimension pacing and cost-weighted limits.
 */
import { describe, expect, it } from 'vitest';
import { readDimensions, MAX_DIMENSIONS } from '../../src/errors/quota-dimensions.js';
import { Sleepers } from '../../src/policy/pacing/preemption.js';
import { Cancellation } from '../../src/lib/signal.js';
import { costReader, estimateTokens, MAX_COST, pacingCostReaders, type CostInput } from '../../src/policy/cost.js';
import { reserveWithin } from '../../src/policy/pacing/quota.js';
import { observe } from '../../src/policy/pacing/announced.js';
import { freshState, type Sent } from '../../src/policy/pacing/store.js';
import { MAX_USAGE, readUsage } from '../../src/policy/usage.js';
import { UpstreamResponse } from '../../src/upstream/response.js';
import type { PacingConfig } from '../../src/config/types.js';

const NOW = Date.parse('2026-12-07T12:00:00Z');
const opts = (dialect: Parameters<typeof readDimensions>[2]['dialect']) => ({
  dialect,
  resetFormat: 'auto' as const,
  quotaHeaders: [],
});

describe('the dimensions an answer announces', () => {
  it('reads OpenAI requests and tokens', () => {
    const found = readDimensions(
      {
        'x-ratelimit-limit-requests': '500',
        'x-ratelimit-remaining-requests': '499',
        'x-ratelimit-reset-requests': '120ms',
        'x-ratelimit-limit-tokens': '30000',
        'x-ratelimit-remaining-tokens': '29000',
        'x-ratelimit-reset-tokens': '2s',
      },
      NOW,
      opts('openai'),
    );
    expect(Object.fromEntries(found)).toEqual({
      requests: { limit: 500, remaining: 499, resetSeconds: 0.12 },
      tokens: { limit: 30000, remaining: 29000, resetSeconds: 2 },
    });
  });

  it('reads Anthropic’s four dimensions, resets against the answer’s Date', () => {
    const headers: Record<string, string> = { date: new Date(NOW + 3_600_000).toUTCString() };
    for (const dimension of ['requests', 'tokens', 'input-tokens', 'output-tokens']) {
      headers[`anthropic-ratelimit-${dimension}-limit`] = '100';
      headers[`anthropic-ratelimit-${dimension}-remaining`] = '40';
      headers[`anthropic-ratelimit-${dimension}-reset`] = new Date(NOW + 3_600_000 + 30_000).toISOString();
    }
    const found = readDimensions(headers, NOW, opts('auto'));
    expect([...found.keys()]).toEqual(['requests', 'tokens', 'input-tokens', 'output-tokens']);
    expect(found.get('output-tokens')).toEqual({ limit: 100, remaining: 40, resetSeconds: 30 });
  });

  it('reads IETF policies by name, and the unnamed fields as requests', () => {
    const found = readDimensions(
      { 'ratelimit-policy': '"rpm";q=500;w=60, "tpm";q=40000;w=60', ratelimit: '"rpm";r=42;t=12, "tpm";r=900;t=12' },
      NOW,
      opts('ietf'),
    );
    expect(Object.fromEntries(found)).toEqual({
      rpm: { limit: 500, remaining: 42, resetSeconds: 12 },
      tpm: { limit: 40000, remaining: 900, resetSeconds: 12 },
    });
    const unnamed = readDimensions(
      { 'ratelimit-limit': '10', 'ratelimit-remaining': '3', 'ratelimit-reset': '5' },
      NOW,
      opts('auto'),
    );
    expect(Object.fromEntries(unnamed)).toEqual({ requests: { limit: 10, remaining: 3, resetSeconds: 5 } });
  });

  it('keeps at most MAX_DIMENSIONS well-formed names from an upstream, and reads nothing from a huge field', () => {
    const items = Array.from({ length: 50 }, (_, i) => `"p${i}";r=1;t=1`);
    const found = readDimensions({ ratelimit: [...items, '"BAD NAME";r=1;t=1'].join(', ') }, NOW, opts('ietf'));
    expect(found.size).toBe(MAX_DIMENSIONS);
    // An object's inherited member is never a dimension (states are kept by name).
    expect([...readDimensions({ ratelimit: '"constructor";r=1;t=1' }, NOW, opts('ietf')).keys()]).not.toContain(
      'constructor',
    );
    // A field past 2 KiB is not split into policies (read as the one unnamed quota at most).
    const huge = readDimensions({ ratelimit: `"a";r=1;t=1,${' '.repeat(5000)}` }, NOW, opts('ietf'));
    expect([...huge.keys()]).toEqual(['requests']);
  });

  it('maps custom headers, which win over the dialect’s dimension of their name', () => {
    const found = readDimensions(
      {
        'x-ratelimit-limit-tokens': '100',
        'x-ratelimit-remaining-tokens': '50',
        'x-points-left': '7',
        'x-points-reset': '9',
        'x-my-tokens': '3',
        'x-my-tokens-reset': '1s',
      },
      NOW,
      {
        dialect: 'openai',
        resetFormat: 'auto',
        quotaHeaders: [
          { dimension: 'points', remaining: 'x-points-left', reset: 'x-points-reset', resetFormat: 'delta' },
          { dimension: 'tokens', remaining: 'x-my-tokens', reset: 'x-my-tokens-reset', resetFormat: 'auto' },
        ],
      },
    );
    expect(found.get('points')).toEqual({ remaining: 7, resetSeconds: 9 });
    expect(found.get('tokens')).toEqual({ remaining: 3, resetSeconds: 1 });
  });
});

/** A request as a cost sees it: buffered `body` (or streamed, with only its length known). */
function input(body: string | null, headers: Record<string, string> = {}, streamed = false): CostInput {
  const buffer = body === null ? undefined : Buffer.from(body);
  return {
    clientHeaders: { ...headers, ...(buffer && { 'content-length': String(buffer.length) }) },
    body: streamed ? { replayable: false, open: () => undefined } : { replayable: true, open: () => buffer },
  };
}

describe('what a request costs', () => {
  it('estimates as the provider counts at admission', () => {
    const body = JSON.stringify({ max_completion_tokens: 100, max_tokens: 7, messages: ['héllo'] });
    const bytes = Buffer.byteLength(body);
    expect(estimateTokens(input(body), 'openai')).toBe(Math.ceil(bytes / 4) + 100);
    expect(estimateTokens(input(body), 'anthropic')).toBe(Math.ceil(bytes / 4) + 7);
    // Not JSON: the bytes only; streamed (beyond bufferLimit): its Content-Length, never read.
    expect(estimateTokens(input('x'.repeat(40)), 'openai')).toBe(10);
    expect(estimateTokens(input('x'.repeat(4000), {}, true), 'openai')).toBe(1000);
  });

  it('reads a header or a JSON field, rounding up; 1 when the source yields nothing', () => {
    expect(costReader('header:x-cost')(input(null, { 'x-cost': '2.5' }))).toBe(3);
    expect(costReader('header:x-cost')(input(null, { 'x-cost': '-4' }))).toBe(1);
    expect(costReader('header:x-cost')(input(null, { 'x-cost': 'lots' }))).toBe(1);
    const json = JSON.stringify({ cost: { requested: 41.2 }, list: [1] });
    expect(costReader('json:cost.requested')(input(json))).toBe(42);
    expect(costReader('json:cost.missing')(input(json))).toBe(1);
    expect(costReader('json:list.length')(input(json))).toBe(1);
    expect(costReader('json:cost')(input('not json'))).toBe(1);
    expect(costReader('json:cost.requested')(input(json, {}, true))).toBe(1);
    // Inherited members are never read.
    expect(costReader('json:constructor.name')(input('{}'))).toBe(1);
  });

  it('charges the anthropic preset in three dimensions', () => {
    const body = JSON.stringify({ max_tokens: 50, messages: ['x'.repeat(64)] });
    const costs = pacingCostReaders('anthropic')!(input(body));
    const inputTokens = Math.ceil(Buffer.byteLength(body) / 4);
    expect(costs).toEqual({ tokens: inputTokens + 50, 'input-tokens': inputTokens, 'output-tokens': 50 });
    expect(pacingCostReaders('none')).toBeNull();
  });
});

const CONFIG: PacingConfig = {
  enabled: true,
  headers: 'openai',
  scope: null,
  key: null,
  resetFormat: 'auto',
  engageBelow: 0.5,
  reserve: 0,
  minRate: 0.2,
  maxWait: 60_000,
  mode: 'enforce',
  replicas: 1,
  shared: false,
  aimd: { decrease: 0.5, increaseBy: 1, increaseEvery: 10_000 },
  cost: 'openai',
  quotaHeaders: [],
};

describe('reserving in several dimensions', () => {
  const announced = {
    'x-ratelimit-limit-requests': '100',
    'x-ratelimit-remaining-requests': '99',
    'x-ratelimit-reset-requests': '2s',
    'x-ratelimit-limit-tokens': '1000',
    'x-ratelimit-remaining-tokens': '300',
    'x-ratelimit-reset-tokens': '2s',
  };
  const none = { requests: 0, costs: {} };
  /** `remaining` of 2,000 tokens left, 10 s to the reset. */
  const spent = (remaining: number) => ({
    ...announced,
    'x-ratelimit-limit-tokens': '2000',
    'x-ratelimit-remaining-tokens': String(remaining),
    'x-ratelimit-reset-tokens': '10s',
  });

  it('goes at once while every dimension has room, waits for the tokens’ reset when they have not', () => {
    const state = freshState(0);
    observe(state, 0, 200, announced, CONFIG, 30_000, NOW);
    // 300 tokens left (below half the limit): 100 tokens spread over the 2 s to the reset.
    const small = reserveWithin(state, 0, none, CONFIG, () => 0.5, 60_000, null, null, { tokens: 100 });
    expect(small.wait).toBe(0);
    const next = reserveWithin(
      state,
      0,
      { requests: 1, costs: { tokens: 100 } },
      CONFIG,
      () => 0.5,
      60_000,
      null,
      null,
      {
        tokens: 100,
      },
    );
    expect(next.wait).toBeGreaterThan(0);
    expect(next.wait).toBeLessThan(2000);
    // 400 tokens do not fit what is left: the reset's waiter, with a ticket in tokens.
    const big = reserveWithin(
      state,
      0,
      { requests: 2, costs: { tokens: 200 } },
      CONFIG,
      () => 0.5,
      60_000,
      null,
      null,
      {
        tokens: 400,
      },
    );
    expect(big.wait).toBeGreaterThanOrEqual(2000);
    expect(Object.keys(big.ticket!)).toEqual(['tokens']);
  });

  it('refuses a cost above the whole window (less the reserve) without taking anything', () => {
    const state = freshState(0);
    observe(state, 0, 200, announced, { ...CONFIG, reserve: 0.1 }, 30_000, NOW);
    const before = JSON.stringify(state);
    const refused = reserveWithin(state, 0, none, { ...CONFIG, reserve: 0.1 }, () => 0.5, 60_000, null, null, {
      tokens: 901,
    });
    expect(refused.tooBig).toEqual({ dimension: 'tokens', cost: 901, limit: 900 });
    expect(JSON.stringify(state)).toBe(before);
  });

  it('holds back no request that costs nothing in a dimension (an app header of 0)', () => {
    const state = freshState(0);
    observe(state, 0, 200, { ...announced, 'x-ratelimit-remaining-tokens': '0' }, CONFIG, 30_000, NOW);
    expect(reserveWithin(state, 0, none, CONFIG, () => 0.5, 60_000, null, null, { tokens: 0 }).wait).toBe(0);
    expect(reserveWithin(state, 0, none, CONFIG, () => 0.5, 60_000, null, null, { tokens: 1 }).wait).toBeGreaterThan(0);
  });

  it('takes what waits for a slot off the window once (ahead on the clock), not off the remaining as well', () => {
    const state = freshState(0);
    // 1,000 of 2,000 tokens left (at engageBelow), 10 s to the reset: 100 a second.
    observe(state, 0, 200, spent(1000), CONFIG, 30_000, NOW, undefined, 0);
    // Six requests of 100 reserve in turn, each behind those before it, still waiting for their slots.
    const waits: number[] = [];
    for (let i = 0; i < 6; i++) {
      const waiting = { requests: i, costs: { tokens: 100 * i }, sent: new Set<Sent>() };
      waits.push(reserveWithin(state, 0, waiting, CONFIG, () => 0.5, 60_000, null, null, { tokens: 100 }).wait);
    }
    // One a second. Taken off the remaining as well, the rate fell with every one waiting (the sixth at 6.5 s).
    expect(waits).toEqual([0, 1000, 2000, 3000, 4000, 5000]);
  });

  it('does not take off the remaining what was sent before the request whose answer announced it', () => {
    const covered = new Set<Sent>(Array.from({ length: 4 }, () => ({ at: 50, costs: { tokens: 100 } })));
    const spacing = (sent: Set<Sent>) => {
      const state = freshState(0);
      // The answer to a request sent at t=100 says 1,000 of 2,000 are left (10 s to the reset).
      observe(state, 200, 200, spent(1000), CONFIG, 30_000, NOW, undefined, 100);
      const load = { requests: sent.size, costs: { tokens: 100 * sent.size }, sent };
      reserveWithin(state, 200, load, CONFIG, () => 0.5, 60_000, null, null, { tokens: 100 });
      return state.dims!.tokens!.nextSlot - 200;
    };
    // Four sent at t=50 are in that remaining: 1,000 over 10 s, the next slot 1 s on (taken off, 1.67 s).
    expect(spacing(covered)).toBeCloseTo(1000, 6);
    // One sent at t=150 is not counted yet: taken off (900 over 10 s).
    expect(spacing(new Set([...covered, { at: 150, costs: { tokens: 100 } }]))).toBeCloseTo((100 * 1000) / 90, 6);
  });

  it('exchanges a sleeper’s slot only with a request that costs the same', () => {
    const sleepers = new Sleepers();
    const slot = { at: 100, goAt: 100, ask: false, ticket: null };
    const later = { at: 900, goAt: 900, ask: false, ticket: null };
    void sleepers.sleep(
      'p',
      { rank: 2, costs: { tokens: 100 }, promoteAt: null, limitAt: 10_000, plan: slot },
      new Cancellation(),
      {
        now: () => 0,
        sleep: () => new Promise(() => {}),
      },
    );
    expect(sleepers.exchange('p', 0, { tokens: 5000 }, later, 0)).toBe(later);
    expect(sleepers.exchange('p', 0, { tokens: 100 }, later, 0)).toBe(slot);
  });

  it('forgets a dimension no answer has named for a minute (an upstream that stopped announcing it)', () => {
    const state = freshState(0);
    // Points announced once: none left, no reset named (nothing to measure it by).
    const config: PacingConfig = {
      ...CONFIG,
      quotaHeaders: [
        { dimension: 'points', limit: 'x-limit', remaining: 'x-points', reset: 'x-points-reset', resetFormat: 'delta' },
      ],
    };
    observe(state, 0, 200, { 'x-limit': '10', 'x-points': '0' }, config, 30_000, NOW);
    expect(reserveWithin(state, 1000, none, config, () => 0.5, 60_000).wait).toBeGreaterThan(1000);
    expect(reserveWithin(state, 61_000, none, config, () => 0.5, 60_000).wait).toBe(0);
  });

  it('holds nothing back in a dimension not announced yet', () => {
    const state = freshState(0);
    const reserved = reserveWithin(state, 0, none, CONFIG, () => 0.5, 60_000, null, null, { tokens: 1_000_000 });
    expect(reserved).toMatchObject({ wait: 0, askAgainIn: null });
  });
});

/** An answer whose body is `chunks`, read as it passes (a usage reader watches it). */
function answer(type: string, chunks: string[]): UpstreamResponse {
  const response = new UpstreamResponse(
    200,
    'OK',
    [Buffer.from('content-type'), Buffer.from(type)],
    () => {},
    () => {},
  );
  const reader = readUsage(response);
  for (const chunk of chunks) response.deliver(Buffer.from(chunk));
  response.finish();
  (response as unknown as { reader: typeof reader }).reader = reader;
  return response;
}
const usageOf = (response: UpstreamResponse) =>
  (response as unknown as { reader: ReturnType<typeof readUsage> }).reader.total();

describe('the usage an answer reports', () => {
  it('reads a JSON body’s usage, total or input plus output', () => {
    expect(usageOf(answer('application/json', ['{"usage":{"total_to', 'kens":120}}']))).toBe(120);
    expect(usageOf(answer('application/json', ['{"usage":{"input_tokens":10,"output_tokens":5}}']))).toBe(15);
    expect(usageOf(answer('application/json', ['{"no":"usage"}']))).toBeUndefined();
    expect(usageOf(answer('text/plain', ['{"usage":{"total_tokens":1}}']))).toBeUndefined();
  });

  it('reads the last event of a stream that carries usage, split anywhere', () => {
    const openai = [
      'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n',
      'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_',
      'tokens":12}}\n\ndata: [DONE]\n\n',
    ];
    expect(usageOf(answer('text/event-stream', openai))).toBe(12);
    // Anthropic: input in message_start, output in the last message_delta.
    const anthropic = [
      'event: message_start\r\ndata: {"message":{"usage":{"input_tokens":25,"output_tokens":1}}}\r\n\r\n',
      'event: message_delta\ndata: {"usage":{"output_tokens":15}}\n\n',
    ];
    expect(usageOf(answer('text/event-stream', anthropic))).toBe(40);
  });

  it('trusts no usage from a stream cut short, nor an impossible number', () => {
    const response = new UpstreamResponse(
      200,
      'OK',
      [Buffer.from('content-type'), Buffer.from('text/event-stream')],
      () => {},
      () => {},
    );
    const reader = readUsage(response);
    // Anthropic's first event names 25 in and 1 out; the client leaves before the last.
    response.deliver(Buffer.from('data: {"message":{"usage":{"input_tokens":25,"output_tokens":1}}}\n\n'));
    expect(reader.total()).toBeUndefined();
    expect(usageOf(answer('application/json', ['{"usage":{"total_tokens":1e308}}']))).toBe(MAX_USAGE);
    expect(costReader('header:x-cost')(input(null, { 'x-cost': '9'.repeat(40) }))).toBe(MAX_COST);
  });

  it('skips an event larger than it reads, and never holds one back', () => {
    const huge = `data: {"usage":{"total_tokens":5},"pad":"${'x'.repeat(300 * 1024)}"}\n\n`;
    expect(usageOf(answer('text/event-stream', [huge]))).toBeUndefined();
  });
});
