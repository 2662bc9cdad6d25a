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
import { BoundedLabel, FastCounter, FastHistogram } from './fast-metrics.js';
import type { Config, CredentialsConfig, RouteConfig } from '../config/types.js';
import { HTTP_METHODS } from '../config/defaults.js';
import { CATALOG, RECORDED_ONLY_CODES } from '../errors/catalog.js';
import { OUTCOMES } from '../upstream/classify.js';
import {
  CIRCUIT_STATES,
  fastFamilies,
  policyFamilies,
  requestFamilies,
  scrapedFamilies,
  scrapedGauges,
  type QuotaSource,
  type ScrapeSources,
  type StoreSource,
} from './metric-families.js';

/** How a request on a route with a cache was answered (SPEC §17): `X-Breakwater-Cache`, the metric's `result`. */
export const CACHE_RESULTS = ['hit', 'miss', 'revalidated', 'coalesced', 'bypass'] as const;
export type CacheResult = (typeof CACHE_RESULTS)[number];

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
export const OPENMETRICS_CONTENT_TYPE = 'application/openmetrics-text; version=1.0.0; charset=utf-8';

/**
 * Forward-proxy targets (`host:port`) with their own `upstream` series; later ones count under OTHER_TARGETS.
 * A target costs about 30 exposition lines per route (7 outcomes, a 16-line histogram, 5 circuit series):
 * 100 keep a scrape near 3,000 lines, and no dashboard shows more hosts one by one. Config names never count.
 */
export const MAX_TARGET_SERIES = 100;
/**
 * The `upstream` value of the targets beyond MAX_TARGET_SERIES: neither a config name (those start with a letter
 * or digit) nor host:port.
 */
export const OTHER_TARGETS = '_other';
const RETRY_REASONS = ['http_5xx', 'http_429', 'timeout', 'connect_failure', 'reset'] as const;
const KNOWN_METHODS: ReadonlySet<string> = new Set(HTTP_METHODS);

