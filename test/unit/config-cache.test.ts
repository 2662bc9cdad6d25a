/**
 * `routes[].cache` (SPEC §17) in the config: `cache: {}` takes the
 * defaults, every mistake is a problem with its position.
 */
import { describe, expect, it } from 'vitest';
import { formatProblem, parseConfig } from '../../src/config/index.js';

const file = (cache: string) => `version: 1
upstreams: { u: { url: "http://127.0.0.1:1" } }
routes:
  - name: r
    upstream: u
    cache: ${cache}
`;

function parse(text: string) {
  return parseConfig(text, 'c.yaml', { env: {} });
}

const problems = (text: string) => {
  const result = parse(text);
  return result.ok ? '' : result.problems.map(formatProblem).join('\n');
};

describe('routes[].cache in the config', () => {
  it.each([
    [
      '{ maxEntryBytes: 1MiB, maxBytes: 64KiB }',
      /c\.yaml:6:\d+: routes\[0\]\.cache\.maxEntryBytes: maxEntryBytes \(1048576 bytes\) is larger than maxBytes/,
    ],
    ['{ ttl: 0s }', /routes\[0\]\.cache\.ttl: /],
    ['{ ttl: 60 }', /routes\[0\]\.cache\.ttl: /],
    ['{ maxEntries: 0 }', /routes\[0\]\.cache\.maxEntries: /],
    ['{ revalidate: sometimes }', /routes\[0\]\.cache\.revalidate: /],
    ['{ ttl: 1m, stale: true }', /routes\[0\]\.cache.*stale/],
  ])('explains cache: %s', (cache, expected) => {
    expect(problems(file(cache))).toMatch(expected);
  });

  it('takes the defaults for cache: {}, and keeps none without the key', () => {
    const result = parse(file('{ ttl: 90s }'));
    expect(result.ok && result.loaded.config.routes[0]!.cache).toEqual({
      ttl: 90_000,
      maxEntries: 1000,
      maxEntryBytes: 256 * 1024,
      maxBytes: 32 * 1024 * 1024,
      revalidate: true,
      coalesce: true,
    });
    const none = parse(file('null'));
    expect(none.ok && none.loaded.config.routes[0]!.cache).toBeNull();
  });
});
