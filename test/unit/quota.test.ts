import { describe, expect, it } from 'vitest';
import { parseGoDuration, readQuota, resetToSeconds } from '../../src/errors/quota.js';
import { cutText } from '../../src/errors/normalize.js';

const now = Date.parse('2026-11-23T03:00:00Z');

describe('quota headers', () => {
  it('reads a reset given as epoch seconds, epoch milliseconds, or seconds from now', () => {
    expect(resetToSeconds(now / 1000 + 30, undefined, now)).toBe(30);
    expect(resetToSeconds(now + 30_000, undefined, now)).toBe(30);
    expect(resetToSeconds(45, undefined, now)).toBe(45);
    expect(resetToSeconds(now / 1000 - 30, undefined, now)).toBe(0);
  });

  it('reads epochs against the response Date, not the local clock', () => {
    const providerNow = now + 600_000;
    expect(resetToSeconds(providerNow / 1000 + 20, new Date(providerNow).toUTCString(), now)).toBe(20);
  });

  it.each([
    ['6m0s', 360],
    ['1h2m3s', 3723],
    ['12ms', 0.012],
    ['0.5s', 0.5],
    ['20s', 20],
  ])('reads the duration %s as %d s', (value, seconds) => {
    expect(parseGoDuration(value)).toBeCloseTo(seconds, 6);
  });

  it.each(['', 'soon', '6 m', '5'])('ignores the duration %j', (value) => {
    expect(parseGoDuration(value)).toBeUndefined();
  });

  it('prefers the IETF fields, then X-RateLimit, then OpenAI', () => {
    expect(
      readQuota({ ratelimit: '"a";r=5;t=10', 'ratelimit-policy': '"a";q=50;w=60', 'x-ratelimit-remaining': '1' }, now),
    ).toEqual({ limit: 50, remaining: 5, resetSeconds: 10 });
    expect(readQuota({ 'x-ratelimit-limit': '10', 'x-ratelimit-remaining': '2' }, now)).toEqual({
      limit: 10,
      remaining: 2,
    });
    expect(
      readQuota(
        {
          'x-ratelimit-limit-requests': '100',
          'x-ratelimit-remaining-requests': '99',
          'x-ratelimit-reset-requests': '600ms',
        },
        now,
      ),
    ).toEqual({
      limit: 100,
      remaining: 99,
      resetSeconds: 0.6,
    });
  });

  it('returns nothing without a limit or a remaining count, and ignores garbage', () => {
    expect(readQuota({}, now)).toBeUndefined();
    expect(readQuota({ 'x-ratelimit-limit': 'lots', 'x-ratelimit-remaining': 'some' }, now)).toBeUndefined();
  });
});

describe('cutText', () => {
  it('cuts on a character boundary', () => {
    expect(cutText('aé✓𝄞', 4)).toBe('aé');
    expect(cutText('aé✓𝄞', 6)).toBe('aé✓');
    expect(cutText('short', 100)).toBe('short');
  });
});

describe('pacing dialects', () => {
  it('reads Shopify and Salesforce used/max', async () => {
    const { readQuota } = await import('../../src/errors/quota.js');
    expect(readQuota({ 'x-shopify-shop-api-call-limit': '32/40' }, now)).toEqual({ limit: 40, remaining: 8 });
    expect(readQuota({ 'sforce-limit-info': 'api-usage=10018/100000' }, now)).toEqual({
      limit: 100000,
      remaining: 89982,
    });
  });

  it('honours a configured dialect and reset format over the guess', async () => {
    const { readQuota } = await import('../../src/errors/quota.js');
    const headers = { 'x-ratelimit-limit': '10', 'x-ratelimit-remaining': '5', 'x-ratelimit-reset': '1795402830' };
    expect(readQuota(headers, now, { resetFormat: 'epoch' })).toEqual({
      limit: 10,
      remaining: 5,
      resetSeconds: 1795402830 - now / 1000,
    });
    expect(readQuota(headers, now, { resetFormat: 'delta' })).toEqual({
      limit: 10,
      remaining: 5,
      resetSeconds: 1795402830,
    });
    expect(readQuota({ ...headers, ratelimit: '"a";r=1;t=2' }, now, { dialect: 'x-ratelimit' })!.remaining).toBe(5);
    expect(readQuota({ 'x-shopify-shop-api-call-limit': '1/2' }, now, { dialect: 'openai' })).toBeUndefined();
  });
});

describe('Anthropic and RFC 3339 resets (SPEC §15)', () => {
  const anthropic = (reset: string) => ({
    'anthropic-ratelimit-requests-limit': '50',
    'anthropic-ratelimit-requests-remaining': '7',
    'anthropic-ratelimit-requests-reset': reset,
  });

  it('reads anthropic-ratelimit-requests-* with its RFC 3339 reset, in auto and by name', () => {
    const quota = { limit: 50, remaining: 7, resetSeconds: 12 };
    expect(readQuota(anthropic('2026-11-23T03:00:12Z'), now)).toEqual(quota);
    expect(readQuota(anthropic('2026-11-23T03:00:12Z'), now, { dialect: 'anthropic' })).toEqual(quota);
    // Another dialect asked for: not read.
    expect(readQuota(anthropic('2026-11-23T03:00:12Z'), now, { dialect: 'openai' })).toBeUndefined();
  });

  it("reads the reset against the answer's Date (the provider's clock), rounded up, never negative", () => {
    const providerNow = now + 600_000;
    const headers = {
      ...anthropic(new Date(providerNow + 4_500).toISOString()),
      date: new Date(providerNow).toUTCString(),
    };
    expect(readQuota(headers, now)!.resetSeconds).toBe(5);
    expect(readQuota(anthropic('2026-11-23T02:59:00Z'), now)!.resetSeconds).toBe(0);
    expect(readQuota(anthropic('2026-11-23T03:00:12+01:00'), now)!.resetSeconds).toBe(0);
  });

  it('takes resetFormat rfc3339 for any dialect, and ignores a time that does not parse', () => {
    const headers = {
      'x-ratelimit-limit': '10',
      'x-ratelimit-remaining': '5',
      'x-ratelimit-reset': '2026-11-23T03:01:00Z',
    };
    expect(readQuota(headers, now, { resetFormat: 'rfc3339' })!.resetSeconds).toBe(60);
    expect(readQuota(headers, now)!.resetSeconds).toBe(60);
    expect(readQuota(anthropic('2026-13-45T99:99:99Z'), now)).toEqual({ limit: 50, remaining: 7 });
  });
});

describe('hostile quota headers (SPEC §20.5)', () => {
  it.each([
    ['x-shopify-shop-api-call-limit', '1'.repeat(64_000)],
    ['x-shopify-shop-api-call-limit', `${'1 '.repeat(20_000)}/`],
    ['sforce-limit-info', `api-usage=${'9'.repeat(64_000)}`],
  ])('reads a 64,000-character %s in linear time, and finds no quota in it', async (name, value) => {
    const { readQuota } = await import('../../src/errors/quota.js');
    const started = performance.now();
    for (const dialect of ['auto', 'shopify', 'salesforce'] as const)
      expect(readQuota({ [name]: value }, now, { dialect })).toBeUndefined();
    // Measured: 6.3 s for the digits before the bound; well under a millisecond after. Generous slack for a loaded machine.
    expect(performance.now() - started).toBeLessThan(500);
  });
});
