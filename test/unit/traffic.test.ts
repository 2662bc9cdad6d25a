/**
 * The dashboard's golden signals (observe/traffic.ts) read from the
 * metrics' counters on a clock the test moves: rates over the last minute,
 * success rate, interpolated quantiles, fixed-length series; and the
 * error journal's ring (observe/error-journal.ts).
 */
import { describe, expect, it } from 'vitest';
import { ErrorJournal, type JournalEntry } from '../../src/observe/error-journal.js';
import { createMetrics } from '../../src/observe/metrics.js';
import { quantileMs, TrafficStats } from '../../src/observe/traffic.js';

const BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

function setup() {
  let at = 1_000_000;
  const metrics = createMetrics({ defaultMetrics: false });
  const stats = new TrafficStats(metrics, () => at, { bucketMs: 10_000, spanMs: 60_000, windowMs: 60_000 });
  const serve = (route: string, code: number, seconds: number, count = 1) => {
    for (let i = 0; i < count; i++) {
      metrics.requestsTotal.inc({ route, method: 'GET', code: String(code) });
      metrics.requestDuration.observe({ route, method: 'GET' }, seconds);
    }
  };
  return { metrics, stats, serve, advance: (ms: number) => (at += ms) };
}

describe('quantileMs', () => {
  it('interpolates within the bucket the rank falls in, as histogram_quantile does', () => {
    // 100 requests: 90 in (0, 5 ms], 10 in (250, 500 ms].
    const counts = new Array(BOUNDS.length + 1).fill(0);
    counts[0] = 90;
    counts[6] = 10;
    expect(quantileMs(counts, BOUNDS, 0.5)).toBeCloseTo((50 / 90) * 5, 6);
    expect(quantileMs(counts, BOUNDS, 0.99)).toBeCloseTo(250 + 250 * 0.9, 6);
    expect(quantileMs(new Array(BOUNDS.length + 1).fill(0), BOUNDS, 0.5)).toBeNull();
    // Beyond the largest bound: the largest bound.
    const slow = new Array(BOUNDS.length + 1).fill(0);
    slow[BOUNDS.length] = 3;
    expect(quantileMs(slow, BOUNDS, 0.99)).toBe(60_000);
  });
});

describe('TrafficStats', () => {
  it('reports the last minute: rates per second, success below 400, p50 and p99', () => {
    const { stats, serve, metrics, advance } = setup();
    serve('api', 200, 0.003, 95);
    serve('api', 503, 0.3, 4);
    serve('api', 499, 0.001, 1);
    metrics.retries.inc({ route: 'api', reason: 'http_5xx' }, 8);
    metrics.rateLimited.inc({ route: 'api' }, 2);
    metrics.policyReports.inc({ route: 'api', policy: 'rate_limit' }, 6);
    metrics.policyReports.inc({ route: 'api', policy: 'circuit_breaker' }, 2);
    for (const [result, count] of [
      ['hit', 30],
      ['coalesced', 10],
      ['revalidated', 10],
      ['miss', 40],
      ['bypass', 10],
    ] as const)
      metrics.cacheRequests.inc({ route: 'api', result }, count);
    advance(20_000);
    const [api, idle] = stats.report([
      { name: 'api', upstream: 'backend' },
      { name: 'idle', upstream: null },
    ]).routes;
    expect(api).toMatchObject({
      route: 'api',
      upstream: 'backend',
      requests: 100,
      requestsPerSecond: 5,
      successRate: 95,
      retriesPerSecond: 0.4,
      rateLimitedPerSecond: 0.1,
      reportedPerSecond: 0.4,
      // 50 of 100 answered by the cache; 40 with no upstream call at all.
      cacheHitRate: 50,
      savedPerSecond: 2,
    });
    expect(api!.p50Ms).toBeGreaterThan(0);
    expect(api!.p50Ms).toBeLessThanOrEqual(5);
    expect(api!.p99Ms).toBeGreaterThan(250);
    expect(api!.p99Ms).toBeLessThanOrEqual(500);
    expect(idle).toMatchObject({
      requests: 0,
      requestsPerSecond: 0,
      successRate: null,
      p50Ms: null,
      p99Ms: null,
      cacheHitRate: null,
      savedPerSecond: 0,
    });
  });

  it('forgets what is older than the window, and keeps fixed-length series per bucket', () => {
    const { stats, serve, advance } = setup();
    serve('api', 500, 0.01, 10);
    for (let i = 0; i < 7; i++) {
      advance(10_000);
      stats.sample();
      serve('api', 200, 0.01, 10 * (i + 1));
    }
    advance(10_000);
    const report = stats.report([{ name: 'api', upstream: null }]);
    // The window starts at the newest sample at least 60 s old: the 10 x 500 are out of it.
    expect(report.windowSeconds).toBe(60);
    const api = report.routes[0]!;
    expect(api.successRate).toBe(100);
    expect(api.requests).toBe(20 + 30 + 40 + 50 + 60 + 70);
    // spanMs / bucketMs points, oldest first; the last one is the bucket under way.
    expect(api.series.requestsPerSecond).toEqual([2, 3, 4, 5, 6, 7]);
    expect(api.series.successRate).toEqual([100, 100, 100, 100, 100, 100]);
  });

  it('pads the series of a young process with nulls, and lists unmatched requests only when there were some', () => {
    const { stats, serve, advance } = setup();
    let report = stats.report([{ name: 'api', upstream: null }]);
    expect(report.routes.map((r) => r.route)).toEqual(['api']);
    expect(report.routes[0]!.series.requestsPerSecond).toEqual([null, null, null, null, null, null]);
    serve('', 404, 0.001, 5);
    advance(2_000);
    report = stats.report([{ name: 'api', upstream: null }]);
    expect(report.routes.map((r) => [r.route, r.successRate])).toEqual([
      ['api', null],
      ['', 0],
    ]);
    expect(report.routes[1]!.series.requestsPerSecond).toEqual([null, null, null, null, null, 2.5]);
  });
});

