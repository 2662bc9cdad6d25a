/**
 * Every SPEC §6 metric, defined once on a private prom-client registry.
 * The process keeps one instance across config reloads ({@link processMetrics});
 * tests build their own with {@link createMetrics}. Known series are created
 * at zero when a config loads, so dashboards see every route and outcome
 * before the first failure.
 *
 * OpenMetrics: prom-client renames counters in place when it renders OpenMetrics (it strips `_total` from
 * `metric.name`, so the next Prometheus-text scrape shows `breakwater_requests`; see test/integration/metrics.test.ts).
 * We therefore render Prometheus text only and derive the OpenMetrics form from it.
 */
import client, { type Gauge } from 'prom-client';
import { BoundedLabel, FastCounter, FastHistogram, type LabelBound } from './fast-metrics.js';
import type { Config } from '../config/types.js';
import { HTTP_METHODS } from '../config/defaults.js';
import { reportingPolicies } from '../config/report-mode.js';
import { zeroForward, zeroShed } from './metric-zeros.js';
import { CATALOG, RECORDED_ONLY_CODES } from '../errors/catalog.js';
import { OUTCOMES } from '../upstream/classify.js';

/** Every value of `breakwater_circuit_state{state}` (SPEC §6; `shedding` added by the breaker redesign). */
export const CIRCUIT_STATES = ['closed', 'shedding', 'open', 'half_open'] as const;
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
export const OPENMETRICS_CONTENT_TYPE = 'application/openmetrics-text; version=1.0.0; charset=utf-8';

/**
 * Forward-proxy targets (`host:port`) with their own `upstream` series; later ones count under OTHER_TARGETS.
 * A target costs about 30 exposition lines per route (7 outcomes, a 16-line histogram, 5 circuit series):
 * 100 keep a scrape near 3,000 lines, and no dashboard shows more hosts one by one. Config names never count.
 */
export const MAX_TARGET_SERIES = 100;
/** The `upstream` value of the targets beyond MAX_TARGET_SERIES: neither a config name (those start with a letter or digit) nor host:port. */
export const OTHER_TARGETS = '_other';
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const RETRY_REASONS = ['http_5xx', 'http_429', 'timeout', 'connect_failure', 'reset'] as const;
const KNOWN_METHODS: ReadonlySet<string> = new Set(HTTP_METHODS);

export interface Metrics {
  readonly registry: client.Registry;
  readonly requestsTotal: FastCounter<'route' | 'method' | 'code'>;
  readonly requestDuration: FastHistogram<'route' | 'method'>;
  readonly upstreamAttempts: FastCounter<'route' | 'upstream' | 'outcome'>;
  readonly upstreamAttemptDuration: FastHistogram<'route' | 'upstream'>;
  readonly retries: FastCounter<'route' | 'reason'>;
  readonly retryBudgetExhausted: FastCounter<'route'>;
  readonly circuitState: Gauge<'upstream' | 'state'>;
  readonly circuitTransitions: FastCounter<'upstream' | 'to'>;
  readonly circuitRejections: FastCounter<'upstream'>;
  readonly rateLimited: FastCounter<'route'>;
  readonly rateLimitQueueDepth: Gauge<'route' | 'priority'>;
  readonly errors: FastCounter<'route' | 'code'>;
  readonly rateLimitDegraded: FastCounter<'route'>;
  readonly configReloads: FastCounter<'result'>;
  /** `priority` only when classes are configured (SPEC §13). */
  readonly pacingWait: FastHistogram<'upstream', 'priority'>;
  readonly upstreamQuotaRemaining: Gauge<'upstream' | 'scope'>;
  readonly pacingPauses: FastCounter<'upstream'>;
  readonly tlsIntercept: FastCounter<'result'>;
  readonly tlsCertificatesMinted: FastCounter<never>;
  readonly traceSpansDropped: FastCounter<never>;
  readonly internalErrors: FastCounter<never>;
  readonly failovers: FastCounter<'route' | 'upstream' | 'target'>;
  readonly fallbacks: FastCounter<'route' | 'reason'>;
  /** Requests refused for their priority class's sake, or while waiting (SPEC §13). */
  readonly shed: FastCounter<'route' | 'priority' | 'reason'>;
  /** What a policy in report mode would have done and did not (SPEC §19.2). */
  readonly policyReports: FastCounter<'route' | 'policy'>;
  /** Forward-proxy requests by caller and allow-list decision (SPEC §19.3). */
  readonly forwardRequests: FastCounter<'caller' | 'decision'>;
  readonly staleEntries: Gauge<'route'>;
  readonly staleBytes: Gauge<'route'>;
  /** Where the stale-answer gauges read each route's store at scrape time. */
  setStaleStores(source: () => Iterable<{ readonly route: string; readonly entries: number; readonly bytes: number }>): void;
  /** Where `breakwater_circuit_state` reads the breakers' states at scrape time. */
  setCircuitStates(source: () => Iterable<{ readonly upstream: string; readonly state: string }>): void;
  /** Where `breakwater_rate_limit_queue_depth` reads the queues at scrape time; `priority` only when classes are configured (SPEC §13). */
  setQueueDepths(source: () => Iterable<QueueDepth>): void;
  /** Where the quota gauge reads the pacers' last announced remaining at scrape time. */
  setQuotas(source: () => Iterable<{ readonly upstream: string; readonly scope: string; readonly remaining: number | null }>): void;
  /** Creates the known series of a config at zero. */
  registerConfig(config: Config): void;
  /** The exposition for a scrape; OpenMetrics when `openMetrics`. */
  render(openMetrics: boolean): Promise<{ contentType: string; body: string }>;
}

