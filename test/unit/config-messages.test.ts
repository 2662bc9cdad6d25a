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
    [
      'rateLimit: { rate: 5/s, key: client_ip }',
      /rateLimit\.key: "client_ip" is not a limiter key; did you mean "client-ip"\?/,
    ],
    ['rateLimit: { rate: 5/s, key: "header:bad name" }', /rateLimit\.key: "bad name" is not a valid header name/],
    ['rateLimit: { burst: 5 }', /rateLimit\.burst: burst needs a rate/],
    ['rateLimit: { key: route }', /rateLimit: a rate limit needs rate/],
    [
      'headers: { request: { set: { "bad header": x } } }',
      /headers\.request\.set\["bad header"\]: "bad header" is not a valid header name/,
    ],
  ])('explains %s', (line, expected) => {
    const found = problems(`${BASE}    ${line}\n`);
    expect(found.join('\n')).toMatch(expected);
  });

  it('explains a bad upstream name', () => {
    expect(
      problems(BASE.replace('  u: {', '  "bad name": {').replace('upstream: u', 'upstream: "bad name"')).join('\n'),
    ).toMatch(/upstreams\["bad name"\]: "bad name" is not a valid name/);
  });

  it('explains an unreadable CA file, relative to the config file', () => {
    expect(
      problems(
        BASE.replace('url: "http://127.0.0.1:1" }', 'url: "https://x.example", tls: { ca: ./missing-ca.pem } }'),
      ).join('\n'),
    ).toMatch(/upstreams\.u\.tls\.ca: cannot read the CA file .*missing-ca\.pem: ENOENT/);
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
    expect(found).toEqual([
      'c.yaml:3:23: defaults.timeouts.perTry: perTry (40s) must not be longer than total (30s): an attempt cannot outlast the request',
    ]);
  });

  it('allows a route without an upstream when the forward proxy is on', () => {
    expect(
      problems(
        `${BASE}  - name: fp\n    match: { host: "*.example.com" }\nforwardProxy: { enabled: true, allowHosts: ["*.example.com"] }\n`,
      ),
    ).toEqual([]);
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

describe('failover and fallback (SPEC §8)', () => {
  const failover = (targets: string) =>
    BASE.replace('url: "http://127.0.0.1:1" }', `url: "http://127.0.0.1:1", failover: ${targets} }`);

  it('reads failover targets: names, their headers and TLS, and cooldownMax', () => {
    const result = parseConfig(
      BASE.replace(
        'url: "http://127.0.0.1:1" }',
        'url: "http://127.0.0.1:1", cooldownMax: 2m, tls: { insecureSkipVerify: true }, failover: [{ name: b, url: "http://127.0.0.1:2", headers: { set: { Authorization: "Bearer b" }, remove: [X-A] } }, { url: "https://127.0.0.1:3", tls: { insecureSkipVerify: false } }] }',
      ),
      'c.yaml',
      { env: {} },
    );
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    const u = result.loaded.config.upstreams.u!;
    expect(u.cooldownMax).toBe(120_000);
    expect(u.failover.map((t) => [t.name, t.url, t.tls.insecureSkipVerify])).toEqual([
      ['u/b', 'http://127.0.0.1:2', true],
      ['u/2', 'https://127.0.0.1:3', false],
    ]);
    expect(u.failover[0]!.headers).toEqual({ set: { Authorization: 'Bearer b' }, remove: ['x-a'] });
  });

  it.each([
    [
      '[{ name: b, url: "http://127.0.0.1:2" }, { name: b, url: "http://127.0.0.1:3" }]',
      /upstreams\.u\.failover\[1\]\.name: duplicate target name "u\/b" \(also failover\[0\]\)/,
    ],
    ['[{ name: b }]', /upstreams\.u\.failover\[0\]\.url: is required but missing/],
    ['[{ url: "ftp://x" }]', /upstreams\.u\.failover\[0\]\.url/],
    [
      '[{ url: "http://127.0.0.1:2", name: "bad name" }]',
      /upstreams\.u\.failover\[0\]\.name: "bad name" is not a valid name/,
    ],
    [
      '[{ url: "http://127.0.0.1:2", weight: 3 }]',
      /upstreams\.u\.failover\[0\]\.weight: unknown key "weight" \(known keys: name, url, headers, tls, credentials\)/,
    ],
    ['{ url: "http://127.0.0.1:2" }', /upstreams\.u\.failover: must be a list/],
  ])('refuses failover %s', (targets, expected) => {
    expect(problems(failover(targets)).join('\n')).toMatch(expected);
  });

  it('refuses a cooldownMax without a unit', () => {
    expect(
      problems(BASE.replace('url: "http://127.0.0.1:1" }', 'url: "http://127.0.0.1:1", cooldownMax: 30 }')).join('\n'),
    ).toMatch(/upstreams\.u\.cooldownMax/);
  });

  it('reads fallback.stale with its defaults, and refuses what cannot work', () => {
    const result = parseConfig(`${BASE}    fallback: { stale: { maxStale: 1m } }\n`, 'c.yaml', { env: {} });
    expect(result.ok).toBe(true);
    if (result.ok)
      expect(result.loaded.config.routes[0]!.fallback.stale).toEqual({
        maxStale: 60_000,
        maxEntries: 1000,
        maxEntryBytes: 256 * 1024,
        maxBytes: 32 * 1024 * 1024,
      });
    const none = parseConfig(BASE, 'c.yaml', { env: {} });
    expect(none.ok).toBe(true);
    if (none.ok) expect(none.loaded.config.routes[0]!.fallback.stale).toBeNull();
    expect(problems(`${BASE}    fallback: { stale: { maxEntryBytes: 2MiB, maxBytes: 1MiB } }\n`).join('\n')).toMatch(
      /routes\[0\]\.fallback\.stale\.maxEntryBytes: maxEntryBytes \(2097152 bytes\) is larger than maxBytes/,
    );
    expect(problems(`${BASE}    fallback: { stale: { maxEntries: 0 } }\n`).join('\n')).toMatch(
      /routes\[0\]\.fallback\.stale\.maxEntries/,
    );
    expect(problems(`${BASE}    fallback: { stale: { maxStale: forever } }\n`).join('\n')).toMatch(
      /routes\[0\]\.fallback\.stale\.maxStale/,
    );
    expect(problems(`${BASE}    fallback: { cache: {} }\n`).join('\n')).toMatch(/routes\[0\]\.fallback.*cache/);
  });
});

describe('errorRules and providerRules (SPEC §14)', () => {
  const rules = (list: string) =>
    BASE.replace('url: "http://127.0.0.1:1" }', `url: "http://127.0.0.1:1", errorRules: ${list} }`);

  it('reads each when field and each decision', () => {
    const result = parseConfig(
      rules(
        '[{ when: { status: 400, code: Slow, header: { X-A: "1" }, message: later }, as: "429", retryable: true, breakerFailure: false, responsibility: client }]',
      ),
      'c.yaml',
      { env: {} },
    );
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.loaded.config.upstreams.u!.errorRules).toEqual([
      {
        when: { status: 400, code: 'Slow', header: { 'X-A': '1' }, message: 'later' },
        as: 429,
        retryable: true,
        breakerFailure: false,
        responsibility: 'client',
      },
    ]);
    expect(result.loaded.config.routes[0]!.errors.providerRules).toBe('auto');
    const off = parseConfig(`${BASE}    errors: { providerRules: off }\n`, 'c.yaml', { env: {} });
    expect(off.ok).toBe(true);
    if (off.ok) expect(off.loaded.config.routes[0]!.errors.providerRules).toBe('off');
  });

  it.each([
    ['[{ when: {}, as: "429" }]', /errorRules\[0\]\.when/],
    ['[{ when: { status: 400 } }]', /errorRules\[0\]/],
    ['[{ when: { status: 200 }, as: "429" }]', /errorRules\[0\]\.when\.status/],
    ['[{ when: { status: 400 }, as: "4xx" }]', /errorRules\[0\]\.as/],
    ['[{ when: { status: 400 }, as: 429 }]', /errorRules\[0\]\.as/],
    ['[{ when: { status: 400 }, retry: true }]', /errorRules\[0\]\.retry: unknown key "retry"/],
    ['[{ when: { status: 400 }, responsibility: proxy }]', /errorRules\[0\]\.responsibility/],
  ])('refuses errorRules %s', (list, expected) => {
    expect(problems(rules(list)).join('\n')).toMatch(expected);
  });

  it('refuses an unknown providerRules mode', () => {
    expect(problems(`${BASE}    errors: { providerRules: maybe }\n`).join('\n')).toMatch(/errors\.providerRules/);
  });
});

describe('priorities (SPEC §13)', () => {
  const classes =
    'priorities: { default: normal, classes: [{ name: critical }, { name: normal }, { name: batch, quotaFloor: 50% }] }\n';
  it('reads the classes, highest first, with their floors, and a header in lower case', () => {
    const result = parseConfig(`${BASE}    priority: batch\n${classes}`, 'c.yaml', { env: {} });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.loaded.config.priorities).toEqual({
      header: 'x-breakwater-priority',
      default: 'normal',
      classes: [
        { name: 'critical', quotaFloor: null },
        { name: 'normal', quotaFloor: null },
        { name: 'batch', quotaFloor: 0.5 },
      ],
      promoteAfterMs: null,
    });
    expect(result.loaded.config.routes[0]!.priority).toBe('batch');
  });

  it('reads the starvation guard, promoteAfter, off unless set', () => {
    const result = parseConfig(
      `${BASE}priorities: { default: a, promoteAfter: 1500ms, classes: [{ name: a }, { name: b }] }\n`,
      'c.yaml',
      { env: {} },
    );
    expect(result.ok && result.loaded.config.priorities?.promoteAfterMs).toBe(1500);
  });

  it.each([
    [
      `${BASE}    priority: bach\n${classes}`,
      /routes\[0\]\.priority: unknown priority class "bach"; did you mean "batch"\?/,
    ],
    [
      `${BASE}    priority: batch\n`,
      /routes\[0\]\.priority: names a priority class, but there is no priorities section/,
    ],
    [
      `${BASE}priorities: { default: norml, classes: [{ name: normal }] }\n`,
      /priorities\.default: unknown priority class "norml"; did you mean "normal"\?/,
    ],
    [
      `${BASE}priorities: { default: a, classes: [{ name: a }, { name: a }] }\n`,
      /priorities\.classes\[1\]\.name: duplicate class "a"/,
    ],
    [`${BASE}priorities: { default: a, classes: [] }\n`, /priorities\.classes/],
    [`${BASE}priorities: { classes: [{ name: a }] }\n`, /priorities.*default/],
    [
      `${BASE}priorities: { default: a, header: "bad header", classes: [{ name: a }] }\n`,
      /priorities\.header: "bad header" is not a valid header name/,
    ],
    [
      `${BASE}priorities: { default: a, classes: [{ name: a, quotaFloor: half }] }\n`,
      /priorities\.classes\[0\]\.quotaFloor: "half" is not a share/,
    ],
    [`${BASE}priorities: { default: "a b", classes: [{ name: "a b" }] }\n`, /priorities\.classes\[0\]\.name/],
    [
      `${BASE}priorities: { default: a, promoteAfter: soon, classes: [{ name: a }] }\n`,
      /priorities\.promoteAfter: "soon" is not a duration/,
    ],
    [`${BASE}priorities: { default: a, promoteAfter: 0s, classes: [{ name: a }] }\n`, /priorities\.promoteAfter/],
  ])('refuses a bad priorities config (%#)', (text, expected) => {
    expect(problems(text).join('\n')).toMatch(expected);
  });
});