const entry = (path: string, route = 'r', code = 'NO_ROUTE'): JournalEntry => ({
  time: '2026-12-02T00:00:00.000Z',
  requestId: path,
  method: 'GET',
  path,
  route,
  upstream: null,
  target: null,
  status: 404,
  code,
  source: 'proxy',
  responsibility: 'client',
  retryable: false,
  hint: 'h',
  durationMs: 1,
  attempts: [],
  provider: null,
  headers: {},
});

describe('ErrorJournal', () => {
  it('keeps the newest entries in a ring, filters, and keeps the newest on resize', () => {
    const journal = new ErrorJournal(3, () => 0);
    for (let i = 1; i <= 5; i++) journal.record(entry(`/${i}`, i % 2 ? 'odd' : 'even', i === 4 ? 'X' : 'NO_ROUTE'));
    expect(journal.list().map((e) => e.path)).toEqual(['/5', '/4', '/3']);
    expect(journal.recorded).toBe(5);
    expect(journal.list({ route: 'odd' }).map((e) => e.path)).toEqual(['/5', '/3']);
    expect(journal.list({ code: 'X' }).map((e) => e.path)).toEqual(['/4']);
    expect(journal.list({ limit: 1 }).map((e) => e.path)).toEqual(['/5']);
    journal.resize(5);
    journal.record(entry('/6'));
    expect(journal.list().map((e) => e.path)).toEqual(['/6', '/5', '/4', '/3']);
    journal.resize(2);
    expect(journal.list().map((e) => e.path)).toEqual(['/6', '/5']);
    journal.record(entry('/7'));
    expect(journal.list().map((e) => e.path)).toEqual(['/7', '/6']);
    journal.resize(0);
    journal.record(entry('/8'));
    expect(journal.list()).toEqual([]);
    expect(journal.enabled).toBe(false);
    expect(journal.wants()).toBe(false);
    expect(journal.admit()).toBe(false);
  });

  it('admits at most `size` entries a second: a storm of errors is sampled, the rest counted as skipped', () => {
    let at = 0;
    const journal = new ErrorJournal(4, () => at);
    expect([1, 2, 3, 4, 5, 6].map(() => journal.admit())).toEqual([true, true, true, true, false, false]);
    expect(journal.skipped).toBe(2);
    expect(journal.wants()).toBe(false);
    at += 250; // a quarter of a second: one more
    expect(journal.wants()).toBe(true);
    expect([journal.admit(), journal.admit()]).toEqual([true, false]);
    at += 10_000; // never more than `size` saved up
    expect([1, 2, 3, 4, 5].map(() => journal.admit())).toEqual([true, true, true, true, false]);
    expect(journal.skipped).toBe(4);
  });
});
