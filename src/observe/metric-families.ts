/**
 * The families of every SPEC §6 metric, as metrics.ts registers them: the
 * request path's counters and histograms (fast-metrics.ts), grouped by what
 * they count, and the gauges read from live state at each scrape.
 */
import client from 'prom-client';
import { FastCounter, FastHistogram, type BoundedLabel, type LabelBound } from './fast-metrics.js';

const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Every value of `breakwater_circuit_state{state}` (SPEC §6; `shedding` added by the breaker redesign). */
export const CIRCUIT_STATES = ['closed', 'shedding', 'open', 'half_open'] as const;

const SHED_HELP =
  "Requests refused where they waited, by the refused request's priority class and why: displaced, quota_floor, queue_full, queue_timeout, max_wait (SPEC §13).";

/** Histograms of durations in seconds; labels `O` may be left out of a series. */
function durationHistograms(register: <M extends { name: string }>(metric: M) => M) {
  return <L extends string, O extends string = never>(
    name: string,
    help: string,
    labelNames: readonly (L | O)[],
    bound?: LabelBound<L | O>,
  ) => register(new FastHistogram<L, O>(name, help, labelNames, DURATION_BUCKETS, bound));
}

/** Gauges filled from live state at each scrape (`fill` sets every series; the others are dropped). */
export function scrapedGauges(registers: client.Registry[]) {
  return <L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    fill: (set: (labels: Record<L, string>, value: number) => void) => void,
  ) =>
    new client.Gauge<L>({
      name,
      help,
      labelNames,
      registers,
      collect() {
        this.reset();
        fill((labels, value) => this.set(labels as client.LabelValues<L>, value));
      },
    });
}

/** The request path's counters and histograms (fast-metrics.ts), registered on `registry`. */
export function fastFamilies(registry: client.Registry) {
  const register = <M extends { name: string }>(metric: M): M => {
    registry.registerMetric(metric as unknown as client.Metric);
    return metric;
  };
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[], bound?: LabelBound<L>) =>
    register(new FastCounter<L>(name, help, labelNames, bound));
  return { counter, histogram: durationHistograms(register) };
}

type Families = ReturnType<typeof fastFamilies>;
/** The `upstream` label, bounded (MAX_TARGET_SERIES). */
type ByUpstream = { readonly label: 'upstream'; readonly values: BoundedLabel };

/** What the request path counts: requests, attempts, retries, errors, and what became of them. */
export function requestFamilies({ counter, histogram }: Families, byUpstream: ByUpstream) {
  return {
    requestsTotal: counter(
      'breakwater_requests_total',
      'Requests answered, by route, method and the status sent to the client.',
      ['route', 'method', 'code'],
    ),
    requestDuration: histogram(
      'breakwater_request_duration_seconds',
      'Time from request to the end of the response, by route and method.',
      ['route', 'method'],
    ),
    upstreamAttempts: counter(
      'breakwater_upstream_attempts_total',
      'Attempts made upstream, by classified outcome.',
      ['route', 'upstream', 'outcome'],
      byUpstream,
    ),
    upstreamAttemptDuration: histogram(
      'breakwater_upstream_attempt_duration_seconds',
      "Time from an attempt's start to its response headers or failure.",
      ['route', 'upstream'],
      byUpstream,
    ),
    upstreamFirstByte: histogram(
      'breakwater_upstream_first_byte_seconds',
      "Time from an attempt's request to the first byte of its response body (an event stream: its first event line).",
      ['route', 'upstream'],
      byUpstream,
    ),
    retries: counter('breakwater_retries_total', 'Retries made, by the outcome that was retried.', ['route', 'reason']),
    retryBudgetExhausted: counter(
      'breakwater_retry_budget_exhausted_total',
      "Retries skipped because the route's retry budget was spent.",
      ['route'],
    ),
    errors: counter('breakwater_errors_total', 'Errors Breakwater produced or recorded, by route and code.', [
      'route',
      'code',
    ]),
    configReloads: counter('breakwater_config_reloads_total', 'Config reloads, by result.', ['result']),
    failovers: counter(
      'breakwater_failovers_total',
      'Attempts sent to a target other than the first in order (SPEC §8.1).',
      ['route', 'upstream', 'target'],
    ),
    fallbacks: counter(
      'breakwater_fallbacks_total',
      'Requests answered with a stored (stale) answer, by the error code it replaced (SPEC §8.2).',
      ['route', 'reason'],
    ),
    cacheRequests: counter(
      'breakwater_cache_requests_total',
      'Requests on a route with a cache, by how they were answered: hit, miss, revalidated, coalesced, bypass (SPEC §17).',
      ['route', 'result'],
    ),
    credentialRotations: counter(
      'breakwater_credential_rotations_total',
      'Secret files re-read after a change (SPEC §18): success, a new value in use; failure, missing, empty or unreadable, the last value kept.',
      ['upstream', 'result'],
    ),
    credentialTokenFetches: counter(
      'breakwater_credential_token_fetches_total',
      'OAuth2 token requests to the token endpoint, by result (SPEC §18).',
      ['upstream', 'result'],
    ),
    internalErrors: counter<never>(
      'breakwater_internal_errors_total',
      'Faults caught by the last net (unhandled promise rejections); the process kept serving.',
      [],
    ),
    traceSpansDropped: counter<never>(
      'breakwater_trace_spans_dropped_total',
      'Spans that could not be exported: no room in the queue, or a failed or timed-out export (SPEC §11).',
      [],
    ),
  };
}

