/**
 * `breakwater run`, `schema`, `--help`, `--version` and the commands that do
 * not exist yet (SPEC §1), run as the built binary.
 */
import { execFile, spawn } from 'node:child_process';
import net from 'node:net';
import { Ajv } from 'ajv';
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { CLI, parseProblemLines, ROOT, runCli, writeTemp } from '../helpers/cli.js';
import { freePort } from '../helpers/net.js';

/** True when nothing listens on the port: we can bind it ourselves. */
async function portIsFree(port: number): Promise<boolean> {
  const server = net.createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

function config(proxyPort: number, adminPort: number, extra = ''): string {
  return `version: 1
listen: { host: 127.0.0.1, port: ${proxyPort} }
admin: { host: 127.0.0.1, port: ${adminPort} }
upstreams:
  u: { url: "http://127.0.0.1:1" }
routes:
  - name: r
    upstream: u
${extra}`;
}

describe('breakwater run', () => {
  it('exits 1 on an invalid file with the problem lines, before binding any port', async () => {
    const [proxyPort, adminPort] = [await freePort(), await freePort()];
    const file = writeTemp('bad.yaml', config(proxyPort, adminPort, '    retry: { maxRetries: "3" }\n'));
    const result = await runCli(['run', '--config', file]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(parseProblemLines(result.stderr)).toEqual([
      {
        file,
        line: 9,
        col: 26,
        path: 'routes[0].retry.maxRetries',
        message: expect.stringMatching(/must be a whole number/) as unknown,
      },
    ]);
    expect(await portIsFree(proxyPort)).toBe(true);
    expect(await portIsFree(adminPort)).toBe(true);
  });

  it('reports the config problems, not a bind error, when the configured port is taken', async () => {
    // If run bound before validating, it would fail with EADDRINUSE here.
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const taken = (blocker.address() as net.AddressInfo).port;
    try {
      const file = writeTemp('bad.yaml', config(await freePort(), taken, 'bogus: 1\n'));
      const result = await runCli(['--config', file]);
      expect(result.code).toBe(1);
      expect(result.stderr).not.toMatch(/address in use/);
      expect(parseProblemLines(result.stderr).map((p) => p.path)).toEqual(['bogus']);
    } finally {
      blocker.close();
    }
  });

  it('exits 1 on a missing file', async () => {
    const result = await runCli(['run', '--config', '/nonexistent/breakwater.yaml']);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('/nonexistent/breakwater.yaml:1:1: (file): cannot read the config: no such file\n');
  });

  it('serves /healthz on the admin port and exits 0 on SIGTERM', async () => {
    const adminPort = await freePort();
    const file = writeTemp('good.yaml', config(0, adminPort));
    const child = spawn(process.execPath, [CLI, 'run', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      let response: Response | undefined;
      for (let i = 0; i < 100 && !response; i++) {
        response = await fetch(`http://127.0.0.1:${adminPort}/healthz`).catch(() => undefined);
        if (!response) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(response?.status).toBe(200);
      expect(await response!.text()).toBe('ok\n');
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      const lines = stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      expect(lines.map((line) => line.msg)).toEqual(['listening', 'shutting down']);
      expect(lines[0]).toMatchObject({ level: 'info', routes: 1, upstreams: 1 });
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('exits 1 with a clear message when the admin port is taken', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const taken = (blocker.address() as net.AddressInfo).port;
    try {
      const result = await runCli(['run', '--config', writeTemp('taken.yaml', config(0, taken))]);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/^breakwater: cannot start: address in use/);
    } finally {
      blocker.close();
    }
  });
});

describe('breakwater schema', () => {
  it('prints a JSON Schema that accepts SPEC §3 example and refuses an unknown key', async () => {
    const result = await runCli(['schema']);
    expect(result.code).toBe(0);
    const schema = JSON.parse(result.stdout) as Record<string, unknown>;
    expect(schema.$schema).toBe('http://json-schema.org/draft-07/schema#');
    const validate = new Ajv({ strict: false, validateFormats: false }).compile(schema);
    const example = parse(readFileSync(path.join(ROOT, 'test/fixtures/spec-example.yaml'), 'utf8')) as Record<
      string,
      unknown
    >;
    expect(validate(example), JSON.stringify(validate.errors)).toBe(true);
    expect(validate({ ...example, retries: 3 })).toBe(false);
    expect(validate({ ...example, shutdown: { drainTimeout: '20 seconds' } })).toBe(false);
  });
});

describe('breakwater usage', () => {
  it('prints help and exits 0', async () => {
    const result = await runCli(['--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^Usage: breakwater/);
    expect(result.stdout).toMatch(/validate/);
  });

  it('prints the package version', async () => {
    const { version } = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const result = await runCli(['--version']);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`breakwater ${version}\n`);
  });

  it('exits 2 on an unknown command, with a suggestion', async () => {
    const result = await runCli(['valdate']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/unknown command "valdate"; did you mean "validate"\?/);
  });

  it('exits 2 on an unknown option', async () => {
    const result = await runCli(['validate', '--confg', 'x']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--confg/);
  });
});

describe('breakwater ca create', () => {
  it('writes a name-constrained CA, the key owner-only, and says how to trust it', async () => {
    const out = path.join(mkdtempSync(path.join(os.tmpdir(), 'bw-ca-')), 'ca');
    const result = await runCli(['ca', 'create', '--hosts', 'api.example.com,*.github.com', '--out', out]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(`NODE_EXTRA_CA_CERTS=${out}/ca.crt`);
    expect(result.stdout).toContain(`REQUESTS_CA_BUNDLE=${out}/bundle.pem`);
    expect(result.stdout).toContain('keytool -importcert');
    expect(result.stdout).toContain('hosts: ["api.example.com", "*.github.com"]');
    expect(statSync(path.join(out, 'ca.key')).mode & 0o777).toBe(0o600);
    const text = await new Promise<string>((resolve) =>
      execFile('openssl', ['x509', '-in', path.join(out, 'ca.crt'), '-noout', '-text'], (_error, stdout) =>
        resolve(stdout),
      ),
    );
    expect(text).toMatch(
      /X509v3 Name Constraints: critical\s+Permitted:\s+DNS:api\.example\.com\s+DNS:github\.com\s+Excluded:\s+IP:0\.0\.0\.0/,
    );
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    expect(text).toContain('ASN1 OID: prime256v1');
    // The bundle is the system roots plus this CA.
    const bundle = readFileSync(path.join(out, 'bundle.pem'), 'utf8');
    expect(bundle.endsWith(readFileSync(path.join(out, 'ca.crt'), 'utf8'))).toBe(true);
    expect(bundle.split('BEGIN CERTIFICATE').length).toBeGreaterThan(50);
    // Never overwrites a key apps may already trust.
    const again = await runCli(['ca', 'create', '--hosts', 'api.example.com', '--out', out]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already exists: refusing to overwrite/);
  });

  it.each([
    [
      ['ca', 'create', '--hosts', 'api.example.com:443', '--out', '/tmp/bw-never'],
      /"api.example.com:443" is not a host name/,
    ],
    [['ca', 'create', '--hosts', '*', '--out', '/tmp/bw-never'], /"\*" is not a host name/],
    [['ca', 'create', '--out', '/tmp/bw-never'], /needs --hosts/],
    [['ca', 'make'], /did you mean "ca create"/],
  ])('refuses %j with exit 2', async (args, message) => {
    const result = await runCli(args);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(existsSync('/tmp/bw-never')).toBe(false);
  });
});
