/**
 * The pacer's arithmetic on a virtual clock (no real time passes): who waits
 * for which reset, and the refill rate measured for quotas that name no
 * reset. The fixed-window and leaking-bucket behaviour end to end is in
 * test/integration/pacing.test.ts.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { describe, expect, it } from 'vitest';
import type { PacingConfig } from '../../src/config/types.js';
import { createMetrics } from '../../src/observe/metrics.js';
import type { AttemptResult, RequestContext } from '../../src/policy/context.js';
import { createUpstreamPacing } from '../../src/policy/pacing/pacer.js';
import { reserveWithin } from '../../src/policy/pacing/quota.js';
import { observe } from '../../src/policy/pacing/announced.js';
import { freshState } from '../../src/policy/pacing/store.js';
import { Cancellation } from '../../src/lib/signal.js';
import type { UpstreamResponse } from '../../src/upstream/response.js';

/** `requests` in flight, no other cost. */
const load = (requests: number) => ({ requests, costs: {} });

const CONFIG: PacingConfig = {
  enabled: true,
  headers: 'auto',
  scope: null,
  key: null,
  resetFormat: 'auto',
  engageBelow: 0.5,
  reserve: 0.05,
  minRate: 0.2,
  maxWait: 60_000,
  mode: 'enforce',
  replicas: 1,
  shared: false,
  cost: 'none',
  quotaHeaders: [],
  aimd: { decrease: 0.5, increaseBy: 1, increaseEvery: 10_000 },
};

function harness(config: Partial<PacingConfig> = {}, deadlineMs = Infinity, advance = false) {
  let clock = 0;
  const waits: number[] = [];
  /** The clock when each request went upstream. */
  const sent: number[] = [];
  const pacing = createUpstreamPacing('up', { ...CONFIG, ...config }, 30_000, {
    now: () => clock,
    wall: () => 1_800_000_000_000 + clock,
    random: () => 0.5, // jitter 100 ms
    // With `advance`, a sleep moves the clock on to its end (never back): a request told to ask again asks then.
    sleep: async (ms) => {
      waits.push(ms);
      if (!advance) return;
      const until = clock + ms;
      await null;
      clock = Math.max(clock, until);
    },
    metrics: createMetrics(),
  });
  const policy = pacing.policy('api');
  const send = (headers: IncomingHttpHeaders | undefined, status = 200) => {
    const ctx = {
      clientHeaders: {},
      path: '/x',
      flags: new Set(),
      deadline: clock + deadlineMs,
    } as unknown as RequestContext;
    return policy.run(ctx, new Cancellation(), async (): Promise<AttemptResult> => {
      sent.push(clock);
      return {
        classification: { status } as AttemptResult['classification'],
        response: headers ? ({ headers } as UpstreamResponse) : undefined,
      };
    });
  };
  return { pacing, waits, sent, send, at: (t: number) => (clock = t) };
}

