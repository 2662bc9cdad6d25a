/**
 * `breakwater stat [--admin URL] [--watch]` (SPEC §12) against a running
 * Breakwater process: the per-route table with the success rate, requests
 * per second and latency the process measured; a clear error when nothing
 * answers; `--watch` redraws until it is interrupted.
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatStats } from '../../src/observe/stat-command.js';
import { startFaultUpstream, waitUntil, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { CLI, runCli, startReplica, writeTemp, type Replica } from '../helpers/cli.js';
import { freePort } from '../helpers/net.js';
import { request } from '../helpers/proxy.js';

let upstream: FaultUpstream;
let replica: Replica;

/** The quota the upstream announces, OpenAI's way: requests and tokens (SPEC §15). */
const QUOTA = {
  'x-ratelimit-limit-requests': '500',
  'x-ratelimit-remaining-requests': '480',
  'x-ratelimit-reset-requests': '40s',
  'x-ratelimit-limit-tokens': '30000',
  'x-ratelimit-remaining-tokens': '21000',
  'x-ratelimit-reset-tokens': '50s',
};

beforeAll(async () => {
  // Every 4th request gets a 503: 75% success on route api.
  upstream = await startFaultUpstream((n) =>
    n % 4 === 0 ? { kind: 'respond', status: 503 } : { kind: 'respond', status: 200, headers: QUOTA, body: 'ok' },
  );
  const file = writeTemp(
    'stat.yaml',
    `version: 1
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
logging: { accessLog: false }
defaults: { retry: { maxRetries: 0 } }
upstreams:
  backend: { url: "${upstream.url}", circuitBreaker: { failureRate: 100 }, pacing: { enabled: true, headers: openai } }
routes:
  - { name: api, match: { pathPrefix: /api }, upstream: backend }
  - { name: idle, match: { pathPrefix: /idle }, upstream: backend }
`,
  );
  replica = await startReplica(file);
  for (let i = 0; i < 8; i++) await request(`${replica.url}/api/x`);
});

afterAll(async () => {
  await replica?.stop();
  await upstream?.close();
});

function rows(stdout: string): string[][] {
  return stdout
    .trim()
    .split('\n')
    .map((line) => line.trim().split(/\s{2,}/));
}

describe('breakwater stat', () => {
  it('prints the per-route table of a running process', async () => {
    const result = await runCli(['stat', '--admin', replica.adminUrl]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const table = rows(result.stdout);
    expect(table[0]).toEqual([
      'ROUTE',
      'UPSTREAM',
      'SUCCESS',
      'RPS',
      'LATENCY_P50',
      'LATENCY_P99',
      'RETRIES',
      'LIMITED',
      'REPORTED',
      'CACHED',
      'SAVED',
    ]);
    const api = table.find((row) => row[0] === 'api')!;
    expect(api.slice(0, 3)).toEqual(['api', 'backend', '75.00%']);
    expect(api[3]).toMatch(/^\d+\.\d\drps$/);
    expect(parseFloat(api[3]!)).toBeGreaterThan(0);
    expect(api[4]).toMatch(/^\d+(\.\d)?ms$/);
    expect(api[5]).toMatch(/^\d+(\.\d)?ms$/);
    expect(api.slice(6)).toEqual(['0.00rps', '0.00rps', '0.00rps', '-', '0.00rps']);
    // Then the quota each paced target announced, per dimension.
    const quotas = table.slice(table.findIndex((row) => row[0] === 'TARGET'));
    expect(quotas[0]).toEqual(['TARGET', 'DIMENSION', 'REMAINING', 'LIMIT', 'RESETS_IN']);
    expect(quotas.slice(1).map((row) => row.slice(0, 4))).toEqual([
      ['backend', 'requests', '480', '500'],
      ['backend', 'tokens', '21000', '30000'],
    ]);
    expect(parseInt(quotas[2]![4]!, 10)).toBeGreaterThan(30);
    // A route without traffic: no success rate, no latency.
    expect(table.find((row) => row[0] === 'idle')).toEqual([
      'idle',
      'backend',
      '-',
      '0.00rps',
      '-',
      '-',
      '0.00rps',
      '0.00rps',
      '0.00rps',
      '-',
      '0.00rps',
    ]);
    expect(result.stdout).toMatch(/\(over the last \d+ s\)\n\nTARGET/);
  });

  it('takes the admin address as host:port or from BREAKWATER_ADMIN', async () => {
    const hostPort = replica.adminUrl.replace('http://', '');
    expect((await runCli(['stat', '--admin', hostPort])).stdout).toContain('75.00%');
    expect((await runCli(['stat'], { env: { BREAKWATER_ADMIN: replica.adminUrl } })).stdout).toContain('75.00%');
  });

  it('exits 1 with a clear message when nothing answers at the admin address', async () => {
    const port = await freePort();
    const result = await runCli(['stat', '--admin', `http://127.0.0.1:${port}`]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain(`cannot read http://127.0.0.1:${port}/stats (ECONNREFUSED)`);
    expect(result.stderr).toContain('--admin');
  });

  it('--watch redraws the table until interrupted, then exits 0', async () => {
    const child = spawn(process.execPath, [CLI, 'stat', '--watch', '--admin', replica.adminUrl], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await waitUntil(() => (out.match(/^ROUTE/gm) ?? []).length >= 2, 15_000, 'two frames');
      // A pipe gets one timestamped frame after another.
      expect(out).toMatch(/^\d{4}-\d\d-\d\dT.*Z\nROUTE/m);
      child.kill('SIGINT');
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});

describe('the table', () => {
  it('pads each column to its widest cell, names left and numbers right', () => {
    const text = formatStats({
      windowSeconds: 60,
      bucketSeconds: 10,
      routes: [
        {
          route: 'a-much-longer-route',
          upstream: null,
          requests: 10,
          requestsPerSecond: 123.4,
          successRate: 99.5,
          p50Ms: 3.21,
          p99Ms: 1234.5,
          retriesPerSecond: 0.5,
          rateLimitedPerSecond: 0,
          reportedPerSecond: 0,
          cacheHitRate: null,
          savedPerSecond: 0,
          series: { requestsPerSecond: [], successRate: [], p99Ms: [], retriesPerSecond: [], rateLimitedPerSecond: [] },
        },
        {
          route: '',
          upstream: 'u',
          requests: 0,
          requestsPerSecond: 0,
          successRate: null,
          p50Ms: null,
          p99Ms: null,
          retriesPerSecond: 0,
          rateLimitedPerSecond: 0,
          reportedPerSecond: 0,
          cacheHitRate: null,
          savedPerSecond: 0,
          series: { requestsPerSecond: [], successRate: [], p99Ms: [], retriesPerSecond: [], rateLimitedPerSecond: [] },
        },
      ],
    });
    const lines = text.split('\n');
    expect(lines[1]).toBe(
      'a-much-longer-route   (request target)    99.50%    123rps         3.2ms        1235ms   0.50rps   0.00rps    0.00rps        -   0.00rps',
    );
    expect(lines[2]).toBe(
      '(no route)            u                        -   0.00rps             -             -   0.00rps   0.00rps    0.00rps        -   0.00rps',
    );
    expect(lines[3]).toBe('(over the last 60 s)');
  });
});
