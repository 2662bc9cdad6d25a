/**
 * Golden signals per route for the dashboard and `breakwater stat` (SPEC
 * §12): requests/s, success rate, p50/p99 latency, retries/s and
 * rate-limited/s over the last minute, and 15-minute series of them.
 *
 * Nothing is recorded on the request path: every `bucketMs` the sampler
 * reads the cumulative counters the metrics already keep
 * (`breakwater_requests_total`, `_request_duration_seconds`,
 * `_retries_total`, `_rate_limited_total`, `_policy_reports_total`) into a fixed ring, and a report
 * is the difference between readings. Latency quantiles are interpolated
 * within the duration histogram's buckets, as Prometheus'
 * `histogram_quantile` does, so they agree with a Grafana panel on the
 * same metrics.
 */
import type { Metrics } from './metrics.js';

/** Cumulative counts of one route at one instant. */
interface Reading {
  requests: number;
  /** Answered below 400. */
  ok: number;
  retries: number;
  rateLimited: number;
  /** Requests a policy in report mode would have refused, held or slowed (SPEC §19.2). */
  reported: number;
  /** On a route with a cache (SPEC §17): requests, those answered from the store or another's call, those with no upstream call. */
  cacheRequests: number;
  cacheHits: number;
  cacheSaved: number;
  /** Request durations per histogram bucket (the last one: beyond the largest bound). */
  readonly durations: Float64Array;
}

interface Sample {
  readonly at: number;
  readonly routes: Map<string, Reading>;
}

export interface TrafficOptions {
  /** Sampling period, ms (default 10 s). */
  readonly bucketMs?: number;
  /** How far back the series go, ms (default 15 minutes). */
  readonly spanMs?: number;
  /** The window of the headline numbers, ms (default 1 minute). */
  readonly windowMs?: number;
}

/** One route's golden signals; null where there was no request to measure. */
export interface RouteTraffic {
  readonly route: string;
  readonly upstream: string | null;
  /** Requests answered in the window. */
  readonly requests: number;
  readonly requestsPerSecond: number;
  /** Percent of requests answered below 400. */
  readonly successRate: number | null;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  readonly retriesPerSecond: number;
  readonly rateLimitedPerSecond: number;
  /** Reports of policies in report mode per second (what enforcing them would have refused, held or slowed). */
  readonly reportedPerSecond: number;
  /** Percent of the requests a route's cache answered (hit, revalidated, coalesced); null without cache traffic. */
  readonly cacheHitRate: number | null;
  /** Upstream calls the cache saved per second (hits and coalesced answers: no upstream call at all). */
  readonly savedPerSecond: number;
  /** Oldest first, one point per bucket; null before the process started or (rates aside) without requests. */
  readonly series: {
    readonly requestsPerSecond: (number | null)[];
    readonly successRate: (number | null)[];
    readonly p99Ms: (number | null)[];
    readonly retriesPerSecond: (number | null)[];
    readonly rateLimitedPerSecond: (number | null)[];
  };
}

export interface TrafficReport {
  /** The seconds the headline numbers cover (less than a minute while the process is younger). */
  readonly windowSeconds: number;
  readonly bucketSeconds: number;
  readonly routes: RouteTraffic[];
}

/**
 * The `q` quantile (0..1) of per-bucket counts, in ms, interpolated within its bucket (Prometheus'
 * histogram_quantile).
 */
export function quantileMs(counts: ArrayLike<number>, bounds: readonly number[], q: number): number | null {
  let total = 0;
  for (let i = 0; i < counts.length; i++) total += counts[i]!;
  if (total <= 0) return null;
  const rank = q * total;
  let below = 0;
  for (let i = 0; i < counts.length; i++) {
    const count = counts[i]!;
    if (below + count >= rank && count > 0) {
      // Past the largest bound: the largest bound is the most that can be said.
      if (i >= bounds.length) return bounds[bounds.length - 1]! * 1000;
      const lower = i === 0 ? 0 : bounds[i - 1]!;
      return (lower + (bounds[i]! - lower) * ((rank - below) / count)) * 1000;
    }
    below += count;
  }
  return bounds[bounds.length - 1]! * 1000;
}

const round = (value: number, digits = 3) => Math.round(value * 10 ** digits) / 10 ** digits;

