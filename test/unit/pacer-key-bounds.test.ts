/**
 * Issue 32: what a client sends makes pacing keys of bounded length: the
 * credential (`pacing.key`) is hashed, and so is a long first path segment
 * that a scope is learned under (`pacing.scope`).
 */
import { describe, expect, it } from 'vitest';
import type { PacingConfig } from '../../src/config/types.js';
import type { RequestContext } from '../../src/policy/context.js';
import { pacerKeyOf } from '../../src/policy/pacing/key.js';

const config = { key: 'authorization', scope: 'x-ratelimit-resource' } as PacingConfig;
const ctx = (path: string, authorization: string) =>
  ({ path, clientHeaders: { authorization } }) as unknown as RequestContext;

describe('pacerKeyOf', () => {
  it('keeps short segments as sent and hashes long ones apart', () => {
    expect(pacerKeyOf(config, () => undefined, ctx('/search/x', 'a'), 'r', 0).learnKey).toBe('r\u0001search');
    const prefix = 's'.repeat(10_000);
    const first = pacerKeyOf(config, () => undefined, ctx(`/${prefix}a/x`, 'a'), 'r', 0);
    const second = pacerKeyOf(config, () => undefined, ctx(`/${prefix}b`, 'a'), 'r', 0);
    expect(first.learnKey.length).toBeLessThanOrEqual(80);
    expect(second.learnKey.length).toBeLessThanOrEqual(80);
    expect(first.learnKey).not.toBe(second.learnKey);
    expect(pacerKeyOf(config, () => undefined, ctx(`/${prefix}a`, 'a'), 'r', 0).learnKey).toBe(first.learnKey);
  });

  it('hashes a long credential to a short id', () => {
    const key = pacerKeyOf(config, () => undefined, ctx('/x', 'Bearer '.padEnd(10_000, 't')), 'r', 0);
    expect(key.id.length).toBeLessThanOrEqual(40);
  });
});
