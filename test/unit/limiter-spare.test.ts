/**
 * Issue 32: a rate-limit key's limiter may be dropped from the bounded key
 * table only when it is spare (idle, its bucket full again): dropping one
 * that spent tokens would hand its key a fresh bucket.
 */
import { describe, expect, it } from 'vitest';
import { LocalLimiter } from '../../src/policy/rate-limit/local-limiter.js';

const never = () => () => {};

describe('LocalLimiter.spare', () => {
  it('is false while tokens are spent, and true once the bucket is full again', async () => {
    let clock = 0;
    const limiter = new LocalLimiter({ rate: 2, burst: 2, maxConcurrent: null, queueSize: 0, now: () => clock });
    expect(limiter.spare()).toBe(true);
    (await limiter.acquire(0, never))();
    expect(limiter.idle()).toBe(true);
    expect(limiter.spare()).toBe(false);
    clock = 499; // one token comes back after 500 ms at 2/s
    expect(limiter.spare()).toBe(false);
    clock = 500;
    expect(limiter.spare()).toBe(true);
  });

  it('is false while a request holds a slot, without a token bucket too', async () => {
    const limiter = new LocalLimiter({ rate: null, burst: 1, maxConcurrent: 1, queueSize: 0, now: () => 0 });
    const release = await limiter.acquire(0, never);
    expect(limiter.spare()).toBe(false);
    release();
    expect(limiter.spare()).toBe(true);
  });
});
