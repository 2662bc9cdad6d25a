import { describe, expect, it } from 'vitest';
import { fullJitterDelay } from '../../src/policy/retry/retry.js';
import { compileConditions } from '../../src/policy/conditions.js';
import { parseRetryAfter, retryDelayOf } from '../../src/lib/retry-after.js';
import { createRetryBudget } from '../../src/policy/retry/budget.js';
import { classifyError, classifyStatus, classifyTimeout } from '../../src/upstream/classify.js';
import { seededRandom } from '../../src/demo/prng.js';

describe('fullJitterDelay', () => {
  it('stays inside [0, min(max, base * 2^n)) for every retry', () => {
    const random = seededRandom(1);
    for (let n = 0; n < 12; n++) {
      const ceiling = Math.min(5000, 100 * 2 ** n);
      for (let i = 0; i < 500; i++) {
        const delay = fullJitterDelay(n, 100, 5000, random);
        expect(delay).toBeGreaterThanOrEqual(0);
        expect(delay).toBeLessThan(ceiling);
      }
    }
  });

  it('spreads across the whole range rather than clustering', () => {
    const random = seededRandom(2);
    const delays = Array.from({ length: 2000 }, () => fullJitterDelay(3, 100, 5000, random)); // ceiling 800
    const quarters = [0, 0, 0, 0];
    for (const delay of delays) quarters[Math.floor(delay / 200)]! += 1;
    for (const count of quarters) expect(count).toBeGreaterThan(350); // ~500 each
    expect(new Set(delays.map((d) => Math.round(d))).size).toBeGreaterThan(500);
  });

  it('uses the random source at both ends of its range', () => {
    expect(fullJitterDelay(2, 100, 5000, () => 0)).toBe(0);
    expect(fullJitterDelay(2, 100, 5000, () => 0.999999)).toBeCloseTo(400, 2);
    expect(fullJitterDelay(10, 100, 5000, () => 0.5)).toBe(2500); // capped at max
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-11-23T03:00:00Z');
  it.each([
    ['0', 0],
    ['1', 1000],
    ['120', 120_000],
    [' 7 ', 7000],
    ['Mon, 23 Nov 2026 03:00:05 GMT', 5000],
    ['Mon, 23 Nov 2026 02:59:00 GMT', 0], // in the past: now
    ['Monday, 23-Nov-26 03:00:10 GMT', 10_000], // RFC 850, obsolete but allowed
  ])('reads %j as %d ms', (value, ms) => {
    expect(parseRetryAfter(value, now)).toBe(ms);
  });

  it.each(['', 'soon', '-5', '1.5', '3e2', 'Mon, 99 Foo 2026 03:00:05 GMT', '2026-11-23T03:00:05Z'])(
    'ignores %j',
    (value) => {
      expect(parseRetryAfter(value, now)).toBeUndefined();
    },
  );

  it('reads a huge delta as a very long wait, not as garbage', () => {
    expect(parseRetryAfter('999999999999999999999', now)).toBe(Number.MAX_SAFE_INTEGER);
    expect(parseRetryAfter('86400', now)).toBe(86_400_000);
  });

  it('takes the first of several values and ignores a missing header', () => {
    expect(parseRetryAfter(['2', '9'], now)).toBe(2000);
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });
});

describe('retryDelayOf (SPEC §15 millisecond hints)', () => {
  const now = Date.parse('2026-11-23T03:00:00Z');
  it('prefers retry-after-ms, then x-ms-retry-after-ms, then Retry-After', () => {
    const all = { 'retry-after-ms': '300', 'x-ms-retry-after-ms': '700', 'retry-after': '20' };
    expect(retryDelayOf(all, now)).toBe(300);
    expect(retryDelayOf({ ...all, 'retry-after-ms': undefined }, now)).toBe(700);
    expect(retryDelayOf({ 'retry-after': '20' }, now)).toBe(20_000);
    expect(retryDelayOf({}, now)).toBeUndefined();
  });

  it.each(['-1', 'soon', '', '1e3', '0x10', 'Infinity'])('passes over a hint of %j for the next', (value) => {
    expect(retryDelayOf({ 'retry-after-ms': value, 'retry-after': '2' }, now)).toBe(2000);
    expect(retryDelayOf({ 'x-ms-retry-after-ms': value }, now)).toBeUndefined();
  });

  it('reads zero, decimals and the first of several values', () => {
    expect(retryDelayOf({ 'retry-after-ms': '0' }, now)).toBe(0);
    expect(retryDelayOf({ 'retry-after-ms': ' 12.5 ' }, now)).toBe(12.5);
    expect(retryDelayOf({ 'retry-after-ms': ['40', '90'] }, now)).toBe(40);
    // Past a float's range: a very long wait, as a huge Retry-After is (retryAfter.max then passes it back).
    expect(retryDelayOf({ 'retry-after-ms': '9'.repeat(400) }, now)).toBe(Number.MAX_SAFE_INTEGER);
  });
});

describe('retry budget', () => {
  it('allows ratio x requests retries over the window, no more', () => {
    let clock = 0;
    const budget = createRetryBudget(0.2, 0, () => clock);
    let allowed = 0;
    for (let i = 0; i < 100; i++) {
      budget.deposit();
      if (budget.tryWithdraw()) allowed++;
      clock += 10;
    }
    expect(allowed).toBe(20);
  });

  it('allows minPerSecond x 10 s even without requests', () => {
    const budget = createRetryBudget(0.2, 3, () => 0);
    let allowed = 0;
    for (let i = 0; i < 100; i++) if (budget.tryWithdraw()) allowed++;
    expect(allowed).toBe(30);
  });

  it('forgets what left the 10 s window', () => {
    let clock = 0;
    const budget = createRetryBudget(0, 1, () => clock);
    for (let i = 0; i < 10; i++) expect(budget.tryWithdraw()).toBe(true);
    expect(budget.tryWithdraw()).toBe(false);
    clock = 10_500; // the first second has left the window
    expect(budget.tryWithdraw()).toBe(true);
    clock = 60_000;
    let allowed = 0;
    for (let i = 0; i < 20; i++) if (budget.tryWithdraw()) allowed++;
    expect(allowed).toBe(10);
  });
});

describe('retry and failure conditions', () => {
  const connectRefused = classifyError(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }), { connected: false });
  const reset = classifyError(Object.assign(new Error('x'), { code: 'ECONNRESET' }), { connected: true });
  const timeout = classifyTimeout('slow');
  it.each([
    ['5xx', classifyStatus(500), true],
    ['5xx', classifyStatus(503), true],
    ['5xx', classifyStatus(429), false],
    ['gateway-error', classifyStatus(502), true],
    ['gateway-error', classifyStatus(504), true],
    ['gateway-error', classifyStatus(500), false],
    ['connect-failure', connectRefused, true],
    ['connect-failure', reset, false],
    ['reset', reset, true],
    ['reset', connectRefused, false],
    ['timeout', timeout, true],
    ['timeout', classifyStatus(504), false],
    ['429', classifyStatus(429), true],
    ['409', classifyStatus(409), true],
    ['409', classifyStatus(404), false],
  ] as const)('%s holds for %j: %s', (word, classification, expected) => {
    expect(compileConditions([word])(classification)).toBe(expected);
  });

  it('holds when any listed condition holds', () => {
    const predicate = compileConditions(['reset', '429']);
    expect(predicate(classifyStatus(429))).toBe(true);
    expect(predicate(reset)).toBe(true);
    expect(predicate(classifyStatus(503))).toBe(false);
    expect(compileConditions([])(classifyStatus(503))).toBe(false);
  });
});