/** What the policies count: breakers, rate limits, pacing, shedding, the forward proxy, report mode, interception. */
export function policyFamilies({ counter, histogram }: Families, byUpstream: ByUpstream) {
  return {
    circuitTransitions: counter(
      'breakwater_circuit_transitions_total',
      'Circuit breaker state changes, by the state entered.',
      ['upstream', 'to'],
      byUpstream,
    ),
    circuitRejections: counter(
      'breakwater_circuit_rejections_total',
      "Calls refused by the upstream's breaker: open, half-open, or shed while it fails.",
      ['upstream'],
      byUpstream,
    ),
    rateLimited: counter('breakwater_rate_limited_total', "Requests refused by the route's rate limit.", ['route']),
    rateLimitDegraded: counter(
      'breakwater_rate_limit_degraded_total',
      'Rate-limit decisions made without Redis, per redis.onError.',
      ['route'],
    ),
    pacingWait: histogram<'upstream', 'priority'>(
      'breakwater_pacing_wait_seconds',
      'Time requests were held by proactive pacing (by priority class when classes are configured).',
      ['upstream', 'priority'],
    ),
    pacingPauses: counter('breakwater_pacing_pauses_total', 'Times pacing started holding requests for an upstream.', [
      'upstream',
    ]),
    tlsIntercept: counter('breakwater_tls_intercept_total', 'CONNECT requests by TLS interception result.', ['result']),
    tlsCertificatesMinted: counter<never>(
      'breakwater_tls_certificates_minted_total',
      'Leaf certificates minted for intercepted hosts.',
      [],
    ),
    shed: counter('breakwater_shed_total', SHED_HELP, ['route', 'priority', 'reason']),
    forwardRequests: counter(
      'breakwater_forward_requests_total',
      'Forward-proxy requests by caller and allow-list decision: allowed, denied, would_deny (SPEC §19.3).',
      ['caller', 'decision'],
    ),
    policyReports: counter(
      'breakwater_policy_reports_total',
      'What a policy in report mode would have done and did not, by route and policy (SPEC §19.2).',
      ['route', 'policy'],
    ),
  };
}

/** A route's store (SPEC §8.2, §17): its size, and whether its stale fallback, its cache or both use it. */
export interface StoreSource {
  readonly route: string;
  readonly entries: number;
  readonly bytes: number;
  readonly stale: boolean;
  readonly cache: boolean;
}