/** One series of `breakwater_rate_limit_queue_depth`. */
export interface QueueDepth {
  readonly route: string;
  readonly priority?: string;
  readonly depth: number;
}

/** Bounded method label: the standard methods, everything else as OTHER. */
export function methodLabel(method: string): string {
  return KNOWN_METHODS.has(method) ? method : 'OTHER';
}

/**
 * Prometheus text → OpenMetrics text: counter families lose the `_total`
 * suffix in HELP/TYPE (samples keep it), no blank lines, `# EOF` at the end.
 */
export function toOpenMetrics(text: string): string {
  const counters = new Set<string>();
  for (const match of text.matchAll(/^# TYPE (\S+) counter$/gm)) counters.add(match[1]!);
  const lines: string[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) (\S+)(.*)$/.exec(line);
    if (meta && counters.has(meta[2]!) && meta[2]!.endsWith('_total')) {
      lines.push(`# ${meta[1]} ${meta[2]!.slice(0, -'_total'.length)}${meta[3]}`);
    } else {
      lines.push(line);
    }
  }
  return `${lines.join('\n')}\n# EOF\n`;
}

/** The lowest remaining quota per upstream and scope across pacing keys. */
function lowestQuotas(
  quotas: Iterable<{ readonly upstream: string; readonly scope: string; readonly remaining: number | null }>,
  set: (labels: { upstream: string; scope: string }, value: number) => void,
): void {
  const lowest = new Map<string, { upstream: string; scope: string; remaining: number }>();
  for (const { upstream, scope, remaining } of quotas) {
    if (remaining === null) continue;
    const id = `${upstream}\u0001${scope}`;
    const seen = lowest.get(id);
    if (!seen || remaining < seen.remaining) lowest.set(id, { upstream, scope, remaining });
  }
  for (const { upstream, scope, remaining } of lowest.values()) set({ upstream, scope }, remaining);
}

/** Every series a config names, at zero, so that rates and alerts see them before the first event. */
function zeroSeries(metrics: Metrics, config: Config, upstreams: BoundedLabel): void {
  for (const upstream of Object.values(config.upstreams)) {
    upstreams.name(upstream.name);
    for (const target of upstream.failover) upstreams.name(target.name);
  }
  metrics.configReloads.inc({ result: 'success' }, 0);
  metrics.configReloads.inc({ result: 'failure' }, 0);
  metrics.internalErrors.inc({}, 0);
  metrics.traceSpansDropped.inc({}, 0);
  for (const route of config.routes) {
    const labels = { route: route.name };
    for (const code of Object.keys(CATALOG)) metrics.errors.inc({ ...labels, code }, 0);
    for (const code of RECORDED_ONLY_CODES) metrics.errors.inc({ ...labels, code }, 0);
    for (const reason of RETRY_REASONS) metrics.retries.inc({ ...labels, reason }, 0);
    metrics.retryBudgetExhausted.inc(labels, 0);
    metrics.rateLimited.inc(labels, 0);
    const pacing = route.upstream !== null ? config.upstreams[route.upstream]?.pacing : undefined;
    if (route.rateLimit?.shared || (pacing?.enabled && pacing.shared)) metrics.rateLimitDegraded.inc(labels, 0);
    zeroShed(metrics.shed, config, route.name, route.rateLimit !== null, pacing?.enabled === true);
    for (const policy of reportingPolicies(config, route)) metrics.policyReports.inc({ ...labels, policy }, 0);
    if (route.upstream !== null) {
      for (const outcome of OUTCOMES) metrics.upstreamAttempts.inc({ ...labels, upstream: route.upstream, outcome }, 0);
      for (const target of config.upstreams[route.upstream]?.failover ?? []) metrics.failovers.inc({ ...labels, upstream: route.upstream, target: target.name }, 0);
    }
  }
  for (const upstream of Object.values(config.upstreams)) {
    // Breakers are per target: the primary keeps the upstream's name (SPEC §8.1).
    for (const target of [upstream.name, ...upstream.failover.map((failover) => failover.name)]) {
      metrics.circuitRejections.inc({ upstream: target }, 0);
      for (const to of CIRCUIT_STATES) metrics.circuitTransitions.inc({ upstream: target, to }, 0);
    }
  }
  zeroForward(metrics.forwardRequests, config);
  if (config.forwardProxy.connect.mode === 'intercept') {
    for (const result of ['intercepted', 'tunnelled', 'refused']) metrics.tlsIntercept.inc({ result }, 0);
    metrics.tlsCertificatesMinted.inc({}, 0);
  }
}

const SHED_HELP = "Requests refused where they waited, by the refused request's priority class and why: displaced, quota_floor, queue_full, queue_timeout, max_wait (SPEC §13).";

/** Histograms of durations in seconds; labels `O` may be left out of a series. */
function durationHistograms(register: <M extends { name: string }>(metric: M) => M) {
  return <L extends string, O extends string = never>(name: string, help: string, labelNames: readonly (L | O)[], bound?: LabelBound<L | O>) =>
    register(new FastHistogram<L, O>(name, help, labelNames, DURATION_BUCKETS, bound));
}

/** Gauges filled from live state at each scrape (`fill` sets every series; the others are dropped). */
function scrapedGauges(registers: client.Registry[]) {
  return <L extends string>(name: string, help: string, labelNames: readonly L[], fill: (set: (labels: Record<L, string>, value: number) => void) => void) =>
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
function fastFamilies(registry: client.Registry) {
  const register = <M extends { name: string }>(metric: M): M => {
    registry.registerMetric(metric as unknown as client.Metric);
    return metric;
  };
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[], bound?: LabelBound<L>) => register(new FastCounter<L>(name, help, labelNames, bound));
  return { counter, histogram: durationHistograms(register) };
}

export function createMetrics(options: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new client.Registry();
  if (options.defaultMetrics !== false) client.collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const { counter, histogram } = fastFamilies(registry);
  const byUpstream = { label: 'upstream', values: new BoundedLabel(MAX_TARGET_SERIES, OTHER_TARGETS) } as const;
  const scraped = scrapedGauges(registers);

  let circuitStates: () => Iterable<{ readonly upstream: string; readonly state: string }> = () => [];
  let queueDepths: () => Iterable<QueueDepth> = () => [];
  let staleStores: () => Iterable<{ readonly route: string; readonly entries: number; readonly bytes: number }> = () => [];
  let quotas: () => Iterable<{ readonly upstream: string; readonly scope: string; readonly remaining: number | null }> = () => [];
  const metrics: Metrics = {
    registry,
    requestsTotal: counter('breakwater_requests_total', 'Requests answered, by route, method and the status sent to the client.', ['route', 'method', 'code']),
    requestDuration: histogram('breakwater_request_duration_seconds', 'Time from request to the end of the response, by route and method.', ['route', 'method']),
    upstreamAttempts: counter('breakwater_upstream_attempts_total', 'Attempts made upstream, by classified outcome.', ['route', 'upstream', 'outcome'], byUpstream),
    upstreamAttemptDuration: histogram('breakwater_upstream_attempt_duration_seconds', "Time from an attempt's start to its response headers or failure.", ['route', 'upstream'], byUpstream),
    retries: counter('breakwater_retries_total', 'Retries made, by the outcome that was retried.', ['route', 'reason']),
    retryBudgetExhausted: counter('breakwater_retry_budget_exhausted_total', "Retries skipped because the route's retry budget was spent.", ['route']),
    circuitState: scraped('breakwater_circuit_state', 'Circuit breaker state per upstream (closed, shedding, open, half_open): 1 for the current state.', ['upstream', 'state'], (set) => {
      for (const { upstream, state } of circuitStates()) {
        for (const candidate of CIRCUIT_STATES) set({ upstream, state: candidate }, candidate === state ? 1 : 0);
      }
    }),
    circuitTransitions: counter('breakwater_circuit_transitions_total', 'Circuit breaker state changes, by the state entered.', ['upstream', 'to'], byUpstream),
    circuitRejections: counter('breakwater_circuit_rejections_total', "Calls refused by the upstream's breaker: open, half-open, or shed while it fails.", ['upstream'], byUpstream),
    rateLimited: counter('breakwater_rate_limited_total', "Requests refused by the route's rate limit.", ['route']),
    rateLimitQueueDepth: scraped(
      'breakwater_rate_limit_queue_depth',
      "Requests waiting in the route's rate-limit queue (by priority class when classes are configured).",
      ['route', 'priority'],
      (set) => {
        // prom-client renders the labels a series has: without classes, no `priority`.
        for (const { route, priority, depth } of queueDepths()) set((priority === undefined ? { route } : { route, priority }) as Record<'route' | 'priority', string>, depth);
      },
    ),
    errors: counter('breakwater_errors_total', 'Errors Breakwater produced or recorded, by route and code.', ['route', 'code']),
    rateLimitDegraded: counter('breakwater_rate_limit_degraded_total', 'Rate-limit decisions made without Redis, per redis.onError.', ['route']),
    configReloads: counter('breakwater_config_reloads_total', 'Config reloads, by result.', ['result']),
    pacingWait: histogram<'upstream', 'priority'>('breakwater_pacing_wait_seconds', 'Time requests were held by proactive pacing (by priority class when classes are configured).', [
      'upstream',
      'priority',
    ]),
    upstreamQuotaRemaining: scraped('breakwater_upstream_quota_remaining', 'Quota the upstream announced as remaining (the lowest across pacing keys).', ['upstream', 'scope'], (set) =>
      lowestQuotas(quotas(), set),
    ),
    pacingPauses: counter('breakwater_pacing_pauses_total', 'Times pacing started holding requests for an upstream.', ['upstream']),
    tlsIntercept: counter('breakwater_tls_intercept_total', 'CONNECT requests by TLS interception result.', ['result']),
    tlsCertificatesMinted: counter<never>('breakwater_tls_certificates_minted_total', 'Leaf certificates minted for intercepted hosts.', []),
    traceSpansDropped: counter<never>('breakwater_trace_spans_dropped_total', 'Spans that could not be exported: no room in the queue, or a failed or timed-out export (SPEC §11).', []),
    failovers: counter('breakwater_failovers_total', 'Attempts sent to a target other than the first in order (SPEC §8.1).', ['route', 'upstream', 'target']),
    shed: counter('breakwater_shed_total', SHED_HELP, ['route', 'priority', 'reason']),
    forwardRequests: counter('breakwater_forward_requests_total', 'Forward-proxy requests by caller and allow-list decision: allowed, denied, would_deny (SPEC §19.3).', ['caller', 'decision']),
    policyReports: counter('breakwater_policy_reports_total', 'What a policy in report mode would have done and did not, by route and policy (SPEC §19.2).', ['route', 'policy']),
    fallbacks: counter('breakwater_fallbacks_total', 'Requests answered with a stored (stale) answer, by the error code it replaced (SPEC §8.2).', ['route', 'reason']),
    staleEntries: scraped('breakwater_stale_entries', 'Answers stored for stale fallback, per route.', ['route'], (set) => {
      for (const { route, entries } of staleStores()) set({ route }, entries);
    }),
    staleBytes: scraped('breakwater_stale_bytes', 'Bytes of the answers stored for stale fallback, per route.', ['route'], (set) => {
      for (const { route, bytes } of staleStores()) set({ route }, bytes);
    }),
    internalErrors: counter<never>('breakwater_internal_errors_total', 'Faults caught by the last net (unhandled promise rejections); the process kept serving.', []),

    setCircuitStates: (source) => void (circuitStates = source),
    setQueueDepths: (source) => void (queueDepths = source),
    setQuotas: (source) => void (quotas = source),
    setStaleStores: (source) => void (staleStores = source),

    registerConfig: (config) => zeroSeries(metrics, config, byUpstream.values),

    async render(openMetrics) {
      const text = await registry.metrics();
      return openMetrics ? { contentType: OPENMETRICS_CONTENT_TYPE, body: toOpenMetrics(text) } : { contentType: PROMETHEUS_CONTENT_TYPE, body: text };
    },
  };
  return metrics;
}

let shared: Metrics | undefined;

/** The process's metrics: created on first use, kept across reloads. */
export function processMetrics(): Metrics {
  shared ??= createMetrics();
  return shared;
}
