/**
 * Issue 32, "Secrets leak" (SPEC §7, §20.6), on the real binary: a failover
 * target's URL password and header values (literal and `${env:}`), the
 * tracing endpoint's credentials, a Redis password and an upstream URL's
 * `user:pass@` never show in an admin answer, a log line, a problem body,
 * the error journal, a metric or a span; a refused reload quotes an
 * `${env:}` value as written, and putting the file back clears the failure;
 * a header value from `${env:}` ending in a newline is a config problem at
 * validate, run and reload; `user:pass@` reaches the upstream as Basic.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, waitUntil, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { startOtlpReceiver, type OtlpReceiver } from '../fixtures/otlp-receiver.js';
import { CLI, parseProblemLines, runCli } from '../helpers/cli.js';
import { request } from '../helpers/proxy.js';

const ENV_TOKEN = 'env-t0ken-s3cret';
const SECRETS = {
  upstreamPassword: 'upstr3am-pass!',
  failoverPassword: 'f41lover-pass',
  deadPassword: 'd3ad-pass',
  literalHeader: 'l1teral-header-s3cret',
  envToken: ENV_TOKEN,
  tracePassword: 'tr4ce-pass',
  redisPassword: 'r3dis-pass',
};
/** Every secret, and the Basic credentials as they would read in base64. */
const FORBIDDEN = [
  ...Object.values(SECRETS),
  encodeURIComponent(SECRETS.upstreamPassword),
  Buffer.from(`echo@user:${SECRETS.upstreamPassword}`).toString('base64'),
  Buffer.from(`duser:${SECRETS.deadPassword}`).toString('base64'),
];

let upstream: FaultUpstream;
let otlp: OtlpReceiver;
let closedPort: number;

