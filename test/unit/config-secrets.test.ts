/**
 * Issue 32, in process: a header value or URL holding CR, LF or NUL after
 * `${env:}` substitution is a config problem at the value that names the
 * character (SPEC §20.6); config problems quote a secret as written or as
 * <redacted> (SPEC §7); /config hides failover targets' URL passwords and
 * header values and the tracing endpoint's password and query.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatProblem, parseConfig } from '../../src/config/index.js';
import { redactedConfig } from '../../src/observe/redact.js';
import { splitCredentials } from '../../src/runtime/upstreams.js';

const SECRET = 's3cret-v4lue';

function problems(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  const result = parseConfig(text, 'c.yaml', { env });
  return result.ok ? [] : result.problems.map(formatProblem);
}

function withHeader(value: string): string {
  return `version: 1
upstreams:
  u: { url: "http://127.0.0.1:1" }
routes:
  - name: r
    upstream: u
    headers:
      request:
        set:
          Authorization: ${value}
`;
}

describe('CR, LF and NUL in values sent on the wire (SPEC §20.6)', () => {
  it.each([
    ['a trailing line feed', `${SECRET}\n`, /a line feed \(LF/],
    ['a carriage return', `${SECRET}\rX-Evil: 1`, /a carriage return \(CR/],
    ['a NUL', `${SECRET}\0`, /a NUL character/],
  ])(
    'refuses a header value from ${env:} with %s, at the value, naming the character and not the value',
    (_name, value, named) => {
      const found = problems(withHeader('"Bearer ${env:TOKEN}"'), { TOKEN: value });
      expect(found).toHaveLength(1);
      expect(found[0]).toMatch(/^c\.yaml:10:26: routes\[0\]\.headers\.request\.set\.Authorization: holds /);
      expect(found[0]).toMatch(named);
      expect(found[0]).toContain('never trimmed');
      expect(found[0]).not.toContain(SECRET);
    },
  );

  it('refuses a literal header value with a line feed too', () => {
    expect(problems(withHeader('"abc\\r\\n"')).join('\n')).toMatch(/Authorization: holds a carriage return \(CR/);
  });

  it("refuses a failover target's header value, a response header value and URLs from ${env:} ending in a newline", () => {
    const found = problems(
      `version: 1
upstreams:
  u:
    url: "\${env:PRIMARY}"
    failover:
      - url: "\${env:SECOND}"
        headers: { set: { X-Key: "\${env:KEY}" } }
routes:
  - name: r
    upstream: u
    headers: { response: { set: { X-Served-By: "\${env:KEY}" } } }
tracing: { endpoint: "\${env:OTLP}" }
`,
      {
        PRIMARY: 'http://127.0.0.1:1\n',
        SECOND: 'http://u:pw@127.0.0.1:2\n',
        KEY: `${SECRET}\n`,
        OTLP: 'http://127.0.0.1:4318/v1/traces\n',
      },
    );
    expect(found).toEqual([
      expect.stringMatching(
        /^c\.yaml:4:10: upstreams\.u\.url: holds a line feed \(LF, \\n\): a URL cannot carry CR, LF or NUL/,
      ),
      expect.stringMatching(/^c\.yaml:6:14: upstreams\.u\.failover\[0\]\.url: holds a line feed/),
      expect.stringMatching(/^c\.yaml:7:34: upstreams\.u\.failover\[0\]\.headers\.set\.X-Key: holds a line feed/),
      expect.stringMatching(/^c\.yaml:11:48: routes\[0\]\.headers\.response\.set\.X-Served-By: holds a line feed/),
      expect.stringMatching(/^c\.yaml:12:22: tracing\.endpoint: holds a line feed/),
    ]);
    expect(found.join('\n')).not.toContain(SECRET);
    expect(found.join('\n')).not.toContain(':pw@');
  });

  it('accepts the same values without the newline', () => {
    expect(problems(withHeader('"Bearer ${env:TOKEN}"'), { TOKEN: SECRET })).toEqual([]);
  });
});

describe('config problems quote secrets as written (SPEC §7)', () => {
  it.each([
    ['a route naming an upstream from ${env:}', 'upstream: "${env:NAME}"', /unknown upstream "\$\{env:NAME\}"/],
    ['a size from ${env:}', 'retry: { bufferLimit: "${env:NAME}" }', /bufferLimit: .*\$\{env:NAME\}/],
    ['a number from ${env:}', 'retry: { maxRetries: "${env:NAME}" }', /got the string "\$\{env:NAME\}"/],
    ['a list entry from ${env:}', 'match: { methods: [GET, "x${env:NAME}"] }', /got the string "x\$\{env:NAME\}"/],
  ])('%s', (_name, line, expected) => {
    const text = `version: 1\nupstreams:\n  u: { url: "http://127.0.0.1:1" }\nroutes:\n  - name: r\n    ${line.startsWith('upstream') ? '' : 'upstream: u\n    '}${line}\n`;
    const found = problems(text, { NAME: SECRET }).join('\n');
    expect(found).toMatch(expected);
    expect(found).not.toContain(SECRET);
  });

  it('never quotes a long value from ${env:} cut short either', () => {
    const long = `${SECRET}-${'x'.repeat(80)}`;
    const found = problems(
      `version: 1\nupstreams:\n  u: { url: "http://127.0.0.1:1" }\nroutes:\n  - { name: r, upstream: u, retry: { methods: "\${env:LONG}" } }\n`,
      { LONG: long },
    );
    expect(found.join('\n')).toMatch(/\$\{env:LONG\}/);
    expect(found.join('\n')).not.toContain(SECRET);
  });

  it('hides URL passwords and the tracing query in problems about those URLs', () => {
    const found = problems(
      `version: 1
upstreams:
  u: { url: "http://user:hunter2-pw@127.0.0.1:1/?x=1" }
  v: { url: "ftp://user:\${env:PW}@127.0.0.1:1" }
routes:
  - { name: r, upstream: u }
tracing: { endpoint: "ftp://t:tr4ce-pw@127.0.0.1:4318/v1/traces?token=tok3n-secret" }
`,
      { PW: 'env-pw-secret' },
    ).join('\n');
    expect(found).toMatch(/upstreams\.u\.url: "http:\/\/user:<redacted>@127\.0\.0\.1:1\/\?x=1" carries a query/);
    expect(found).toMatch(/upstreams\.v\.url: "ftp:\/\/user:\$\{env:PW\}@127\.0\.0\.1:1" uses ftp/);
    // A query is allowed in tracing.endpoint (a collector's token), but it is secret in a problem about the URL.
    expect(found).toMatch(
      /tracing\.endpoint: "ftp:\/\/t:<redacted>@127\.0\.0\.1:4318\/v1\/traces\?<redacted>" uses ftp/,
    );
    for (const secret of ['hunter2-pw', 'env-pw-secret', 'tr4ce-pw', 'tok3n-secret'])
      expect(found).not.toContain(secret);
  });

  it('quotes a short or plain-word value from ${env:} without rewriting the words of the message', () => {
    const text =
      'version: 1\nupstreams:\n  u: { url: "http://127.0.0.1:1" }\nroutes:\n  - { name: r, upstream: u, stripPrefix: "${env:ON}", clientOverrides: "${env:NO}" }\n';
    const found = problems(text, { ON: 'true', NO: 'no' }).join('\n');
    expect(found).toMatch(/stripPrefix: must be true or false, got the string "\$\{env:ON\}"/);
    expect(found).toMatch(
      /clientOverrides: must be true or false, got the string "\$\{env:NO\}" \(write true or false/,
    );
  });

  it('leaves messages without secrets as they were', () => {
    expect(problems(withHeader('"x"').replace('upstream: u', 'upstream: w')).join('\n')).toMatch(
      /unknown upstream "w"; did you mean "u"\?/,
    );
  });
});

describe('/config (SPEC §7, §20.6)', () => {
  it("shows failover targets' URL passwords and header values, and the tracing endpoint's password, as <redacted>", () => {
    const result = parseConfig(
      `version: 1
upstreams:
  u:
    url: "http://main:m41n-pw@127.0.0.1:1"
    failover:
      - name: b
        url: "http://backup:b4ckup-pw@127.0.0.1:2"
        headers: { set: { X-Literal: l1teral-secret, Authorization: "Bearer \${env:TOKEN}" } }
routes:
  - { name: r, upstream: u }
tracing: { enabled: false, endpoint: "http://t:tr4ce-pw@127.0.0.1:4318/v1/traces?token=tr4ce-t0ken" }
`,
      'c.yaml',
      { env: { TOKEN: 'env-t0ken' } },
    );
    if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
    const shown = redactedConfig(result.loaded) as {
      upstreams: { u: { url: string; failover: { url: string; headers: { set: Record<string, string> } }[] } };
      tracing: { endpoint: string };
    };
    expect(shown.upstreams.u.url).toBe('http://main:<redacted>@127.0.0.1:1/');
    expect(shown.upstreams.u.failover[0]!.url).toBe('http://backup:<redacted>@127.0.0.1:2/');
    expect(shown.upstreams.u.failover[0]!.headers.set).toEqual({
      'X-Literal': '<redacted>',
      Authorization: '<redacted>',
    });
    // A query is accepted in tracing.endpoint (a collector's token) and shown redacted.
    expect(shown.tracing.endpoint).toMatch(/^http:\/\/t:<redacted>@127\.0\.0\.1:4318\/v1\/traces\?<redacted>$/);
    const text = JSON.stringify(shown);
    for (const secret of ['m41n-pw', 'b4ckup-pw', 'l1teral-secret', 'env-t0ken', 'tr4ce-pw', 'tr4ce-t0ken'])
      expect(text).not.toContain(secret);
  });
});

describe('/config and defaults from ${env:}', () => {
  it('hides a value of defaults from ${env:} on every route it is merged into', () => {
    const result = parseConfig(
      'version: 1\ndefaults: { timeouts: { total: "${env:TOTAL}" } }\nupstreams: { u: { url: "http://127.0.0.1:1" } }\nroutes: [{ name: r, upstream: u }]\n',
      'c.yaml',
      {
        env: { TOTAL: '31s' },
      },
    );
    if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
    const shown = redactedConfig(result.loaded) as {
      defaults: { timeouts: { total: unknown } };
      routes: { timeouts: { total: unknown } }[];
    };
    expect(shown.defaults.timeouts.total).toBe('<redacted>');
    expect(shown.routes[0]!.timeouts.total).toBe('<redacted>');
  });
});

describe("an upstream URL's user:pass@ (issue 32)", () => {
  it('becomes Authorization: Basic, percent-decoded as curl does, and leaves the URL', () => {
    const { url, authorization } = splitCredentials('http://us%40er:p%21ss@127.0.0.1:8080/base');
    expect(authorization).toBe(`Basic ${Buffer.from('us@er:p!ss').toString('base64')}`);
    expect(url.href).toBe('http://127.0.0.1:8080/base');
    expect(splitCredentials('http://127.0.0.1:8080').authorization).toBeUndefined();
  });
});

describe('admin.token and admin.tokenFile (SPEC §19.1)', () => {
  const base = 'version: 1\nupstreams: { u: { url: "http://127.0.0.1:1" } }\nroutes: [{ name: r, upstream: u }]\n';
  it('refuses a short token without quoting it, both keys at once, and a token file that does not read', () => {
    const short = problems(`${base}admin: { token: "sh0rt-secret" }\n`).join('\n');
    expect(short).toMatch(/admin\.token: must be at least 16 characters long/);
    expect(short).not.toContain('sh0rt-secret');
    expect(
      problems(`${base}admin: { token: "a-long-enough-token-1234", tokenFile: /nonexistent }\n`).join('\n'),
    ).toMatch(/admin\.tokenFile: give the admin token as token or as tokenFile, not both/);
    expect(problems(`${base}admin: { tokenFile: /nonexistent/token }\n`).join('\n')).toMatch(
      /admin\.tokenFile: cannot read \/nonexistent\/token: ENOENT/,
    );
  });

  it('reads a token file without its trailing newline, and refuses a short one without quoting it', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'breakwater-token-'));
    writeFileSync(path.join(dir, 'good'), 'a-long-enough-token-5678\n');
    writeFileSync(path.join(dir, 'short'), 'sh0rt\n');
    const good = parseConfig(`${base}admin: { tokenFile: good }\n`, path.join(dir, 'c.yaml'), { env: {} });
    if (!good.ok) throw new Error(good.problems.map(formatProblem).join('\n'));
    expect(good.loaded.config.admin.token).toBe('a-long-enough-token-5678');
    const found = problems(`${base}admin: { tokenFile: ${path.join(dir, 'short')} }\n`).join('\n');
    expect(found).toMatch(/holds fewer than 16 characters/);
    expect(found).not.toContain('sh0rt');
  });
});