export class TrafficStats {
  private readonly bucketMs: number;
  private readonly windowMs: number;
  private readonly samples: Sample[] = [];
  private readonly keep: number;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly metrics: Metrics,
    private readonly now: () => number,
    options: TrafficOptions = {},
  ) {
    this.bucketMs = options.bucketMs ?? 10_000;
    // The window is read from the samples kept: never longer than the span.
    const spanMs = options.spanMs ?? 15 * 60_000;
    this.windowMs = Math.min(options.windowMs ?? 60_000, spanMs);
    this.keep = Math.ceil(spanMs / this.bucketMs) + 1;
    this.sample();
  }

  /** Samples every bucket until {@link stop}; the timer never keeps the process alive. */
  start(): void {
    this.timer ??= setInterval(() => this.sample(), this.bucketMs).unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  sample(): void {
    this.samples.push({ at: this.now(), routes: this.read() });
    if (this.samples.length > this.keep) this.samples.shift();
  }

  private read(): Map<string, Reading> {
    const { requestsTotal, requestDuration, retries, rateLimited, policyReports, cacheRequests } = this.metrics;
    const routes = new Map<string, Reading>();
    const of = (route: string) => {
      let reading = routes.get(route);
      if (!reading) routes.set(route, (reading = zeroReading(requestDuration.buckets.length + 1)));
      return reading;
    };
    requestsTotal.each((labels, value) => {
      const reading = of(String(labels.route));
      reading.requests += value;
      if (Number(labels.code) < 400) reading.ok += value;
    });
    requestDuration.each((labels, counts, count) => {
      const durations = of(String(labels.route)).durations;
      let inBuckets = 0;
      for (let i = 0; i < counts.length; i++) {
        durations[i]! += counts[i]!;
        inBuckets += counts[i]!;
      }
      durations[counts.length]! += count - inBuckets;
    });
    retries.each((labels, value) => (of(String(labels.route)).retries += value));
    rateLimited.each((labels, value) => (of(String(labels.route)).rateLimited += value));
    policyReports.each((labels, value) => (of(String(labels.route)).reported += value));
    cacheRequests.each((labels, value) => {
      const reading = of(String(labels.route));
      reading.cacheRequests += value;
      if (labels.result === 'hit' || labels.result === 'coalesced') reading.cacheSaved += value;
      if (labels.result !== 'miss' && labels.result !== 'bypass') reading.cacheHits += value;
    });
    return routes;
  }

  /** The routes' numbers now: `routes` in config order; the unmatched requests' route `""` only when it had any. */
  report(routes: readonly { readonly name: string; readonly upstream: string | null }[]): TrafficReport {
    const now: Sample = { at: this.now(), routes: this.read() };
    // The newest sample at least a window old, else the oldest there is.
    const base = [...this.samples].reverse().find((sample) => now.at - sample.at >= this.windowMs) ?? this.samples[0]!;
    const seconds = Math.max(0.001, (now.at - base.at) / 1000);
    const listed = [...routes];
    const unmatched = delta(now.routes.get(''), base.routes.get(''));
    if (unmatched.requests > 0 && !routes.some((route) => route.name === '')) listed.push({ name: '', upstream: null });
    return {
      windowSeconds: round(seconds, 1),
      bucketSeconds: this.bucketMs / 1000,
      routes: listed.map((route) => {
        const d = delta(now.routes.get(route.name), base.routes.get(route.name));
        return {
          route: route.name,
          upstream: route.upstream,
          requests: d.requests,
          ...this.signals(d, seconds),
          series: this.series(route.name, now),
        };
      }),
    };
  }

  private signals(d: Reading, seconds: number) {
    const bounds = this.metrics.requestDuration.buckets;
    const p50 = quantileMs(d.durations, bounds, 0.5);
    const p99 = quantileMs(d.durations, bounds, 0.99);
    return {
      requestsPerSecond: round(d.requests / seconds),
      successRate: d.requests > 0 ? round((d.ok / d.requests) * 100, 2) : null,
      p50Ms: p50 === null ? null : round(p50, 1),
      p99Ms: p99 === null ? null : round(p99, 1),
      retriesPerSecond: round(d.retries / seconds),
      rateLimitedPerSecond: round(d.rateLimited / seconds),
      reportedPerSecond: round(d.reported / seconds),
      cacheHitRate: d.cacheRequests > 0 ? round((d.cacheHits / d.cacheRequests) * 100, 2) : null,
      savedPerSecond: round(d.cacheSaved / seconds),
    };
  }

  /**
   * One point per bucket of the span, oldest first; the newest is the bucket under way (once a second of it
   * passed).
   */
  private series(route: string, now: Sample): RouteTraffic['series'] {
    const points = now.at - this.samples.at(-1)!.at >= 1000 ? [...this.samples, now].slice(-this.keep) : this.samples;
    const out: RouteTraffic['series'] = {
      requestsPerSecond: [],
      successRate: [],
      p99Ms: [],
      retriesPerSecond: [],
      rateLimitedPerSecond: [],
    };
    // A fixed length (keep - 1 points): the buckets before the process started are null.
    for (let i = points.length; i < this.keep; i++) for (const list of Object.values(out)) list.push(null);
    for (let i = 1; i < points.length; i++) {
      const seconds = Math.max(0.001, (points[i]!.at - points[i - 1]!.at) / 1000);
      const s = this.signals(delta(points[i]!.routes.get(route), points[i - 1]!.routes.get(route)), seconds);
      out.requestsPerSecond.push(s.requestsPerSecond);
      out.successRate.push(s.successRate);
      out.p99Ms.push(s.p99Ms);
      out.retriesPerSecond.push(s.retriesPerSecond);
      out.rateLimitedPerSecond.push(s.rateLimitedPerSecond);
    }
    return out;
  }
}

/** A route's counts before any request; `buckets`: the duration histogram's, plus one beyond the largest bound. */
function zeroReading(buckets: number): Reading {
  return {
    requests: 0,
    ok: 0,
    retries: 0,
    rateLimited: 0,
    reported: 0,
    cacheRequests: 0,
    cacheHits: 0,
    cacheSaved: 0,
    durations: new Float64Array(buckets),
  };
}

const EMPTY: Reading = zeroReading(0);

function delta(now: Reading | undefined, then: Reading | undefined): Reading {
  const a = now ?? EMPTY;
  const b = then ?? EMPTY;
  const durations = new Float64Array(Math.max(a.durations.length, b.durations.length));
  for (let i = 0; i < durations.length; i++) durations[i] = Math.max(0, (a.durations[i] ?? 0) - (b.durations[i] ?? 0));
  return {
    requests: Math.max(0, a.requests - b.requests),
    ok: Math.max(0, a.ok - b.ok),
    retries: Math.max(0, a.retries - b.retries),
    rateLimited: Math.max(0, a.rateLimited - b.rateLimited),
    reported: Math.max(0, a.reported - b.reported),
    cacheRequests: Math.max(0, a.cacheRequests - b.cacheRequests),
    cacheHits: Math.max(0, a.cacheHits - b.cacheHits),
    cacheSaved: Math.max(0, a.cacheSaved - b.cacheSaved),
    durations,
  };
}