export interface Metrics {
  readonly registry: client.Registry;
  readonly requestsTotal: FastCounter<'route' | 'method' | 'code'>;
  readonly requestDuration: FastHistogram<'route' | 'method'>;
  readonly upstreamAttempts: FastCounter<'route' | 'upstream' | 'outcome'>;
  readonly upstreamAttemptDuration: FastHistogram<'route' | 'upstream'>;
  /** SPEC §16: per attempt whose body started, with or without timeouts.firstByte. */
  readonly upstreamFirstByte: FastHistogram<'route' | 'upstream'>;
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
  readonly upstreamQuotaRemaining: Gauge<'upstream' | 'scope' | 'dimension'>;
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
  readonly cacheEntries: Gauge<'route'>;
  readonly cacheBytes: Gauge<'route'>;
  /** Requests on a route with a cache, by how it answered them: hit, miss, revalidated, coalesced, bypass (SPEC §17). */
  readonly cacheRequests: FastCounter<'route' | 'result'>;
  /** SPEC §18: secret files re-read after a change, by result. */
  readonly credentialRotations: FastCounter<'upstream' | 'result'>;
  /** SPEC §18: OAuth2 token requests, by result. */
  readonly credentialTokenFetches: FastCounter<'upstream' | 'result'>;
  /** Where the store gauges (stale and cache) read each route's store at scrape time. */
  setStaleStores(source: () => Iterable<StoreSource>): void;
  /** Where `breakwater_circuit_state` reads the breakers' states at scrape time. */
  setCircuitStates(source: () => Iterable<{ readonly upstream: string; readonly state: string }>): void;
  /**
   * Where `breakwater_rate_limit_queue_depth` reads the queues at scrape time; `priority` only when classes are
   * configured (SPEC §13).
   */
  setQueueDepths(source: () => Iterable<QueueDepth>): void;
  /** Where the quota gauge reads the pacers' last announced remaining at scrape time. */
  setQuotas(source: () => Iterable<QuotaSource>): void;
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

/**
 * The `breakwater_shed_total` series a route can count (SPEC §13): per class (`""` without classes) and reason
 * where it waits.
 */
function zeroShed(
  shed: FastCounter<'route' | 'priority' | 'reason'>,
  config: Config,
  route: string,
  queued: boolean,
  paced: boolean,
): void {
  const classes = config.priorities?.classes ?? [{ name: '', quotaFloor: null }];
  for (const { name: priority, quotaFloor } of classes) {
    const reasons = [
      ...(queued ? ['queue_full', 'queue_timeout'] : []),
      ...(queued && config.priorities ? ['displaced'] : []),
      ...(paced ? ['max_wait'] : []),
      ...(paced && quotaFloor !== null ? ['quota_floor'] : []),
    ];
    for (const reason of reasons) shed.inc({ route, priority, reason }, 0);
  }
}

/**
 * `breakwater_forward_requests_total` (SPEC §19.3): per caller (`""`: none matched) and the decisions its mode
 * can make.
 */
function zeroForward(forwardRequests: FastCounter<'caller' | 'decision'>, config: Config): void {
  const { forwardProxy } = config;
  if (!forwardProxy.enabled) return;
  for (const { name, mode } of [{ name: '', mode: forwardProxy.mode }, ...forwardProxy.callers]) {
    for (const decision of ['allowed', 'denied', ...(mode === 'report' ? ['would_deny'] : [])])
      forwardRequests.inc({ caller: name, decision }, 0);
  }
}

/** Which policies of a route are in report mode (SPEC §19.2), as the `policy` label of breakwater_policy_reports_total names them. */
function reportingPolicies(config: Config, route: RouteConfig): string[] {
  const policies: string[] = [];
  if (route.rateLimit?.mode === 'report') policies.push('rate_limit');
  const upstream = route.upstream === null ? undefined : config.upstreams[route.upstream];
  if (upstream?.circuitBreaker.mode === 'report') policies.push('circuit_breaker');
  if (upstream?.pacing.enabled && upstream.pacing.mode === 'report') policies.push('pacing');
  return policies;
}

/** SPEC §18: a target's credential series, where its credentials use them. */
function zeroCredentials(metrics: Metrics, upstream: string, credentials: CredentialsConfig | null): void {
  if (credentials === null) return;
  const refs = Object.values(credentials).filter((value) => typeof value === 'object' && value !== null);
  for (const result of ['success', 'failure']) {
    if (refs.some((ref) => 'file' in ref)) metrics.credentialRotations.inc({ upstream, result }, 0);
    if (credentials.type === 'oauth2') metrics.credentialTokenFetches.inc({ upstream, result }, 0);
  }
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
    if (route.cache) for (const result of CACHE_RESULTS) metrics.cacheRequests.inc({ ...labels, result }, 0);
    if (route.upstream !== null) {
      for (const outcome of OUTCOMES) metrics.upstreamAttempts.inc({ ...labels, upstream: route.upstream, outcome }, 0);
      for (const target of config.upstreams[route.upstream]?.failover ?? [])
        metrics.failovers.inc({ ...labels, upstream: route.upstream, target: target.name }, 0);
    }
  }
  for (const upstream of Object.values(config.upstreams)) {
    // Breakers are per target: the primary keeps the upstream's name (SPEC §8.1).
    for (const target of [upstream.name, ...upstream.failover.map((failover) => failover.name)]) {
      metrics.circuitRejections.inc({ upstream: target }, 0);
      for (const to of CIRCUIT_STATES) metrics.circuitTransitions.inc({ upstream: target, to }, 0);
    }
  }
  for (const upstream of Object.values(config.upstreams))
    for (const target of [upstream, ...upstream.failover]) zeroCredentials(metrics, target.name, target.credentials);
  zeroForward(metrics.forwardRequests, config);
  if (config.forwardProxy.connect.mode === 'intercept') {
    for (const result of ['intercepted', 'tunnelled', 'refused']) metrics.tlsIntercept.inc({ result }, 0);
    metrics.tlsCertificatesMinted.inc({}, 0);
  }
}

export function createMetrics(options: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new client.Registry();
  if (options.defaultMetrics !== false) client.collectDefaultMetrics({ register: registry });
  const families = fastFamilies(registry);
  const byUpstream = { label: 'upstream', values: new BoundedLabel(MAX_TARGET_SERIES, OTHER_TARGETS) } as const;
  const sources: ScrapeSources = {
    circuitStates: () => [],
    queueDepths: () => [],
    staleStores: () => [],
    quotas: () => [],
  };
  const metrics: Metrics = {
    registry,
    ...requestFamilies(families, byUpstream),
    ...policyFamilies(families, byUpstream),
    ...scrapedFamilies(scrapedGauges([registry]), sources),
    setCircuitStates: (source) => void (sources.circuitStates = source),
    setQueueDepths: (source) => void (sources.queueDepths = source),
    setQuotas: (source) => void (sources.quotas = source),
    setStaleStores: (source) => void (sources.staleStores = source),
    registerConfig: (config) => zeroSeries(metrics, config, byUpstream.values),

    async render(openMetrics) {
      const text = await registry.metrics();
      return openMetrics
        ? { contentType: OPENMETRICS_CONTENT_TYPE, body: toOpenMetrics(text) }
        : { contentType: PROMETHEUS_CONTENT_TYPE, body: text };
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
