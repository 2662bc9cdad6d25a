import { describe, expect, it } from 'vitest';
import { LimiterRefused, LocalLimiter } from '../../src/policy/rate-limit/local-limiter.js';

const never = () => () => {};

describe('LocalLimiter', () => {
  it('weighs requests by cost, and a costly head that gives up lets a cheap one behind it go at once', async () => {
    const limiter = new LocalLimiter({ rate: 1, burst: 10, maxConcurrent: null, queueSize: 5, now: Date.now });
    (await limiter.acquire(0, never, undefined, undefined, 5))();
    // 5 left: a head costing 10 waits for 5 more (5 s); one costing 1 waits behind it.
    const costly = limiter.acquire(100, never, undefined, undefined, 10);
    const started = Date.now();
    const cheap = limiter.acquire(10_000, never, undefined, undefined, 1);
    await expect(costly).rejects.toEqual(new LimiterRefused('timeout'));
    (await cheap)();
    // Once the costly head left, the cheap one went (not when the head's 5 s timer came).
    expect(Date.now() - started).toBeLessThan(2000);
    expect(limiter.tokensLeft()).toBe(4);
  });

  it('lets a settled charge take the bucket below zero by one burst at most', () => {
    const limiter = new LocalLimiter({ rate: 1, burst: 10, maxConcurrent: null, queueSize: 0, now: () => 0 });
    limiter.settle(1e300);
    expect(limiter.tokensLeft()).toBe(-10);
    limiter.settle(-5);
    expect(limiter.tokensLeft()).toBe(-5);
  });

  it('allows burst at once, then refills continuously at rate', async () => {
    let clock = 0;
    const limiter = new LocalLimiter({ rate: 10, burst: 3, maxConcurrent: null, queueSize: 0, now: () => clock });
    for (let i = 0; i < 3; i++) (await limiter.acquire(0, never))();
    await expect(limiter.acquire(0, never)).rejects.toEqual(new LimiterRefused('queue-full'));
    expect(limiter.secondsToNextToken()).toBeCloseTo(0.1, 5);
    clock = 100; // one token back at 10/s
    (await limiter.acquire(0, never))();
    await expect(limiter.acquire(0, never)).rejects.toBeInstanceOf(LimiterRefused);
    clock = 10_000; // never more than burst
    expect(limiter.tokensLeft()).toBe(3);
  });

  it('caps requests in flight and hands freed slots to waiters in order', async () => {
    const limiter = new LocalLimiter({ rate: null, burst: 1, maxConcurrent: 1, queueSize: 5, now: () => 0 });
    const first = await limiter.acquire(1000, never);
    const order: number[] = [];
    const second = limiter.acquire(1000, never).then((release) => (order.push(2), release));
    const third = limiter.acquire(1000, never).then((release) => (order.push(3), release));
    expect(limiter.queued()).toBe(2);
    first();
    (await second)();
    (await third)();
    expect(order).toEqual([2, 3]);
    expect(limiter.idle()).toBe(true);
  });

  it('refuses when the queue is full, and times out a waiter without taking a token', async () => {
    const limiter = new LocalLimiter({ rate: null, burst: 1, maxConcurrent: 1, queueSize: 1, now: () => 0 });
    const held = await limiter.acquire(1000, never);
    const waiting = limiter.acquire(20, never);
    await expect(limiter.acquire(1000, never)).rejects.toEqual(new LimiterRefused('queue-full'));
    await expect(waiting).rejects.toEqual(new LimiterRefused('timeout'));
    expect(limiter.queued()).toBe(0);
    held();
    expect(limiter.idle()).toBe(true);
  });

  it('releases a slot only once', async () => {
    const limiter = new LocalLimiter({ rate: null, burst: 1, maxConcurrent: 1, queueSize: 0, now: () => 0 });
    const release = await limiter.acquire(0, never);
    release();
    release();
    (await limiter.acquire(0, never))();
    await expect(Promise.all([limiter.acquire(0, never), limiter.acquire(0, never)])).rejects.toBeInstanceOf(
      LimiterRefused,
    );
  });
});
