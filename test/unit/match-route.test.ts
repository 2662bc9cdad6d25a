import { describe, expect, it } from 'vitest';
import { hostMatches, pathHasPrefix, rewritePath, stripPort } from '../../src/router/match-route.js';

describe('pathHasPrefix', () => {
  it.each([
    ['/stripe', '/stripe', true],
    ['/stripe/v1', '/stripe', true],
    ['/stripey', '/stripe', false],
    ['/strip', '/stripe', false],
    ['/anything', '/', true],
    ['/api/x', '/api/', true],
    ['/api', '/api/', false],
    ['/apix', '/api/', false],
  ])('%s under %s: %s', (path, prefix, expected) => {
    expect(pathHasPrefix(path, prefix)).toBe(expected);
  });
});

describe('hostMatches', () => {
  it.each([
    ['api.example.com', 'api.example.com', true],
    ['api.example.com:8080', 'api.example.com', true],
    ['api.example.com:8080', 'api.example.com:8080', true],
    ['api.example.com:9090', 'api.example.com:8080', false],
    ['a.example.com', '*.example.com', true],
    ['a.b.example.com', '*.example.com', true],
    ['example.com', '*.example.com', false],
    ['badexample.com', '*.example.com', false],
    ['[::1]:3128', '[::1]', true],
  ])('%s against %s: %s', (host, pattern, expected) => {
    expect(hostMatches(host, pattern)).toBe(expected);
  });

  it('strips ports, also from IPv6 literals', () => {
    expect(stripPort('a.test:80')).toBe('a.test');
    expect(stripPort('[::1]:80')).toBe('[::1]');
    expect(stripPort('::1')).toBe('::1');
  });
});

describe('rewritePath', () => {
  it.each([
    ['/stripe/v1/charges?x=1', '/stripe', true, '/v1/charges?x=1'],
    ['/stripe', '/stripe', true, '/'],
    ['/stripe?x=1', '/stripe', true, '/?x=1'],
    ['/api/x', '/api/', true, '/x'],
    ['/stripe/v1', '/stripe', false, '/stripe/v1'],
    ['/v1', '/', true, '/v1'],
  ])('%s minus %s (strip %s) is %s', (url, prefix, strip, expected) => {
    expect(rewritePath(url, prefix, strip)).toBe(expected);
  });
});
