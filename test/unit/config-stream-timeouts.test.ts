/**
 * `timeouts.firstByte` and `timeouts.idle` (SPEC §16) in the config: a
 * positive duration or null, merged key by key like every `timeouts` key,
 * `firstByte <= total`; every mistake a problem with its position.
 */
import { describe, expect, it } from 'vitest';
import { formatProblem, parseConfig } from '../../src/config/index.js';

function file(defaults: string, route = ''): string {
  return `version: 1
upstreams: { u: { url: "http://127.0.0.1:1" } }
defaults:
  timeouts: ${defaults}
routes:
  - name: r
    upstream: u
${route ? `    timeouts: ${route}\n` : ''}`;
}

function parse(text: string) {
  return parseConfig(text, 'c.yaml', { env: {} });
}

function problems(text: string): string {
  const result = parse(text);
  return result.ok ? '' : result.problems.map(formatProblem).join('\n');
}

describe('stream timeouts in the config', () => {
  it.each([
    ['{ firstByte: 0s }', /c\.yaml:4:\d+: defaults\.timeouts\.firstByte: /],
    ['{ idle: 0s }', /defaults\.timeouts\.idle: /],
    ['{ idle: -5s }', /defaults\.timeouts\.idle: /],
    ['{ firstByte: 5 }', /defaults\.timeouts\.firstByte: /],
    ['{ idle: soon }', /defaults\.timeouts\.idle: /],
    [
      '{ total: 10s, firstByte: 20s }',
      /defaults\.timeouts\.firstByte: firstByte \(20s\) must not be longer than total \(10s\)/,
    ],
  ])('explains %s', (timeouts, expected) => {
    expect(problems(file(timeouts))).toMatch(expected);
  });

  it('checks the merged values: a route whose total is shorter than the default firstByte', () => {
    expect(problems(file('{ firstByte: 5s }', '{ total: 2s }'))).toMatch(
      /defaults\.timeouts\.firstByte: firstByte \(5s\) must not be longer than total \(2s\)/,
    );
  });

  it('is off by default, set in ms, and turned off again on a route by null', () => {
    const result = parse(`version: 1
upstreams: { u: { url: "http://127.0.0.1:1" } }
defaults:
  timeouts: { firstByte: 10s, idle: 30s }
routes:
  - { name: held, upstream: u }
  - { name: open, upstream: u, timeouts: { firstByte: null, idle: 1500ms } }
`);
    if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
    const [held, open] = result.loaded.config.routes;
    expect(held!.timeouts).toMatchObject({ firstByte: 10_000, idle: 30_000 });
    expect(open!.timeouts).toMatchObject({ firstByte: null, idle: 1500 });
    const plain = parse(file('{}'));
    expect(plain.ok && plain.loaded.config.routes[0]!.timeouts).toMatchObject({ firstByte: null, idle: null });
  });
});