beforeAll(async () => {
  upstream = await startFaultUpstream(() => ({ kind: 'echo' }));
  otlp = await startOtlpReceiver();
  const server = http.createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  closedPort = (server.address() as AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
});

afterAll(async () => {
  await upstream.close();
  await otlp.close();
});

function config(extraRoutes = ''): string {
  return `version: 1
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
tracing: { enabled: true, endpoint: "${otlp.url.replace('http://', `http://tuser:${SECRETS.tracePassword}@`)}", protocol: http/json }
redis: { url: "redis://:${SECRETS.redisPassword}@127.0.0.1:${closedPort}" }
defaults:
  retry: { backoff: { base: 1ms, max: 2ms } }
upstreams:
  echo: { url: "http://echo%40user:${encodeURIComponent(SECRETS.upstreamPassword)}@127.0.0.1:${upstream.port}" }
  flaky:
    url: "http://127.0.0.1:${closedPort}"
    failover:
      - name: b
        url: "http://fuser:${SECRETS.failoverPassword}@127.0.0.1:${upstream.port}"
        headers: { set: { X-Literal: "${SECRETS.literalHeader}", Authorization: "Bearer \${env:BW_TOKEN}" } }
  dead: { url: "http://duser:${SECRETS.deadPassword}@127.0.0.1:${closedPort}" }
routes:
  - { name: echo, match: { pathPrefix: /echo }, upstream: echo }
  - { name: tokened, match: { pathPrefix: /tokened }, upstream: echo, headers: { request: { set: { Authorization: "Bearer \${env:BW_TOKEN}" } } } }
  - { name: flaky, match: { pathPrefix: /flaky }, upstream: flaky }
  - { name: dead, match: { pathPrefix: /dead }, upstream: dead, retry: { maxRetries: 0 } }
${extraRoutes}`;
}

interface Running {
  readonly child: ChildProcess;
  readonly proxyUrl: string;
  readonly adminUrl: string;
  out(): string;
  lines(): Record<string, unknown>[];
  stop(): Promise<number | null>;
}

async function run(file: string, env: NodeJS.ProcessEnv): Promise<Running> {
  const child = spawn(process.execPath, [CLI, 'run', '--config', file], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH, ...env },
  });
  let out = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await waitUntil(() => out.includes('"msg":"listening"') || child.exitCode !== null, 15_000, 'breakwater to listen');
  const lines = () =>
    out
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  const listening = lines().find((line) => line.msg === 'listening');
  if (!listening) throw new Error(`breakwater did not start: ${out}`);
  return {
    child,
    proxyUrl: `http://${String(listening.listen)}`,
    adminUrl: `http://${String(listening.admin)}`,
    out: () => out,
    lines,
    stop: () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

function expectNoSecret(text: string, where: string): void {
  for (const secret of FORBIDDEN) expect(text.includes(secret), `${where} shows ${secret}`).toBe(false);
}

type Status = { lastReload: { result: string; problems: string[] } | null };

describe('secrets (issue 32)', () => {
  let dir: string;
  let file: string;
  let app: Running;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'breakwater-secrets-'));
    file = path.join(dir, 'breakwater.yaml');
    writeFileSync(file, config());
    app = await run(file, { BW_TOKEN: ENV_TOKEN, BW_NL: 'nl-s3cret\n' });
  });

  afterAll(async () => {
    if (app.child.exitCode === null) await app.stop();
  });

  it("sends an upstream URL's user:pass@ as Authorization: Basic, percent-decoded, unless the route or target sets Authorization", async () => {
    const echoed = async (target: string) =>
      (await request(`${app.proxyUrl}${target}`, { headers: { authorization: 'Bearer from-the-client' } })).json<{
        headers: http.IncomingHttpHeaders;
      }>().headers;
    expect((await echoed('/echo/x')).authorization).toBe(
      `Basic ${Buffer.from(`echo@user:${SECRETS.upstreamPassword}`).toString('base64')}`,
    );
    expect((await echoed('/tokened/x')).authorization).toBe(`Bearer ${ENV_TOKEN}`);
    const res = await request(`${app.proxyUrl}/flaky/x`);
    expect(res.headers['x-breakwater-target']).toBe('flaky/b');
    const headers = res.json<{ headers: http.IncomingHttpHeaders }>().headers;
    expect(headers.authorization).toBe(`Bearer ${ENV_TOKEN}`);
    expect(headers['x-literal']).toBe(SECRETS.literalHeader);
  });

  it('shows no secret in /config, /status, /errors, /stats, /metrics, the dashboard, a problem body or a log line', async () => {
    const dead = await request(`${app.proxyUrl}/dead/x`);
    expect(dead.status).toBe(502);
    expectNoSecret(dead.text, 'the problem body');
    for (const page of ['/config', '/status', '/errors', '/stats', '/metrics', '/'])
      expectNoSecret((await request(`${app.adminUrl}${page}`)).text, page);
    const shown = (await request(`${app.adminUrl}/config`)).json<{
      upstreams: Record<string, { url: string; failover: { url: string; headers: { set: Record<string, string> } }[] }>;
      tracing: { endpoint: string };
      redis: { url: string };
    }>();
    expect(shown.upstreams.flaky!.failover[0]!.url).toMatch(/^http:\/\/fuser:<redacted>@127\.0\.0\.1:\d+\/$/);
    expect(shown.upstreams.flaky!.failover[0]!.headers.set).toEqual({
      'X-Literal': '<redacted>',
      Authorization: '<redacted>',
    });
    expect(shown.upstreams.echo!.url).toMatch(/^http:\/\/echo%40user:<redacted>@127\.0\.0\.1:\d+\/$/);
    expect(shown.tracing.endpoint).toMatch(/^http:\/\/tuser:<redacted>@127\.0\.0\.1:\d+\/v1\/traces$/);
    expect(shown.redis.url).toMatch(/^redis:\/\/:<redacted>@127\.0\.0\.1:\d+$/);
    const status = (await request(`${app.adminUrl}/status`)).json<{
      upstreams: { name: string; targets: { name: string; url: string }[] }[];
    }>();
    expect(status.upstreams.find((u) => u.name === 'flaky')!.targets.map((t) => t.url)).toEqual([
      expect.stringMatching(/^http:\/\/127/),
      expect.stringMatching(/^http:\/\/fuser:<redacted>@/),
    ]);
    await waitUntil(
      () => app.lines().filter((line) => line.msg === 'access').length >= 4,
      5_000,
      'the access log lines',
    );
    expectNoSecret(app.out(), 'the logs');
  });

  it('quotes an ${env:} value as written in a refused reload (logs and /status), and clears the failure once the file is put back', async () => {
    const good = config();
    writeFileSync(file, good.replace('upstream: dead, retry', 'upstream: "${env:BW_TOKEN}", retry'));
    app.child.kill('SIGHUP');
    await waitUntil(
      () => app.lines().some((line) => String(line.msg).startsWith('config reload refused')),
      10_000,
      'the refusal',
    );
    const refused = (await request(`${app.adminUrl}/status`)).json<Status>().lastReload!;
    expect(refused.result).toBe('failure');
    expect(refused.problems.join('\n')).toContain('unknown upstream "${env:BW_TOKEN}"');
    expectNoSecret(JSON.stringify(refused), '/status.lastReload');
    expectNoSecret(app.out(), 'the logs');
    // The file as it was: the watch loads it again, though it hashes like the running config.
    writeFileSync(file, good);
    await waitUntil(
      () => app.lines().some((line) => line.msg === 'config reloaded'),
      10_000,
      'the reload of the restored file',
    );
    expect((await request(`${app.adminUrl}/status`)).json<Status>().lastReload).toMatchObject({
      result: 'success',
      problems: [],
    });
  });

  it('refuses a reload whose header value from ${env:} ends in a newline, naming the character; the running config stays', async () => {
    const before = (await request(`${app.adminUrl}/config`)).text;
    const refusals = () => app.lines().filter((line) => String(line.msg).startsWith('config reload refused')).length;
    const already = refusals();
    writeFileSync(
      file,
      config(
        '  - { name: nl, match: { pathPrefix: /nl }, upstream: echo, headers: { request: { set: { X-Key: "${env:BW_NL}" } } } }\n',
      ),
    );
    app.child.kill('SIGHUP');
    await waitUntil(() => refusals() > already, 10_000, 'the refusal');
    const refused = (await request(`${app.adminUrl}/status`)).json<Status>().lastReload!;
    expect(refused.result).toBe('failure');
    expect(refused.problems).toEqual([
      expect.stringMatching(/:22:\d+: routes\[4\]\.headers\.request\.set\.X-Key: holds a line feed \(LF/),
    ]);
    expect(app.out()).not.toContain('nl-s3cret');
    expect((await request(`${app.proxyUrl}/nl/x`)).status).toBe(404);
    expect((await request(`${app.adminUrl}/config`)).text).toBe(before);
  });

  it('exports spans without a secret', async () => {
    expect(await app.stop()).toBe(0);
    await waitUntil(() => otlp.spans.length > 0, 10_000, 'the spans');
    expectNoSecret(JSON.stringify(otlp.spans), 'the spans');
    expectNoSecret(app.out(), 'the logs');
  });
});

describe('an ${env:} header value ending in a newline (SPEC §20.6)', () => {
  const text = `version: 1
upstreams:
  u:
    url: http://127.0.0.1:1
    failover:
      - url: http://127.0.0.1:2
        headers: { set: { Authorization: "Bearer \${env:BW_TOKEN}" } }
routes:
  - { name: r, upstream: u }
`;

  it.each(['validate', 'run'])(
    'is a problem at %s: exit 1, FILE:LINE:COL, "a line feed", never the value',
    async (command) => {
      const file = path.join(mkdtempSync(path.join(tmpdir(), 'breakwater-secrets-')), 'nl.yaml');
      writeFileSync(file, text);
      const result = await runCli([command, '--config', file], { env: { BW_TOKEN: `${ENV_TOKEN}\n` } });
      expect(result.code).toBe(1);
      expect(parseProblemLines(result.stderr)).toEqual([
        {
          file,
          line: 7,
          col: 42,
          path: 'upstreams.u.failover[0].headers.set.Authorization',
          message: expect.stringMatching(/^holds a line feed \(LF, \\n\)/) as string,
        },
      ]);
      expect(result.stdout + result.stderr).not.toContain(ENV_TOKEN);
    },
  );
});
