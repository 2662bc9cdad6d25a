/**
 * `breakwater validate` on bad input (SPEC §1): every problem as
 * `FILE:LINE:COL: path: message` on stderr, exit 1; a good file prints a
 * one-line summary and exits 0. Runs the built binary, one process per case.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseProblemLines, ROOT, runCli, writeTemp } from '../helpers/cli.js';

const BASE = `version: 1
upstreams:
  u:
    url: http://127.0.0.1:1
routes:
  - name: r
    upstream: u
`;

interface BadCase {
  readonly name: string;
  readonly text: string;
  readonly env?: NodeJS.ProcessEnv;
  /** The first problem printed (problems are sorted by line). */
  readonly line: number;
  readonly col: number;
  readonly path: string;
  readonly message: RegExp;
}

const BAD: readonly BadCase[] = [
  {
    name: 'a misspelled top-level key, with a suggestion',
    text: `${BASE}loging: { level: info }\n`,
    line: 8,
    col: 1,
    path: 'loging',
    message: /unknown key "loging"; did you mean "logging"\?/,
  },
  {
    name: 'a misspelled key three levels deep, with a suggestion',
    text: `version: 1
upstreams:
  u:
    url: http://127.0.0.1:1
    circuitBreaker:
      failOn: [5xx]
      opneFor: 30s
routes:
  - name: r
    upstream: u
`,
    line: 7,
    col: 7,
    path: 'upstreams.u.circuitBreaker.opneFor',
    message: /unknown key "opneFor"; did you mean "openFor"\?/,
  },
  {
    name: 'a misspelled key four levels deep in a route',
    text: `${BASE}    retry:
      backoff:
        bsae: 10ms
`,
    line: 10,
    col: 9,
    path: 'routes[0].retry.backoff.bsae',
    message: /did you mean "base"\?/,
  },
  {
    name: 'a wrong type',
    text: `version: 1
listen:
  port: true
${BASE.slice('version: 1\n'.length)}`,
    line: 3,
    col: 9,
    path: 'listen.port',
    message: /must be a whole number, got the boolean true/,
  },
  {
    name: 'a quoted number',
    text: `${BASE}    retry: { maxRetries: "3" }\n`,
    line: 8,
    col: 26,
    path: 'routes[0].retry.maxRetries',
    message: /got the string "3" \(remove the quotes/,
  },
  {
    name: 'yes for a boolean',
    text: `version: 1
logging:
  accessLog: yes
${BASE.slice('version: 1\n'.length)}`,
    line: 3,
    col: 14,
    path: 'logging.accessLog',
    message: /must be true or false, got the string "yes"/,
  },
  {
    name: 'a duration written in words',
    text: `${BASE}    timeouts: { perTry: 10 seconds }\n`,
    line: 8,
    col: 25,
    path: 'routes[0].timeouts.perTry',
    message: /"10 seconds" is not a duration: write a number with a unit/,
  },
  {
    name: 'a negative duration',
    text: `${BASE}    timeouts: { connect: -1s }\n`,
    line: 8,
    col: 26,
    path: 'routes[0].timeouts.connect',
    message: /"-1s" is negative/,
  },
  {
    name: 'a duration without a unit',
    text: `${BASE}    timeouts: { total: 5 }\n`,
    line: 8,
    col: 24,
    path: 'routes[0].timeouts.total',
    message: /must be a string, got the number 5 \(give a unit, like 2s\)/,
  },
  {
    name: 'a bad size',
    text: `version: 1
limits:
  maxBodySize: 10mb
${BASE.slice('version: 1\n'.length)}`,
    line: 3,
    col: 16,
    path: 'limits.maxBodySize',
    message: /"10mb" is not a size/,
  },
  {
    name: 'a bad rate',
    text: `${BASE}    rateLimit: { rate: 25/sec }\n`,
    line: 8,
    col: 24,
    path: 'routes[0].rateLimit.rate',
    message: /"25\/sec" is not a rate: write a number per unit \(s, min, h\)/,
  },
  {
    name: 'a zero duration where zero means nothing',
    text: `${BASE}    timeouts: { perTry: 0s }\n`,
    line: 8,
    col: 25,
    path: 'routes[0].timeouts.perTry',
    message: /must be more than zero/,
  },
  {
    name: 'a zero burst',
    text: `${BASE}    rateLimit: { rate: 5/s, burst: 0 }\n`,
    line: 8,
    col: 36,
    path: 'routes[0].rateLimit.burst',
    message: /must be at least 1, got 0/,
  },
  {
    name: 'a negative maxRetries',
    text: `${BASE}    retry: { maxRetries: -1 }\n`,
    line: 8,
    col: 26,
    path: 'routes[0].retry.maxRetries',
    message: /must be at least 0, got -1/,
  },
  {
    name: 'a zero pool size',
    text: `version: 1
upstreams:
  u:
    url: http://127.0.0.1:1
    pool: { maxSockets: 0 }
routes:
  - name: r
    upstream: u
`,
    line: 5,
    col: 25,
    path: 'upstreams.u.pool.maxSockets',
    message: /must be at least 1/,
  },
  {
    name: 'an unknown upstream, with a suggestion',
    text: `version: 1
upstreams:
  stripe:
    url: https://api.stripe.com
routes:
  - name: r
    upstream: strpe
`,
    line: 7,
    col: 15,
    path: 'routes[0].upstream',
    message: /unknown upstream "strpe"; did you mean "stripe"\?/,
  },
  {
    name: 'a duplicate route name',
    text: `${BASE}  - name: r\n    upstream: u\n`,
    line: 8,
    col: 11,
    path: 'routes[1].name',
    message: /duplicate route name "r"/,
  },
  {
    name: 'a duplicate upstream name (a duplicate YAML key)',
    text: `version: 1
upstreams:
  u:
    url: http://127.0.0.1:1
  u:
    url: http://127.0.0.1:2
routes:
  - name: r
    upstream: u
`,
    line: 5,
    col: 3,
    path: '(yaml)',
    message: /Map keys must be unique/,
  },
  {
    name: 'a YAML syntax error',
    text: `version: 1
upstreams: { u: { url: "http://127.0.0.1:1" }
routes:
  - name: r
    upstream: u
`,
    line: 3,
    col: 1,
    path: '(yaml)',
    message: /invalid YAML/,
  },
  {
    name: 'a tab in the indentation',
    text: `version: 1
upstreams:
\tu:
    url: http://127.0.0.1:1
routes:
  - name: r
    upstream: u
`,
    line: 3,
    col: 1,
    path: '(yaml)',
    message: /invalid YAML: .*[Tt]ab/,
  },
  {
    name: 'an empty file',
    text: '',
    line: 1,
    col: 1,
    path: '(root)',
    message: /the file is empty/,
  },
  {
    name: 'a file holding only a comment',
    text: '# nothing here\n',
    line: 1,
    col: 1,
    path: '(root)',
    message: /the file is empty/,
  },
  {
    name: 'a file that is a list, not a map',
    text: '- version: 1\n- routes: []\n',
    line: 1,
    col: 1,
    path: '(root)',
    message: /must be a map of keys .* got a list/,
  },
  {
    name: 'a missing environment variable',
    text: `${BASE}    headers:
      request:
        set: { Authorization: "Bearer \${env:BREAKWATER_TEST_MISSING}" }
`,
    line: 10,
    col: 31,
    path: 'routes[0].headers.request.set.Authorization',
    message: /environment variable BREAKWATER_TEST_MISSING is not set/,
  },
  {
    name: 'an environment variable whose value is then invalid',
    text: `version: 1
upstreams:
  u:
    url: \${env:BREAKWATER_TEST_URL}
routes:
  - name: r
    upstream: u
`,
    env: { BREAKWATER_TEST_URL: 'ftp://files.example.com' },
    line: 4,
    col: 10,
    path: 'upstreams.u.url',
    // SPEC §7: a problem quotes a value from ${env:} as written, never the value.
    message: /"\$\{env:BREAKWATER_TEST_URL\}" uses ftp: only http or https/,
  },
  {
    name: 'version 2',
    text: BASE.replace('version: 1', 'version: 2'),
    line: 1,
    col: 10,
    path: 'version',
    message: /unsupported config version 2: this Breakwater reads version 1/,
  },
  {
    name: 'version as a string',
    text: BASE.replace('version: 1', 'version: "1"'),
    line: 1,
    col: 10,
    path: 'version',
    message: /must be a whole number, got the string "1"/,
  },
  {
    name: 'no version',
    text: BASE.replace('version: 1\n', ''),
    line: 1,
    col: 1,
    path: 'version',
    message: /is required but missing/,
  },
  {
    name: 'a missing required key inside a map',
    text: `version: 1
upstreams:
  u:
    pool: { maxSockets: 4 }
routes:
  - name: r
    upstream: u
`,
    line: 4,
    col: 5,
    path: 'upstreams.u.url',
    message: /is required but missing/,
  },
  {
    name: 'a pathPrefix without a leading slash',
    text: `${BASE}    match: { pathPrefix: api }\n`,
    line: 8,
    col: 26,
    path: 'routes[0].match.pathPrefix',
    message: /"api" must start with "\/"/,
  },
  {
    name: 'a shared rate limit without redis',
    text: `${BASE}    rateLimit: { rate: 5/s, shared: true }\n`,
    line: 8,
    col: 37,
    path: 'routes[0].rateLimit.shared',
    message: /kept in Redis: add a redis section/,
  },
  {
    name: 'an unknown retryOn word, with a suggestion',
    text: `${BASE}    retry: { retryOn: [5XX] }\n`,
    line: 8,
    col: 24,
    path: 'routes[0].retry.retryOn[0]',
    message: /unknown condition "5XX"; did you mean "5xx"\?/,
  },
  {
    name: 'a status code in retryOn written as a number',
    text: `${BASE}    retry: { retryOn: [429] }\n`,
    line: 8,
    col: 24,
    path: 'routes[0].retry.retryOn[0]',
    message: /status codes are written as strings: "429"/,
  },
  {
    name: 'an unknown failOn word',
    text: `version: 1
upstreams:
  u:
    url: http://127.0.0.1:1
    circuitBreaker: { failOn: [timeouts] }
routes:
  - name: r
    upstream: u
`,
    line: 5,
    col: 32,
    path: 'upstreams.u.circuitBreaker.failOn[0]',
    message: /unknown condition "timeouts"; did you mean "timeout"\?/,
  },
  {
    name: 'backoff.base above backoff.max after merging defaults',
    text: `version: 1
defaults:
  retry:
    backoff: { max: 1s }
${BASE.slice('version: 1\n'.length)}    retry:
      backoff: { base: 2s }
`,
    line: 12,
    col: 24,
    path: 'routes[0].retry.backoff.base',
    message: /backoff.base \(2s\) must not be above backoff.max \(1s\)/,
  },
  {
    name: 'perTry longer than total',
    text: `${BASE}    timeouts: { perTry: 45s }\n`,
    line: 8,
    col: 25,
    path: 'routes[0].timeouts.perTry',
    message: /perTry \(45s\) must not be longer than total \(30s\)/,
  },
  {
    name: 'an upstream URL that does not parse',
    text: BASE.replace('http://127.0.0.1:1', 'api.stripe.com'),
    line: 4,
    col: 10,
    path: 'upstreams.u.url',
    message: /"api.stripe.com" is not a URL/,
  },
  {
    name: 'a route without an upstream when the forward proxy is off',
    text: BASE.replace('    upstream: u\n', '    match: { pathPrefix: /x }\n'),
    line: 6,
    col: 5,
    path: 'routes[0].upstream',
    message: /only forward-proxy routes .* may omit it/,
  },
  {
    name: 'no routes',
    text: 'version: 1\nroutes: []\n',
    line: 2,
    col: 9,
    path: 'routes',
    message: /must have at least 1 entry/,
  },
  {
    name: 'an unknown enum word, with a suggestion',
    text: `${BASE}    errors: { normalize: All }\n`,
    line: 8,
    col: 26,
    path: 'routes[0].errors.normalize',
    message: /must be one of proxy, all, off; got the string "All"; did you mean "all"\?/,
  },
  {
    name: 'the same port for proxy and admin',
    text: `version: 1
listen: { port: 8080 }
admin: { port: 8080 }
${BASE.slice('version: 1\n'.length)}`,
    line: 3,
    col: 16,
    path: 'admin.port',
    message: /both 8080/,
  },
  {
    name: 'TLS interception without its CA',
    text: `${BASE}forwardProxy:
  enabled: true
  connect: { mode: intercept }
`,
    line: 10,
    col: 20,
    path: 'forwardProxy.connect.mode',
    message: /intercept needs forwardProxy.intercept: \{ caCert, caKey, hosts \}/,
  },
];

describe('breakwater validate on bad input', () => {
  it.concurrent.each(BAD.map((c) => [c.name, c] as const))(
    'reports %s with its line and column',
    async (_name, bad) => {
      const file = writeTemp('breakwater.yaml', bad.text);
      const result = await runCli(['validate', '--config', file], { env: bad.env });
      expect(result.code, result.stderr).toBe(1);
      expect(result.stdout).toBe('');
      const problems = parseProblemLines(result.stderr);
      expect(problems.length).toBeGreaterThan(0);
      const [first] = problems;
      expect(first).toMatchObject({ file, line: bad.line, col: bad.col, path: bad.path });
      expect(first!.message).toMatch(bad.message);
    },
  );

  it('reports a missing file', async () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'breakwater-test-')), 'nope.yaml');
    const result = await runCli(['validate', '--config', file]);
    expect(result.code).toBe(1);
    expect(parseProblemLines(result.stderr)).toEqual([
      { file, line: 1, col: 1, path: '(file)', message: 'cannot read the config: no such file' },
    ]);
  });

  it('reports a directory given as the file', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'breakwater-test-'));
    const result = await runCli(['validate', '--config', dir]);
    expect(result.code).toBe(1);
    expect(parseProblemLines(result.stderr)).toEqual([
      {
        file: dir,
        line: 1,
        col: 1,
        path: '(file)',
        message: 'cannot read the config: is a directory, not a config file',
      },
    ]);
  });

  it('reports every problem of a file in one run, sorted by line', async () => {
    const file = writeTemp(
      'many.yaml',
      `version: 1
logging: { level: loud }
upstreams:
  u:
    url: ftp://x
routes:
  - name: r
    upstream: nope
    retry: { maxRetries: "2", retryOn: [bogus] }
    timeouts: { perTry: 10 seconds }
    colour: blue
`,
    );
    const result = await runCli(['validate', '--config', file]);
    expect(result.code).toBe(1);
    const problems = parseProblemLines(result.stderr);
    expect(problems.map((p) => `${p.line}:${p.col} ${p.path}`)).toEqual([
      '2:19 logging.level',
      '5:10 upstreams.u.url',
      '8:15 routes[0].upstream',
      '9:26 routes[0].retry.maxRetries',
      '9:41 routes[0].retry.retryOn[0]',
      '10:25 routes[0].timeouts.perTry',
      '11:5 routes[0].colour',
    ]);
  });
});

