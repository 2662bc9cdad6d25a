/**
 * Do no harm (issue 16): with every default, Breakwater makes a flaky API
 * more available, not less, and protects a dead one without holding it shut
 * once it is back. The resilience benchmark's properties on a smaller
 * scale: the same seeded flaky upstream (src/demo/flaky-upstream.ts) called
 * directly and through Breakwater at the same time; a healthy upstream whose
 * listener closes for a while. Assertions are on counts, ratios and metric
 * deltas, with time bounds far from what is measured.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  BENCH_PROFILE,
  HEALTHY_PROFILE,
  startFlakyUpstream,
  type FlakyUpstream,
} from '../../src/demo/flaky-upstream.js';
import { runOpenLoop, successRate, type Outcome } from '../../src/demo/open-loop.js';
import { metricValue, startProxy, type TestProxy } from '../helpers/proxy.js';

let upstreams: FlakyUpstream[] = [];
let proxy: TestProxy | undefined;

afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
  await Promise.all(upstreams.map((upstream) => upstream.close()));
  upstreams = [];
});

/** Every default: only the upstream and a catch-all route. */
const defaultsConfig = (url: string) => `version: 1
logging: { level: warn, accessLog: false }
upstreams:
  api: { url: "${url}" }
routes:
  - { name: api, upstream: api }
`;

describe('do no harm, every default', () => {
  it('a flaky upstream with short outages: more successes through Breakwater than direct, within 1.7 attempts per request', async () => {
    // The benchmark's fates (20 % 503, 7 % 429 with Retry-After 1, 6 % slow,
    // 5 % resets) and a 1.5 s outage every 5 s, 50 requests/s for 8 s. The
    // retry budget bounds the attempts: at most 0.4 x 400 + 10/s x 10 s = 260
    // retries for 400 requests, 1.65 per request, whatever fails.
    const profile = { ...BENCH_PROFILE, seed: 7, outage: { periodMs: 5_000, atMs: 1_500, lengthMs: 1_500 } };
    const direct = await startFlakyUpstream(profile);
    const behind = await startFlakyUpstream(profile);
    upstreams.push(direct, behind);
    proxy = await startProxy(defaultsConfig(behind.url));
    direct.start();
    behind.start();
    const load = { rate: 50, durationMs: 8_000, timeoutMs: 15_000, postEvery: 10, tag: 'harm' };
    const [directOutcomes, throughOutcomes] = await Promise.all([
      runOpenLoop({ ...load, url: direct.url }),
      runOpenLoop({ ...load, url: proxy.url }),
    ]);

    const directRate = successRate(directOutcomes);
    const throughRate = successRate(throughOutcomes);
    // Measured: about 55 % direct (30 % of the time is outage) and above 85 % through Breakwater.
    // (With 1.5 s in every 4 s, a loaded CI run once refused 29 %: outages 2.5 s apart can
    // merge into one episode older than hold, which then fails fast; see the issue note.)
    expect(directRate).toBeLessThan(0.65);
    expect(throughRate).toBeGreaterThan(directRate + 0.2);
    expect(behind.attempts() / throughOutcomes.length).toBeLessThanOrEqual(1.7);
    // Every request got an HTTP answer from Breakwater: nothing reset, nothing lost.
    expect(throughOutcomes.filter((outcome) => outcome.status === 0)).toEqual([]);
    // The outages were ridden out by holding, not refused: the circuit opened, and refusals stayed few.
    expect(
      await metricValue(proxy.metrics, 'breakwater_circuit_transitions_total', { upstream: 'api', to: 'open' }),
    ).toBeGreaterThan(0);
    // Measured: 0-2.3 % refused, with two busy loops beside it too; once 15 % on a machine busy
    // with other tests (real-time outages look longer on a starved event loop). The old defaults
    // shut such an upstream: most requests refused.
    const refused = throughOutcomes.filter((outcome) => outcome.label === '503 CIRCUIT_OPEN').length;
    expect(refused / throughOutcomes.length).toBeLessThan(0.2);
  });

  it('a hard outage: the dead upstream sees a trickle, late requests fail fast, and it is used again at once when it is back', async () => {
    const upstream = await startFlakyUpstream(HEALTHY_PROFILE);
    upstreams.push(upstream);
    proxy = await startProxy(defaultsConfig(upstream.url));
    const connectFailures = () =>
      metricValue(proxy!.metrics, 'breakwater_upstream_attempts_total', {
        route: 'api',
        upstream: 'api',
        outcome: 'connect_failure',
      });
    upstream.start();
    // 40 requests/s for 10 s; the upstream is down from 1 s to 6 s.
    const run = runOpenLoop({ url: proxy.url, tag: 'outage', rate: 40, durationMs: 10_000, timeoutMs: 15_000 });
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    await upstream.down();
    const downAt = performance.now();
    // Past the first 2 s (hold) plus slack, count what reaches the dead port for 2 s.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const before = await connectFailures();
    const windowStart = performance.now();
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const connectsPerSecond = ((await connectFailures()) - before) / ((performance.now() - windowStart) / 1000);
    await upstream.up();
    const upAt = performance.now() - downAt;
    const outcomes = await run;

    // (a) At most 10 % of the offered 40/s reach the dead upstream (measured: about 1/s).
    expect(connectsPerSecond).toBeLessThanOrEqual(4);
    // (b) Requests sent once the outage is older than hold fail fast with CIRCUIT_OPEN (measured:
    // a few ms; a held request would take 2 s).
    const first = outcomes[0]!;
    const sentAfter = (outcome: Outcome, s: number) => outcome.sentAt - first.sentAt >= s * 1000;
    const late = outcomes.filter(
      (outcome) => !outcome.ok && sentAfter(outcome, 1 + 2.5) && outcome.sentAt < outcomes[0]!.sentAt + 5_500,
    );
    expect(late.length).toBeGreaterThan(40);
    // Refused by the open breaker, or (a probe, about one a second) the upstream's own failure.
    const refused = late.filter((outcome) => outcome.label === '503 CIRCUIT_OPEN');
    const probes = late.filter((outcome) => outcome.label === '502 UPSTREAM_CONNECT_FAILED');
    expect(refused.length + probes.length).toBe(late.length);
    expect(probes.length).toBeLessThanOrEqual(6);
    const slow = late.filter((outcome) => outcome.ms > 1_000);
    expect(slow.length).toBeLessThanOrEqual(Math.ceil(late.length * 0.01));
    // (c) Recovery: requests sent from 1.5 s after the upstream returned (maxOpenFor is 1 s) all succeed.
    const recovered = outcomes.filter((outcome) => outcome.sentAt - first.sentAt >= 1_000 + upAt + 1_500);
    expect(recovered.length).toBeGreaterThan(40);
    expect(recovered.filter((outcome) => !outcome.ok)).toEqual([]);
    expect(upAt).toBeGreaterThan(4_000);
  });
});
