/**
 * Path normalization before matching (SPEC §10, RFC 3986 §6.2.2 and §5.2.4).
 */
import { describe, expect, it } from 'vitest';
import { normalizePath } from '../../src/router/normalize-path.js';

const ok = (path: string) => {
  const result = normalizePath(path);
  if (!result.ok) throw new Error(`refused ${path}: ${result.reason}`);
  return result.path;
};

describe('normalizePath', () => {
  it('returns a plain path as it is', () => {
    for (const path of ['/', '/a', '/a/b/', '/v1/charges', '/a//b', '/a.b/c.d', '/.well-known/x', '*'])
      expect(ok(path)).toBe(path);
  });

  it('removes dot segments', () => {
    expect(ok('/a/./b')).toBe('/a/b');
    expect(ok('/a/b/../c')).toBe('/a/c');
    expect(ok('/a/b/..')).toBe('/a/');
    expect(ok('/a/b/.')).toBe('/a/b/');
    expect(ok('/a/..')).toBe('/');
    expect(ok('/a//../b')).toBe('/a/b');
    expect(ok('/api/v1/../../admin')).toBe('/admin');
    expect(ok('/github/repos/../../admin')).toBe('/admin');
    expect(ok('/a/.../b')).toBe('/a/.../b');
    expect(ok('/a/..b/c')).toBe('/a/..b/c');
  });

  it('decodes escaped unreserved characters, in either hex case, and then removes the dot segments they spell', () => {
    expect(ok('/%7Euser/%41%62c')).toBe('/~user/Abc');
    expect(ok('/a/%2e%2E/admin')).toBe('/admin');
    expect(ok('/a/%2E/b')).toBe('/a/b');
    expect(ok('/%2d%5f%2E%7e')).toBe('/-_.~');
  });

  it('keeps %2F and other reserved escapes encoded, as written', () => {
    expect(ok('/a%2Fb/c')).toBe('/a%2Fb/c');
    expect(ok('/a%2fb/../c')).toBe('/c');
    expect(ok('/q%3Fx%23y%25z%20')).toBe('/q%3Fx%23y%25z%20');
    expect(ok('/caf%C3%A9')).toBe('/caf%C3%A9');
  });

  it('refuses dot segments that climb above the root, even where clamping would match', () => {
    for (const path of ['/..', '/../admin', '/a/../../admin', '/%2e%2e/admin', '/a/%2E%2E/%2e%2e/x', '/./../x']) {
      const result = normalizePath(path);
      expect(result.ok, path).toBe(false);
      if (!result.ok) expect(result.reason).toBe('its dot segments climb above the root');
    }
  });

  it('refuses invalid escapes', () => {
    for (const path of ['/%zz', '/a%', '/a%4', '/%G0/x', '/%%41']) {
      const result = normalizePath(path);
      expect(result.ok, path).toBe(false);
      if (!result.ok) expect(result.reason).toBe('it has an invalid percent-escape');
    }
  });
});