describe('pacer', () => {
  it('gives each window after a reset to as many waiters as its quota allows; the rest ask again at the reset', async () => {
    const { waits, sent, send } = harness({}, Infinity, true);
    await send({ 'x-ratelimit-limit': '5', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '2' });
    expect(waits).toEqual([]);
    await Promise.all(Array.from({ length: 12 }, () => send(undefined)));
    // 5 per window less the 5 % reserve: 4 per window. The first four go at
    // the reset (2 s), spread over 50-125 ms in the order they came; the
    // others are given no slot in a later window (its start is only
    // estimated) but ask again at each reset, keeping their place.
    // (Here a sleep moves the one clock on for all: each window's four go when the last of them woke, 125 ms after its reset.)
    expect(sent).toEqual([0, ...[2125, 4250, 6375].flatMap((t) => [t, t, t, t])]);
  });

  it('adds no wait while the remaining share is above engageBelow', async () => {
    const { waits, send } = harness();
    await send({ 'x-ratelimit-limit': '100', 'x-ratelimit-remaining': '60', 'x-ratelimit-reset': '10' });
    await Promise.all(Array.from({ length: 5 }, () => send(undefined)));
    expect(waits).toEqual([]);
  });

  it('below engageBelow, spreads the effective remaining over the time to the reset', async () => {
    const { waits, send } = harness();
    await send({ 'x-ratelimit-limit': '100', 'x-ratelimit-remaining': '25', 'x-ratelimit-reset': '10' });
    await Promise.all(Array.from({ length: 3 }, () => send(undefined)));
    // effective = 25 - 5 reserve (nothing sent that the remaining does not count): 20 over 10 s, 2 a second.
    // The first goes at once and reserves the next slot 1/2 s on; what waits for a slot is ahead of a newcomer on
    // the release clock, not taken off the remaining as well (it was, before: 1/1.9 s for the third).
    expect(waits).toHaveLength(2);
    expect(waits[0]).toBeCloseTo(500, 6);
    expect(waits[1]).toBeCloseTo(1000, 6);
  });

  it('measures the refill of a quota that names no reset (Shopify used/max) and paces at it', async () => {
    const { pacing, waits, send, at } = harness();
    const shopify = (used: number) => ({ 'x-shopify-shop-api-call-limit': `${used}/20` });
    at(0);
    await send(shopify(10));
    at(500);
    await send(shopify(11));
    await send(shopify(12));
    await send(shopify(13));
    at(1000);
    // 4 answered since the first sample, remaining 10 -> 8: it refilled 2 in 1 s.
    await send(shopify(12));
    expect(pacing.snapshot()[0]!.ratePerSecond).toBeCloseTo(2, 6);
    waits.length = 0;
    at(3000); // past the slots reserved while it was learning
    // 8 of 20 left (below 50 %): released at 2 per second.
    await Promise.all(Array.from({ length: 3 }, () => send(undefined)));
    expect(waits).toEqual([500, 1000]);
  });

  it('refuses a wait beyond maxWait with RATE_LIMITED and Retry-After', async () => {
    const { send } = harness({ maxWait: 5000 });
    await send({ 'x-ratelimit-limit': '100', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '30' });
    await expect(send(undefined)).rejects.toMatchObject({ code: 'RATE_LIMITED', retryAfterSeconds: 31 });
  });

  it('refused requests take no slot: a request near the reset is still admitted', async () => {
    const { waits, send, at } = harness({ maxWait: 5000 });
    await send({ 'x-ratelimit-limit': '10', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '60' });
    // 50 requests in the first minute would each wait past maxWait: refused.
    for (let i = 0; i < 50; i++) {
      at(i * 1000);
      await expect(send(undefined)).rejects.toMatchObject({ code: 'RATE_LIMITED' });
    }
    // 1 s before the reset, the wait is short: admitted, first in the next window (50 ms after its reset).
    at(59_000);
    await send(undefined);
    expect(waits).toEqual([1050]);
  });

  it('slots reserved at an older, slower pace do not hold back later requests', async () => {
    const { waits, send, at } = harness({ maxWait: 60_000 });
    await send({ 'x-ratelimit-limit': '100', 'x-ratelimit-remaining': '10', 'x-ratelimit-reset': '60' });
    // 10 left, 5 reserved, 60 s to go: 0.2/s (minRate): slots 5 s apart.
    await send(undefined);
    await send(undefined);
    expect(waits).toEqual([5000]);
    // Sequential requests keep the pace: sent when its slot came (5 s), the next one's slot is at 10 s.
    at(5000);
    await send(undefined);
    expect(waits).toEqual([5000, 5000]);
    // The quota grows (a new window): 90 of 100 left, 10 s to go: 8.5/s.
    // The slot reserved at 0.2/s (15 s) does not hold the next request back.
    await send({ 'x-ratelimit-limit': '100', 'x-ratelimit-remaining': '40', 'x-ratelimit-reset': '10' });
    waits.length = 0;
    at(6000);
    await send(undefined);
    expect(waits.length === 0 || waits[0]! <= 1000 / 3.5).toBe(true);
  });

  it("never waits past the request's deadline: refused at once, nothing reserved", async () => {
    const { waits, send } = harness({ maxWait: 60_000 }, 1000);
    await send({ 'x-ratelimit-limit': '100', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '3' });
    await expect(send(undefined)).rejects.toMatchObject({
      code: 'RATE_LIMITED',
      detail: expect.stringMatching(/total timeout/),
    });
    expect(waits).toEqual([]);
  });

  it('keeps a waiter’s ticket across windows; replaces one the state never gave; takes back a refused one', () => {
    const spent = () => ({ ...freshState(0), limit: 5, remaining: 0, resetAt: 2000, windowMs: 2000 });
    const state = spent();
    const config = { ...CONFIG, reserve: 0 };
    const random = () => 0.5;
    // Five per window: the first five tickets get slots at the reset (50-130 ms after it, in order), the sixth asks again then.
    const first = Array.from({ length: 6 }, () => reserveWithin(state, 0, load(5), config, random, 60_000));
    const base = first[0]!.ticket!.requests!; // drawn at random: tickets of different states do not overlap
    expect(base).toBe(state.queueBase);
    expect(first.map((r) => r.ticket!.requests! - base)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(first.map((r) => r.askAgainIn)).toEqual([null, null, null, null, null, 2050]); // a slot, or none
    expect(first.slice(0, 5).map((r) => r.wait)).toEqual([2050, 2070, 2090, 2110, 2130]);
    // After the reset, the sixth keeps its place ahead of a newcomer: the window (assumed, not announced yet) makes both ask again.
    const again = reserveWithin(state, 2050, load(5), config, random, 60_000, null, { requests: base + 5 });
    const newcomer = reserveWithin(state, 2060, load(5), config, random, 60_000);
    expect([again.ticket!.requests! - base, newcomer.ticket!.requests! - base]).toEqual([5, 6]);
    expect(again.askAgainIn).not.toBeNull();
    // A ticket from another state (Redis, then the local fallback while Redis fails, or back) is replaced by one of this state's:
    // neither a far place nor, below this state's head, a place whose reset came.
    const local = spent();
    const foreign = reserveWithin(local, 0, load(5), config, () => 0.25, 60_000, null, { requests: base + 5 });
    expect(foreign.ticket!.requests).toBe(local.queueBase);
    const back = reserveWithin(state, 2070, load(5), config, random, 60_000, null, foreign.ticket);
    expect([back.ticket!.requests! - base, back.wait > 0]).toEqual([7, true]);
    // Refused (past maxWait): its new ticket is taken back.
    const refused = spent();
    expect(reserveWithin(refused, 0, load(5), config, random, 1000).wait).toBeGreaterThan(1000);
    expect([refused.queueBase, refused.queueTail]).toEqual([undefined, undefined]);
  });

  it('reads answers out of order within a window, and a late one after the refill, without moving the waiters on twice', () => {
    const config = { ...CONFIG, reserve: 0, headers: 'openai' as const };
    const state = { ...freshState(0), limit: 5, remaining: 0, resetAt: 10_000, windowMs: 10_000 };
    for (let i = 0; i < 6; i++) reserveWithin(state, 0, load(5), config, () => 0.5, 60_000);
    const base = state.queueBase!;
    const queue = () => [state.queueHead! - base, state.queueTail! - base];
    expect(queue()).toEqual([0, 6]);
    const answer = (t: number, remaining: number, resetMs: number) =>
      observe(
        state,
        t,
        200,
        {
          'x-ratelimit-limit-requests': '5',
          'x-ratelimit-remaining-requests': String(remaining),
          'x-ratelimit-reset-requests': `${resetMs}ms`,
        },
        config,
        30_000,
        1_800_000_000_000 + t,
      );
    // The first answer of the next window: the five it was for leave the queue.
    answer(10_010, 4, 9_990);
    expect([queue()[0], state.remaining]).toEqual([5, 4]);
    // Out of order: a later count, then an earlier one (more left). The lowest stays; no new window.
    answer(10_020, 2, 9_980);
    answer(10_030, 3, 9_970);
    expect([queue()[0], state.remaining, state.resetAt]).toEqual([5, 2, 20_000]);
    // The window ends; a request assumes the refill and moves the queue on once.
    reserveWithin(state, 20_010, load(0), config, () => 0.5, 60_000);
    expect([queue()[0], state.resetAssumed]).toEqual([6, true]);
    // A late answer from the old window (its reset rounded up to a second): ignored.
    answer(20_020, 0, 1_000);
    expect([state.remaining, state.resetAssumed]).toEqual([5, true]);
    // The new window's first answer names its reset: taken, the queue not moved again.
    answer(20_030, 4, 9_970);
    expect([queue()[0], state.remaining, state.resetAt, state.resetAssumed]).toEqual([6, 4, 30_000, false]);
  });
});

describe('millisecond hints (SPEC §15)', () => {
  it("pauses for a 429's retry-after-ms, preferred to its Retry-After", () => {
    const state = freshState(0);
    const headers = { 'retry-after-ms': '300', 'retry-after': '20' };
    const seen = observe(state, 1000, 429, headers, CONFIG, 30_000, 1_800_000_001_000);
    expect(seen?.paused).toBe(true);
    expect(state.pausedUntil).toBe(1300);
  });

  it("pauses for a 503's x-ms-retry-after-ms (Azure OpenAI)", () => {
    const state = freshState(0);
    observe(state, 1000, 503, { 'x-ms-retry-after-ms': '2500' }, CONFIG, 30_000, 1_800_000_001_000);
    expect(state.pausedUntil).toBe(3500);
  });
});

describe('quota floors (SPEC §13)', () => {
  it('lets a critical request go at once past batch requests held at their floor: held ones are not in flight', async () => {
    let clock = 0;
    /** Sleeps asked for, each resolved only when the test says. */
    const sleeping: { ms: number; wake: () => void }[] = [];
    const sent: string[] = [];
    const pacing = createUpstreamPacing('up', { ...CONFIG, engageBelow: 0.1 }, 30_000, {
      now: () => clock,
      wall: () => 1_800_000_000_000 + clock,
      random: () => 0.5,
      sleep: (ms) => new Promise<void>((wake) => sleeping.push({ ms, wake })),
      metrics: createMetrics(),
    });
    const policy = pacing.policy('api');
    const send = (name: string, quotaFloor: number | null, headers?: IncomingHttpHeaders) => {
      const ctx = {
        clientHeaders: {},
        path: '/x',
        flags: new Set(),
        deadline: Infinity,
        priority: { rank: quotaFloor === null ? 0 : 2, name, quotaFloor, promoteAfterMs: null },
      } as unknown as RequestContext;
      return policy.run(ctx, new Cancellation(), async (): Promise<AttemptResult> => {
        sent.push(name);
        return {
          classification: { status: 200 } as AttemptResult['classification'],
          response: headers ? ({ headers } as UpstreamResponse) : undefined,
        };
      });
    };
    // GitHub-style: 9 of 20 left in a window that resets at an epoch second, 4 s on.
    const reset = String(Math.ceil((1_800_000_000_000 + 4000) / 1000));
    await send('first', null, { 'x-ratelimit-limit': '20', 'x-ratelimit-remaining': '9', 'x-ratelimit-reset': reset });
    // Ten batch requests (floor 50 %: 10 of 20) are held until the reset, asleep.
    const batch = Array.from({ length: 10 }, () => send('batch', 0.5));
    await new Promise((resolve) => setImmediate(resolve));
    expect(sleeping).toHaveLength(10);
    expect(sleeping.every((s) => s.ms > 3000)).toBe(true);
    // A critical request: 9 left less the 5 % reserve, nothing in flight: it goes at once.
    const critical = send('critical', null);
    await new Promise((resolve) => setImmediate(resolve));
    expect(sent).toEqual(['first', 'critical']);
    await critical;
    expect(sleeping).toHaveLength(10);
    // The reset: the batch goes (woken as often as it sleeps, the clock moving on).
    clock = 4200;
    for (let i = 0; i < 100 && sleeping.length > 0; i++) {
      for (const s of sleeping.splice(0)) s.wake();
      await new Promise((resolve) => setImmediate(resolve));
      clock += 100;
    }
    await Promise.all(batch);
    expect(sent.filter((name) => name === 'batch')).toHaveLength(10);
  });
});
