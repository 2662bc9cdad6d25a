/**
 * `breakwater demo`: the resilience benchmark's flaky upstream (503, 429
 * with Retry-After, slow answers, resets, and a 2 s outage every 10 s) and
 * Breakwater in front of it; the same open-loop traffic (40 requests/s for
 * 16 s, every tenth a POST with an Idempotency-Key, reads coming back to the
 * same 40 items) sent at the same time directly, through Breakwater with
 * every default, and through Breakwater with a second target (another
 * region of the same API: its own flaky draws, not the primary's outages)
 * and stale reads (SPEC §8), each to upstreams that draw the same fates, and
 * a side-by-side table of what the app saw. Offline, under 30 s, leaves
 * nothing running.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { startApp, type App } from '../app.js';
import { parseConfig, formatProblem } from '../config/index.js';
import {
  BENCH_PROFILE,
  startFlakyUpstream,
  type Fate,
  type FlakyProfile,
  type FlakyUpstream,
} from './flaky-upstream.js';
import { percentile, runOpenLoop, successRate, type Outcome } from './open-loop.js';

const RATE = 40;
const DURATION_MS = 16_000;
const TIMEOUT_MS = 10_000;
/** The benchmark's pattern, with its 2 s outage every 10 s instead of 15 s so that 16 s show two. */
const PROFILE: FlakyProfile = {
  ...BENCH_PROFILE,
  pQuota: 0.03,
  outage: { periodMs: 10_000, atMs: 4_000, lengthMs: 2_000 },
};

interface Summary {
  readonly success: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: Map<string, number>;
}

function summary(outcomes: readonly Outcome[]): Summary {
  const errors = new Map<string, number>();
  for (const outcome of outcomes) if (!outcome.ok) errors.set(outcome.label, (errors.get(outcome.label) ?? 0) + 1);
  const ms = outcomes.map((outcome) => outcome.ms);
  return { success: successRate(outcomes), p50: percentile(ms, 0.5), p99: percentile(ms, 0.99), errors };
}

/** The second region: flaky like the primary but with its own draws, without its outages, on an account with credit. */
const SECOND_REGION: FlakyProfile = { ...PROFILE, seed: 7, pQuota: 0, outage: null };

const silent = pino({ level: 'warn' }, new Writable({ write: (_chunk, _encoding, callback) => callback() }));

async function startBreakwater(upstreams: string, route: string): Promise<App> {
  const result = parseConfig(
    `version: 1
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
logging: { level: warn, accessLog: false }
defaults:
  errors: { normalize: all }   # the app reads one error body: code, whose fault, the first step to fix it
upstreams:
${upstreams}
routes:
  - ${route}
`,
    'demo.yaml',
    { env: {} },
  );
  if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
  return startApp(result.loaded, silent);
}

function table(rows: string[][], write: (text: string) => void): void {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  for (const [index, row] of rows.entries()) {
    write(`| ${row.map((cell, column) => cell.padEnd(widths[column]!)).join(' | ')} |\n`);
    if (index === 0) write(`| ${widths.map((width) => '-'.repeat(width)).join(' | ')} |\n`);
  }
}

const pct = (value: number) => `${(value * 100).toFixed(1)}%`;
const errorsOf = (map: Map<string, number>) =>
  [...map]
    .sort((a, b) => b[1] - a[1])
    .map(([label, n]) => `${label} x${n}`)
    .join(', ') || 'none';
const served = (s: Record<Fate, number>) =>
  `${s.ok + s.slow} ok (${s.slow} slow), ${s['503']} 503, ${s['429'] + s.quota} 429 (${s.quota} no credit), ${s.reset + s.outage} reset (${s.outage} in outages)`;

/** What the app got for the answers that said the account has no credit (OpenAI's insufficient_quota). */
function noCredit(outcomes: readonly Outcome[], upstream: FlakyUpstream): string {
  const quota = outcomes.filter((o) => o.problem?.code === 'UPSTREAM_QUOTA_EXHAUSTED');
  if (quota.length === 0) return `${upstream.fates.quota} passed on as a bare 429`;
  const once = quota.filter((o) => o.attempts === 1).length;
  return `${quota.length} UPSTREAM_QUOTA_EXHAUSTED, none retried (${once} on the first attempt): "${quota[0]!.problem!.hint.split(':')[0]}"`;
}
const perRequest = (n: number, of: number) => (n / of).toFixed(2);