/** Where the scraped gauges read live state; metrics.ts's setters replace each. */
export interface ScrapeSources {
  circuitStates: () => Iterable<{ readonly upstream: string; readonly state: string }>;
  queueDepths: () => Iterable<{ readonly route: string; readonly priority?: string; readonly depth: number }>;
  staleStores: () => Iterable<StoreSource>;
  quotas: () => Iterable<QuotaSource>;
}

/** The gauges filled from live state at each scrape. */
export function scrapedFamilies(scraped: ReturnType<typeof scrapedGauges>, sources: ScrapeSources) {
  const { circuitStates, queueDepths, staleStores, quotas } = {
    circuitStates: () => sources.circuitStates(),
    queueDepths: () => sources.queueDepths(),
    staleStores: () => sources.staleStores(),
    quotas: () => sources.quotas(),
  };
  return {
    circuitState: scraped(
      'breakwater_circuit_state',
      'Circuit breaker state per upstream (closed, shedding, open, half_open): 1 for the current state.',
      ['upstream', 'state'],
      (set) => {
        for (const { upstream, state } of circuitStates()) {
          for (const candidate of CIRCUIT_STATES) set({ upstream, state: candidate }, candidate === state ? 1 : 0);
        }
      },
    ),
    rateLimitQueueDepth: scraped(
      'breakwater_rate_limit_queue_depth',
      "Requests waiting in the route's rate-limit queue (by priority class when classes are configured).",
      ['route', 'priority'],
      (set) => {
        // prom-client renders the labels a series has: without classes, no `priority`.
        for (const { route, priority, depth } of queueDepths())
          set(
            (priority === undefined ? { route } : { route, priority }) as Record<'route' | 'priority', string>,
            depth,
          );
      },
    ),
    upstreamQuotaRemaining: scraped(
      'breakwater_upstream_quota_remaining',
      'Quota the upstream announced as remaining (the lowest across pacing keys), per dimension (requests, tokens, ...).',
      ['upstream', 'scope', 'dimension'],
      (set) => lowestQuotas(quotas(), set),
    ),
    staleEntries: scraped(
      'breakwater_stale_entries',
      'Answers stored for stale fallback, per route.',
      ['route'],
      (set) => {
        for (const { route, entries, stale } of staleStores()) if (stale) set({ route }, entries);
      },
    ),
    staleBytes: scraped(
      'breakwater_stale_bytes',
      'Bytes of the answers stored for stale fallback, per route.',
      ['route'],
      (set) => {
        for (const { route, bytes, stale } of staleStores()) if (stale) set({ route }, bytes);
      },
    ),
    cacheEntries: scraped('breakwater_cache_entries', "Answers in the route's cache (SPEC §17).", ['route'], (set) => {
      for (const { route, entries, cache } of staleStores()) if (cache) set({ route }, entries);
    }),
    cacheBytes: scraped(
      'breakwater_cache_bytes',
      "Bytes of the answers in the route's cache (bodies; the stale store's where both are set).",
      ['route'],
      (set) => {
        for (const { route, bytes, cache } of staleStores()) if (cache) set({ route }, bytes);
      },
    ),
  };
}

/** A pacer's announced quota, per dimension (SPEC §15). */
export interface QuotaSource {
  readonly upstream: string;
  readonly scope: string;
  readonly dimensions: Readonly<Record<string, { readonly remaining: number | null }>>;
}

/** The lowest remaining quota per upstream, scope and dimension across pacing keys. */
function lowestQuotas(
  quotas: Iterable<QuotaSource>,
  set: (labels: { upstream: string; scope: string; dimension: string }, value: number) => void,
): void {
  const lowest = new Map<string, { upstream: string; scope: string; dimension: string; remaining: number }>();
  for (const { upstream, scope, dimensions } of quotas) {
    for (const [dimension, { remaining }] of Object.entries(dimensions)) {
      if (remaining === null) continue;
      const id = `${upstream}\u0001${scope}\u0001${dimension}`;
      const seen = lowest.get(id);
      if (!seen || remaining < seen.remaining) lowest.set(id, { upstream, scope, dimension, remaining });
    }
  }
  for (const { upstream, scope, dimension, remaining } of lowest.values())
    set({ upstream, scope, dimension }, remaining);
}
