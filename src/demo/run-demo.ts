/**
 * `breakwater demo`: the resilience benchmark's flaky upstream (503, 429
 * with Retry-After, slow answers, resets, and a 2 s outage every 10 s) and
 * Breakwater in front of it with every policy at its default; the same
 * open-loop traffic (40 requests/s for 16 s, every tenth a POST with an
 * Idempotency-Key) sent directly and through Breakwater at the same time, to
 * two upstreams that draw the same fates, and a side-by-side table of what
 * the app saw. Offline, under 30 s, leaves nothing running.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { startApp } from '../app.js';
import { parseConfig, formatProblem } from '../config/index.js';
import { BENCH_PROFILE, startFlakyUpstream, type Fate, type FlakyProfile } from './flaky-upstream.js';
import { percentile, runOpenLoop, successRate, type Outcome } from './open-loop.js';

const RATE = 40;
const DURATION_MS = 16_000;
const TIMEOUT_MS = 10_000;
/** The benchmark's pattern, with its 2 s outage every 10 s instead of 15 s so that 16 s show two. */
const PROFILE: FlakyProfile = { ...BENCH_PROFILE, outage: { periodMs: 10_000, atMs: 4_000, lengthMs: 2_000 } };

function summary(outcomes: readonly Outcome[]): { success: number; p50: number; p99: number; errors: Map<string, number> } {
  const errors = new Map<string, number>();
  for (const outcome of outcomes) if (!outcome.ok) errors.set(outcome.label, (errors.get(outcome.label) ?? 0) + 1);
  const ms = outcomes.map((outcome) => outcome.ms);
  return { success: successRate(outcomes), p50: percentile(ms, 0.5), p99: percentile(ms, 0.99), errors };
}

export async function runDemo(write: (text: string) => void = (text) => process.stdout.write(text)): Promise<number> {
  const [directUpstream, upstream] = await Promise.all([startFlakyUpstream(PROFILE), startFlakyUpstream(PROFILE)]);
  const result = parseConfig(
    `version: 1
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
logging: { level: warn, accessLog: false }
upstreams:
  flaky: { url: ${upstream.url} }
routes:
  - { name: demo, upstream: flaky }
`,
    'demo.yaml',
    { env: {} },
  );
  if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
  const silent = pino({ level: 'warn' }, new Writable({ write: (_chunk, _encoding, callback) => callback() }));
  const app = await startApp(result.loaded, silent);
  try {
    write(
      `Breakwater demo: ${RATE} requests/s for ${DURATION_MS / 1000} s (every tenth a POST with an Idempotency-Key), open loop, to an upstream that answers 503 (20%), 429 with Retry-After: 1 (7%), slowly (6%, 1.5 s), resets (5%), and resets everything for 2 s of every 10 s. Breakwater runs with every default.\n\n`,
    );
    directUpstream.start();
    upstream.start();
    const load = { rate: RATE, durationMs: DURATION_MS, timeoutMs: TIMEOUT_MS, postEvery: 10 };
    const [directOutcomes, throughOutcomes] = await Promise.all([
      runOpenLoop({ ...load, url: directUpstream.url, tag: 'demo' }),
      runOpenLoop({ ...load, url: `http://127.0.0.1:${app.port}`, tag: 'demo' }),
    ]);
    const direct = summary(directOutcomes);
    const through = summary(throughOutcomes);

    const pct = (value: number) => `${(value * 100).toFixed(1)}%`;
    const errors = (map: Map<string, number>) =>
      [...map]
        .sort((a, b) => b[1] - a[1])
        .map(([label, n]) => `${label} x${n}`)
        .join(', ') || 'none';
    const served = (s: Record<Fate, number>) => `${s.ok + s.slow} ok (${s.slow} slow), ${s['503']} 503, ${s['429']} 429, ${s.reset + s.outage} reset (${s.outage} in outages)`;
    const perRequest = (n: number, of: number) => (n / of).toFixed(2);
    const rows = [
      ['', 'app -> upstream', 'app -> Breakwater -> upstream'],
      ['success rate', pct(direct.success), pct(through.success)],
      ['p50 latency', `${direct.p50.toFixed(0)} ms`, `${through.p50.toFixed(0)} ms`],
      ['p99 latency', `${direct.p99.toFixed(0)} ms`, `${through.p99.toFixed(0)} ms`],
      ['errors the app saw', errors(direct.errors), errors(through.errors)],
      ['upstream attempts per request', perRequest(directUpstream.attempts(), directOutcomes.length), perRequest(upstream.attempts(), throughOutcomes.length)],
      ['what the upstream did', served(directUpstream.fates), served(upstream.fates)],
    ];
    const widths = [0, 1, 2].map((column) => Math.max(...rows.map((row) => row[column]!.length)));
    for (const [index, row] of rows.entries()) {
      write(`| ${row.map((cell, column) => cell.padEnd(widths[column]!)).join(' | ')} |\n`);
      if (index === 0) write(`| ${widths.map((width) => '-'.repeat(width)).join(' | ')} |\n`);
    }
    write(
      `\nBreakwater retried 503s, resets and 429s (after their Retry-After) within a retry budget, held requests through the short outages instead of failing them, and would fail fast if an outage lasted longer than 2 s.\n`,
    );
    return through.success > direct.success ? 0 : 1;
  } finally {
    await app.close(100);
    await Promise.all([directUpstream.close(), upstream.close()]);
  }
}
