/**
 * `credentials` in the config (SPEC §18): every type's keys, secrets read at
 * load (a file missing, unreadable or empty, a variable unset or empty, is
 * a problem at its `file`/`env` line), and the resolved config holding
 * references only: never a value.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatProblem, parseConfig } from '../../src/config/index.js';

const dir = mkdtempSync(path.join(tmpdir(), 'bw-config-credentials-'));
writeFileSync(path.join(dir, 'key'), 'file-secret-0123456789\n');
writeFileSync(path.join(dir, 'empty'), ' \n\n');
writeFileSync(path.join(dir, 'big'), 'x'.repeat(70 * 1024));
const ENV = { TOKEN: 'env-secret-0123456789', EMPTY: '', AWS_ACCESS_KEY_ID: 'AKID', AWS_SECRET_ACCESS_KEY: 'sk-aws' };

const file = (credentials: string, failover = '') => `version: 1
upstreams:
  u:
    url: "http://127.0.0.1:1"
    credentials: ${credentials}
${failover}routes:
  - { name: r, upstream: u }
`;

const parse = (text: string, env: NodeJS.ProcessEnv = ENV) =>
  parseConfig(text, path.join(dir, 'c.yaml'), { env, baseDir: dir });
const problems = (text: string, env?: NodeJS.ProcessEnv) => {
  const result = parse(text, env);
  return result.ok ? '' : result.problems.map(formatProblem).join('\n');
};

describe('credentials in the config (SPEC §18)', () => {
  it.each([
    [
      '{ type: bearer, secret: { file: nowhere } }',
      /c\.yaml:5:\d+: upstreams\.u\.credentials\.secret\.file: cannot read .*nowhere: ENOENT/,
    ],
    ['{ type: bearer, secret: { file: empty } }', /upstreams\.u\.credentials\.secret\.file: .*empty is empty/],
    ['{ type: bearer, secret: { file: big } }', /upstreams\.u\.credentials\.secret\.file: .*larger than 64 KiB/],
    [
      '{ type: bearer, secret: { env: MISSING } }',
      /upstreams\.u\.credentials\.secret\.env: environment variable MISSING is not set/,
    ],
    [
      '{ type: bearer, secret: { env: EMPTY } }',
      /upstreams\.u\.credentials\.secret\.env: environment variable EMPTY is empty/,
    ],
    ['{ type: bearer, secret: { env: TOKEN, file: key } }', /upstreams\.u\.credentials\.secret: /],
    ['{ type: bearer, secret: {} }', /upstreams\.u\.credentials\.secret: /],
    ['{ type: bearer }', /upstreams\.u\.credentials: type bearer needs secret/],
    [
      '{ type: bearer, secret: { env: TOKEN }, username: x }',
      /upstreams\.u\.credentials\.username: type bearer does not take username/,
    ],
    ['{ type: header, secret: { env: TOKEN } }', /type header needs header/],
    [
      '{ type: header, header: Content-Length, secret: { env: TOKEN } }',
      /credentials\.header: Content-Length frames the request/,
    ],
    ['{ type: basic, password: { env: TOKEN } }', /type basic needs username/],
    ['{ type: oauth2, clientId: a, clientSecret: { env: TOKEN } }', /type oauth2 needs tokenUrl/],
    ['{ type: oauth2, tokenUrl: "ftp://x", clientId: a, clientSecret: { env: TOKEN } }', /credentials\.tokenUrl: /],
    [
      '{ type: oauth2, tokenUrl: "http://x", clientId: a, clientSecret: { env: TOKEN }, clientAuth: jwt }',
      /credentials\.clientAuth: /,
    ],
    ['{ type: aws-sigv4, region: eu-west-1 }', /type aws-sigv4 needs service/],
    ['{ type: aws-sigv4, region: "EU WEST", service: s3 }', /credentials\.region: /],
    ['{ type: kerberos }', /credentials\.type: /],
  ])('explains credentials: %s', (credentials, expected) => {
    expect(problems(file(credentials))).toMatch(expected);
  });

  it("points at a failover target's own secret", () => {
    const failover = `    failover:\n      - { url: "http://127.0.0.1:2", credentials: { type: bearer, secret: { file: gone } } }\n`;
    expect(problems(file('{ type: bearer, secret: { env: TOKEN } }', failover))).toMatch(
      /c\.yaml:7:\d+: upstreams\.u\.failover\[0\]\.credentials\.secret\.file: cannot read/,
    );
  });

  it("names SigV4's default variables when they are not set; the session token may be absent", () => {
    expect(problems(file('{ type: aws-sigv4, region: eu-west-1, service: s3 }'), {})).toMatch(
      /upstreams\.u\.credentials: accessKeyId is not written and its default, environment variable AWS_ACCESS_KEY_ID, is not set/,
    );
    expect(problems(file('{ type: aws-sigv4, region: eu-west-1, service: s3 }'))).toBe('');
  });

  it('what is not a regular file (a folder, a FIFO that would block the read for ever) is a problem too', () => {
    expect(problems(file('{ type: bearer, secret: { file: . } }'))).toMatch(
      /credentials\.secret\.file: .* is not a regular file/,
    );
    execFileSync('mkfifo', [path.join(dir, 'fifo')]);
    expect(problems(file('{ type: bearer, secret: { file: fifo } }'))).toMatch(/fifo is not a regular file/);
  });

  it('resolves references, never values; the values travel beside the config', () => {
    const result = parse(
      file(
        '{ type: oauth2, tokenUrl: "http://127.0.0.1:9/token", clientId: bw, clientSecret: { file: key }, refreshBefore: 10s }',
        '    failover:\n      - { url: "http://127.0.0.1:2", credentials: { type: header, header: Api-Key, secret: { env: TOKEN } } }\n',
      ),
    );
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    const upstream = result.loaded.config.upstreams.u!;
    expect(upstream.credentials).toEqual({
      type: 'oauth2',
      tokenUrl: 'http://127.0.0.1:9/token',
      clientId: 'bw',
      clientSecret: { file: path.join(dir, 'key') },
      scope: null,
      audience: null,
      clientAuth: 'basic',
      refreshBefore: 10_000,
      timeout: 5000,
    });
    expect(upstream.failover[0]!.credentials).toEqual({
      type: 'header',
      header: 'api-key',
      prefix: '',
      secret: { env: 'TOKEN' },
    });
    const text = JSON.stringify(result.loaded.config);
    expect(text).not.toContain('file-secret');
    expect(text).not.toContain('env-secret');
    expect(result.loaded.secrets.get(`file:${path.join(dir, 'key')}`)).toBe('file-secret-0123456789');
    expect(result.loaded.secrets.get('env:TOKEN')).toBe('env-secret-0123456789');
  });

  it('no credentials: null, and nothing read', () => {
    const result = parse(
      `version: 1\nupstreams: { u: { url: "http://127.0.0.1:1" } }\nroutes: [{ name: r, upstream: u }]\n`,
    );
    expect(result.ok && result.loaded.config.upstreams.u!.credentials).toBeNull();
    expect(result.ok && result.loaded.secrets.size).toBe(0);
  });
});