describe('breakwater validate on good input', () => {
  it('accepts SPEC §3 example as it is, with its environment variable set', async () => {
    const result = await runCli(['validate', '--config', path.join(ROOT, 'test/fixtures/spec-example.yaml')], {
      env: { STRIPE_KEY: 'sk_test_123' },
    });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^ok: 1 route, 1 upstream \(.*spec-example\.yaml\)\n$/);
  });

  it('uses a set environment variable', async () => {
    const file = writeTemp('env.yaml', BASE.replace('http://127.0.0.1:1', '${env:BREAKWATER_TEST_URL}'));
    const result = await runCli(['validate', '--config', file], {
      env: { BREAKWATER_TEST_URL: 'https://api.example.com' },
    });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });

  it('falls back to $BREAKWATER_CONFIG, then config/breakwater.yaml', async () => {
    const file = writeTemp('from-env.yaml', `${BASE}  - name: second\n    upstream: u\n`);
    const fromEnv = await runCli(['validate'], { env: { BREAKWATER_CONFIG: file } });
    expect(fromEnv.stdout).toBe(`ok: 2 routes, 1 upstream (${file})\n`);
    const fromDefault = await runCli(['validate']);
    expect(fromDefault.code).toBe(0);
    expect(fromDefault.stdout).toBe('ok: 1 route, 1 upstream (config/breakwater.yaml)\n');
  });

  it('accepts the shipped config/examples/intercept.yaml with a CA from ca create', async () => {
    const dir = path.join(mkdtempSync(path.join(tmpdir(), 'bw-example-ca-')), 'ca');
    expect((await runCli(['ca', 'create', '--hosts', 'api.stripe.com,*.github.com', '--out', dir])).code).toBe(0);
    const result = await runCli(['validate', '--config', 'config/examples/intercept.yaml'], {
      env: { BREAKWATER_CA: dir },
    });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });

  it.each([
    'config/breakwater.yaml',
    'config/examples/stripe.yaml',
    'config/examples/github.yaml',
    'config/examples/forward-proxy.yaml',
    'config/examples/openai.yaml',
  ])('accepts the shipped %s', async (file) => {
    const result = await runCli(['validate', '--config', file], { env: { STRIPE_KEY: 'sk', GITHUB_TOKEN: 'gh' } });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });
});
