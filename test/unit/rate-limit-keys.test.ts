/**
 * Rate-limit key values a client chooses (issue 32, SPEC §20.7): bounded in
 * length, hashed rather than cut, short ones kept as sent.
 */
import { describe, expect, it } from 'vitest';
import type { RequestContext } from '../../src/policy/context.js';
import { keyOf, MAX_KEY_LENGTH } from '../../src/policy/rate-limit/limiters.js';

const asked = (value: string | string[]) =>
  ({ clientHeaders: { 'x-key': value }, remoteAddress: '127.0.0.1' }) as unknown as RequestContext;

describe('rate-limit key values', () => {
  it('keeps a value of up to MAX_KEY_LENGTH characters as sent', () => {
    const value = 'k'.repeat(MAX_KEY_LENGTH);
    expect(keyOf(asked(value), 'header:x-key')).toBe(value);
  });

  it('replaces a longer value (10 KB, or one character over) by sha256: and 64 hex digits', () => {
    for (const value of ['k'.repeat(10_240), 'k'.repeat(MAX_KEY_LENGTH + 1)]) {
      const key = keyOf(asked(value), 'header:x-key');
      expect(key).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(key).toHaveLength(71);
    }
  });

  it('keeps long values that share their first characters apart, and a repeated header joined first', () => {
    const prefix = 'k'.repeat(500);
    expect(keyOf(asked(`${prefix}a`), 'header:x-key')).not.toBe(keyOf(asked(`${prefix}b`), 'header:x-key'));
    expect(keyOf(asked([prefix, 'x']), 'header:x-key')).toBe(keyOf(asked(`${prefix},x`), 'header:x-key'));
  });
});