export async function runDemo(write: (text: string) => void = (text) => process.stdout.write(text)): Promise<number> {
  const [directUpstream, upstream, primary, secondary] = await Promise.all([
    startFlakyUpstream(PROFILE),
    startFlakyUpstream(PROFILE),
    startFlakyUpstream(PROFILE),
    startFlakyUpstream(SECOND_REGION),
  ]);
  const apps: App[] = [];
  try {
    apps.push(await startBreakwater(`  flaky: { url: ${upstream.url} }`, '{ name: demo, upstream: flaky }'));
    apps.push(
      await startBreakwater(
        `  flaky: { url: ${primary.url}, failover: [{ name: second-region, url: ${secondary.url} }] }`,
        '{ name: demo, upstream: flaky, fallback: { stale: { maxStale: 1m } } }',
      ),
    );
    write(
      `Breakwater demo: ${RATE} requests/s for ${DURATION_MS / 1000} s (every tenth a POST with an Idempotency-Key, reads of 40 items), open loop, to an upstream that answers 503 (20%), 429 with Retry-After: 1 (7%), slowly (6%, 1.5 s), resets (5%), 429 insufficient_quota (3%: the account has no credit), and resets everything for 2 s of every 10 s. Breakwater runs with every default but errors.normalize: all; then also with a second region of the API as a failover target (flaky too, but not down when the first is) and stale reads.\n\n`,
    );
    for (const flaky of [directUpstream, upstream, primary, secondary]) flaky.start();
    const load = { rate: RATE, durationMs: DURATION_MS, timeoutMs: TIMEOUT_MS, postEvery: 10 };
    const outcomes = await Promise.all([
      runOpenLoop({ ...load, url: directUpstream.url, tag: 'demo' }),
      runOpenLoop({ ...load, url: `http://127.0.0.1:${apps[0]!.port}`, tag: 'demo' }),
      runOpenLoop({ ...load, url: `http://127.0.0.1:${apps[1]!.port}`, tag: 'demo' }),
    ]);
    const [direct, through, survived] = outcomes.map(summary) as [Summary, Summary, Summary];
    const resilient = outcomes[2]!;
    table(
      [
        ['', 'app -> upstream', 'app -> Breakwater -> upstream', '+ second region and stale reads'],
        ['success rate', pct(direct.success), pct(through.success), pct(survived.success)],
        ['p50 latency', `${direct.p50.toFixed(0)} ms`, `${through.p50.toFixed(0)} ms`, `${survived.p50.toFixed(0)} ms`],
        ['p99 latency', `${direct.p99.toFixed(0)} ms`, `${through.p99.toFixed(0)} ms`, `${survived.p99.toFixed(0)} ms`],
        ['errors the app saw', errorsOf(direct.errors), errorsOf(through.errors), errorsOf(survived.errors)],
        [
          'upstream attempts per request',
          perRequest(directUpstream.attempts(), outcomes[0]!.length),
          perRequest(upstream.attempts(), outcomes[1]!.length),
          `${perRequest(primary.attempts() + secondary.attempts(), resilient.length)} (${primary.attempts()} first, ${secondary.attempts()} second region)`,
        ],
        [
          'answered by',
          'the upstream',
          'the upstream',
          `first ${resilient.filter((o) => o.ok && !o.stale && o.target === 'flaky').length}, second region ${resilient.filter((o) => o.ok && !o.stale && o.target === 'flaky/second-region').length}, stale ${resilient.filter((o) => o.stale).length}`,
        ],
        [
          'out of credit (insufficient_quota)',
          noCredit(outcomes[0]!, directUpstream),
          noCredit(outcomes[1]!, upstream),
          noCredit(outcomes[2]!, primary),
        ],
        ['what the upstream did', served(directUpstream.fates), served(upstream.fates), served(primary.fates)],
      ],
      write,
    );
    write(
      `\nBreakwater retried 503s, resets and 429s (after their Retry-After) within a retry budget, held requests through the short outages instead of failing them, and would fail fast if an outage lasted longer than 2 s. With a second region, a failed attempt moved there at once, a 429 took the first region out of rotation for its Retry-After, and a read that still failed was answered from its last good answer (Age, X-Breakwater-Fallback: stale). An answer saying the account has no credit was never retried: the app got UPSTREAM_QUOTA_EXHAUSTED with a billing hint at once.\n`,
    );
    return through.success > direct.success && survived.success > through.success ? 0 : 1;
  } finally {
    await Promise.all(apps.map((app) => app.close(100)));
    await Promise.all([directUpstream, upstream, primary, secondary].map((flaky) => flaky.close()));
  }
}
