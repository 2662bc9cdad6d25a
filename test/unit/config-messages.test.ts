/**
 * Messages for the less common mistakes, checked in process: the anyOf of
 * `retry.methods`, names and header names, host patterns, limiter keys,
 * and the did-you-mean distance.
 */
import { describe, expect, it } from 'vitest';
import { formatProblem, parseConfig } from '../../src/config/index.js';
import { editDistance, suggest } from '../../src/config/suggest.js';

const BASE = `version: 1
upstreams:
  u: { url: "http://127.0.0.1:1" }
routes:
  - name: r
    upstream: u
`;

function problems(text: string): string[] {
  const result = parseConfig(text, 'c.yaml', { env: {} });
  if (result.ok) return [];
  return result.problems.map(formatProblem);
}

describe('config messages', () => {
  it.each([
    ['retry: { methods: sometimes }', /retry\.methods: must be one of idempotent; got the string "sometimes"/],
    ['retry: { methods: 3 }', /retry\.methods: must be "idempotent" or a list, got the number 3/],
    ['retry: { methods: [GET, fetch] }', /retry\.methods\[1\]: must be one of GET, HEAD/],
    ['match: { host: "bad host!" }', /match\.host: "bad host!" is not a host name/],
    ['match: { methods: [GET, GET] }', /match\.methods: lists "GET" twice/],
    ['rateLimit: { rate: 5/s, key: client_ip }', /rateLimit\.key: "client_ip" is not a limiter key; did you mean "client-ip"\?/],
    ['rateLimit: { rate: 5/s, key: "header:bad name" }', /rateLimit\.key: "bad name" is not a valid header name/],
    ['rateLimit: { burst: 5 }', /rateLimit\.burst: burst needs a rate/],
    ['rateLimit: { key: route }', /rateLimit: a rate limit needs rate/],
    ['headers: { request: { set: { "bad header": x } } }', /headers\.request\.set\["bad header"\]: "bad header" is not a valid header name/],
  ])('explains %s', (line, expected) => {
    const found = problems(`${BASE}    ${line}\n`);
    expect(found.join('\n')).toMatch(expected);
  });

  it('explains a bad upstream name', () => {
    expect(problems(BASE.replace('  u: {', '  "bad name": {').replace('upstream: u', 'upstream: "bad name"')).join('\n')).toMatch(/upstreams\["bad name"\]: "bad name" is not a valid name/);
  });

  it('explains an unreadable CA file, relative to the config file', () => {
    expect(problems(BASE.replace('url: "http://127.0.0.1:1" }', 'url: "https://x.example", tls: { ca: ./missing-ca.pem } }')).join('\n')).toMatch(
      /upstreams\.u\.tls\.ca: cannot read the CA file .*missing-ca\.pem: ENOENT/,
    );
  });

  it('points a problem in defaults at the defaults block only once', () => {
    const found = problems(`version: 1
defaults:
  timeouts: { perTry: 40s }
upstreams:
  u: { url: "http://127.0.0.1:1" }
routes:
  - { name: a, upstream: u }
  - { name: b, upstream: u }
`);
    expect(found).toEqual(['c.yaml:3:23: defaults.timeouts.perTry: perTry (40s) must not be longer than total (30s): an attempt cannot outlast the request']);
  });

  it('allows a route without an upstream when the forward proxy is on', () => {
    expect(problems(`${BASE}  - name: fp\n    match: { host: "*.example.com" }\nforwardProxy: { enabled: true, allowHosts: ["*.example.com"] }\n`)).toEqual([]);
  });
});

describe('suggest', () => {
  it('counts a transposition as one edit', () => {
    expect(editDistance('retires', 'retries')).toBe(1);
    expect(editDistance('', 'abc')).toBe(3);
    expect(editDistance('same', 'same')).toBe(0);
  });

  it('suggests close keys, ignoring case, and nothing for distant ones', () => {
    expect(suggest('PathPrefix', ['pathPrefix', 'host'])).toBe('pathPrefix');
    expect(suggest('timeuots', ['timeouts', 'retry'])).toBe('timeouts');
    expect(suggest('colour', ['name', 'match', 'upstream'])).toBeUndefined();
    expect(suggest('x', ['y'])).toBe('y');
  });
});
