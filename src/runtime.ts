/**
 * An immutable snapshot of one config, built once at load: compiled routes
 * with their policy pipelines, and one keep-alive pool per upstream target. A
 * reload builds a new runtime and closes the old one when its requests are
 * done; nothing here is mutated per request.
 */
import type { Config, RouteConfig, UpstreamConfig } from './config/types.js';
import type { Destination } from './policy/context.js';
import type { UpstreamBreaker } from './policy/breaker/circuit-breaker.js';
import { createRateLimit, type RateLimitPolicy } from './policy/rate-limit/rate-limit.js';
import { createInterceptor, type Interceptor } from './tls/interceptor.js';
import { connectSharedLimits, type SharedLimits } from './policy/rate-limit/shared-limits.js';
import { createRoutePipeline, type RoutePipeline } from './policy/pipeline.js';
import { sleep } from './lib/clock.js';
import { compileMatcher, matchRoute, type MatchInput, type RouteMatcher } from './router/match-route.js';
import { compileHeaderEdits, type CompiledHeaderEdits } from './upstream/headers.js';
import { compilePriorities, type PriorityClass, type PriorityClasses } from './policy/priorities.js';
import type { IncomingHttpHeaders } from 'node:http';
import { createForwardTargets } from './runtime/forward-targets.js';
import { buildUpstreams, type UpstreamDeps, type UpstreamRuntime } from './runtime/upstreams.js';
import { createAttempt } from './policy/attempt.js';
import { StaleStore } from './upstream/stale-store.js';
import { createFailover } from './policy/failover.js';
import { createTargetChecker, type Lookup, type TargetChecker } from './router/target-check.js';
import type { Forwarder, UpstreamTarget } from './upstream/forward.js';
import { destroyPool } from './upstream/pools.js';
import { createTracing, tracingEnabled, type Tracing } from './observe/tracing.js';

export type { TargetRuntime, UpstreamRuntime } from './runtime/upstreams.js';

export interface RouteRuntime {
  readonly name: string;
  readonly config: RouteConfig;
  readonly matcher: RouteMatcher;
  /** Null for forward-proxy routes, whose target is the request's own. */
  readonly upstream: UpstreamRuntime | null;
  /** Where its attempts go (null for forward-proxy routes: the request's own target). */
  readonly destination: Destination | null;
  readonly requestEdits: CompiledHeaderEdits;
  readonly responseEdits: CompiledHeaderEdits;
  /** `errors.normalize: off`: Breakwater's own errors as plain text. */
  readonly plainErrors: boolean;
  /** A request's priority class (SPEC §13); null without a `priorities` section. */
  readonly classify: ((headers: IncomingHttpHeaders) => PriorityClass) | null;
  readonly pipeline: RoutePipeline;
  readonly rateLimit: RateLimitPolicy | null;
  /** Stored answers for stale fallback (SPEC §8.2), when `fallback.stale` is set. */
  readonly stale: StaleStore | null;
  /** Whether a request body is held for replay, from the route's retry settings (SPEC §3 `retry.bufferLimit`): upstream/body.ts reads it. */
  readonly bodyReplay: { readonly replay: boolean; readonly bufferLimit: number };
}

export interface Runtime {
  readonly config: Config;
  /** OpenTelemetry traces (SPEC §11), when on. */
  readonly tracing: Tracing | null;
  readonly routes: readonly RouteRuntime[];
  readonly upstreams: ReadonlyMap<string, UpstreamRuntime>;
  /** The first route whose match holds for an origin-form request. */
  match(input: MatchInput): RouteRuntime | undefined;
  /** The first route whose match holds for a forward-proxy request (routes without an upstream included). */
  matchForward(input: MatchInput): RouteRuntime | undefined;
  /** Forward-proxy target checks (allow-lists, ports, private networks). */
  readonly targets: TargetChecker;
  /** The target and breaker of `host:port` (`https` for intercepted CONNECTs), for routes without an upstream; bounded in number. */
  forwardTarget(host: string, port: number, https?: boolean): { readonly target: UpstreamTarget; readonly breaker: UpstreamBreaker };
  /** TLS interception, when `forwardProxy.connect.mode: intercept`. */
  readonly interceptor: Interceptor | null;
  /** Live forward-proxy targets (each with a breaker and a pool). */
  forwardTargetCount(): number;
  /** Waits (briefly) for what the runtime connects to, Redis for shared limits. */
  warmUp(): Promise<void>;
  /** The Redis connection's state for `/status`; null when this runtime holds none. */
  redisStatus(): ReturnType<SharedLimits['status']> | null;
  /** Breakers, pools and limiters this runtime took over from the one before. */
  inherited(): ReadonlySet<object>;
  /** A request starts (ends) on this runtime. */
  enter(): void;
  leave(): void;
  inFlight(): number;
  /** What a replacing runtime may take over. */
  handOver(): Inheritance;
  /** Closes once the requests that started on it are done, sparing what `keep` holds. */
  retire(keep: ReadonlySet<object>): Promise<void>;
  /** Stops breakers and limiters, disconnects Redis, destroys pooled sockets, sparing what `keep` holds. */
  close(keep?: ReadonlySet<object>): Promise<void>;
}

/** What building a runtime needs: what its upstreams need (runtime/upstreams.ts: metrics, the clock, jitter, the logger), and the forwarder. */
export interface RuntimeDeps extends Omit<UpstreamDeps, 'previous'> {
  readonly forwarder: Forwarder;
  /** DNS for forward-proxy target checks; the system resolver by default. */
  readonly lookup?: Lookup;
  /** State to take over from the runtime this one replaces (reload). */
  readonly inherit?: Inheritance;
}

export { MAX_FORWARD_TARGETS } from './runtime/forward-targets.js';

/** What a new runtime may take over from the one it replaces: unchanged upstreams and local limits keep their state. */
export interface Inheritance {
  /** The same upstream, when its settings (failover targets included) did not change: its targets' pools and breakers. */
  upstream(config: UpstreamConfig): UpstreamRuntime | undefined;
  rateLimit(route: RouteConfig): RateLimitPolicy | undefined;
  /** The route's stored answers, when its name and fallback settings did not change. */
  stale(route: RouteConfig): StaleStore | undefined;
  /** The interceptor (its leaf key and minted leaves), when `intercept` is unchanged (the CA certificate included). */
  interceptor(intercept: NonNullable<Config['forwardProxy']['intercept']>): Interceptor | undefined;
}

function buildRoute(
  config: RouteConfig,
  upstream: UpstreamRuntime | null,
  deps: RuntimeDeps,
  shared: SharedLimits | undefined,
  inherited: Set<object>,
  priorities: PriorityClasses | null,
): RouteRuntime {
  // The priority header is Breakwater's: never forwarded (SPEC §13).
  const request = config.headers.request;
  const requestEdits = compileHeaderEdits(priorities ? { ...request, remove: [...request.remove, priorities.header] } : request);
  const { metrics, now } = deps;

  const attempt = createAttempt(config, requestEdits, upstream?.config.errorRules ?? [], deps);

  // One destination per target of the upstream, each with the route's view of its pacer.
  const destinations: Destination[] = (upstream?.targets ?? []).map((target) => ({
    target,
    breaker: target.breaker.policy,
    pacing: target.pacing?.policy(config.name, config.match.pathPrefix),
    edits: target.edits ?? undefined,
  }));
  const policyDeps = { now, wall: deps.wall, random: deps.random ?? Math.random, sleep: deps.sleep ?? sleep, metrics };
  const failover = upstream?.failover ? createFailover(config.name, upstream.config.name, upstream.failover, destinations, policyDeps) : undefined;
  const previousLimit = config.rateLimit && !config.rateLimit.shared ? deps.inherit?.rateLimit(config) : undefined;
  if (previousLimit) inherited.add(previousLimit);
  const rateLimit = previousLimit ?? (config.rateLimit ? createRateLimit(config.name, config.rateLimit, { metrics, now, shared }) : null);
  const previousStale = config.fallback.stale ? deps.inherit?.stale(config) : undefined;
  if (previousStale) inherited.add(previousStale);
  const stale = previousStale ?? (config.fallback.stale ? new StaleStore(config.fallback.stale) : null);
  return {
    name: config.name,
    config,
    rateLimit,
    stale,
    // A body is buffered only when a retry could send it again.
    bodyReplay: { replay: config.retry.maxRetries > 0, bufferLimit: config.retry.bufferLimit },
    matcher: compileMatcher(config),
    upstream,
    destination: destinations[0] ?? null,
    requestEdits,
    responseEdits: compileHeaderEdits(config.headers.response),
    plainErrors: config.errors.normalize === 'off',
    classify: priorities ? priorities.forRoute(config.priority) : null,
    pipeline: createRoutePipeline(config, policyDeps, attempt, { rateLimit: rateLimit ?? undefined, failover }),
  };
}

/** How long startup waits for Redis before serving with shared limits degraded. */
const REDIS_STARTUP_WAIT_MS = 3000;

/** What a reload's runtime may take over from this one: state whose config did not change. */
function handOver(config: Config, upstreams: Map<string, UpstreamRuntime>, routes: readonly RouteRuntime[], interceptor: Interceptor | null): Inheritance {
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  return {
    upstream: (next) => {
      const current = upstreams.get(next.name);
      return current && same(current.config, next) ? current : undefined;
    },
    rateLimit: (next) => {
      const current = routes.find((route) => route.name === next.name);
      return current?.rateLimit && same(current.config.rateLimit, next.rateLimit) ? current.rateLimit : undefined;
    },
    stale: (next) => {
      const current = routes.find((route) => route.name === next.name);
      // Kept only while the answers would still be the same: where the route sends, with what, and its fallback.
      const sendsAlike = (route: RouteConfig) => [route.fallback, route.upstream, route.match, route.stripPrefix, route.headers.request];
      return current?.stale && same(sendsAlike(current.config), sendsAlike(next)) ? current.stale : undefined;
    },
    interceptor: (next) => (interceptor && same(config.forwardProxy.intercept, next) ? interceptor : undefined),
  };
}

export function buildRuntime(config: Config, deps: RuntimeDeps): Runtime {
  const inherited = new Set<object>();
  let inFlight = 0;
  let retired: (() => void) | undefined;
  const needsRedis =
    config.redis !== null && (config.routes.some((route) => route.rateLimit?.shared === true) || Object.values(config.upstreams).some((upstream) => upstream.pacing.enabled && upstream.pacing.shared));
  const shared = needsRedis ? connectSharedLimits(config.redis!, deps.logger, deps.wall) : undefined;
  const upstreams = buildUpstreams(config, deps, inherited, shared, deps.inherit?.upstream);
  const priorities = compilePriorities(config.priorities);
  const routes = config.routes.map((route) => buildRoute(route, route.upstream === null ? null : upstreams.get(route.upstream)!, deps, shared, inherited, priorities));
  // Origin-form requests only reach routes with an upstream; the others
  // serve forward-proxy requests.
  const reverseRoutes = routes.filter((route) => route.upstream !== null);
  const targets = createTargetChecker(config.forwardProxy, deps.lookup);
  const intercept = config.forwardProxy.intercept;
  const interceptor = intercept ? (deps.inherit?.interceptor(intercept) ?? createInterceptor(intercept, deps.metrics, deps.wall)) : null;
  const forwardConnectMs = Math.max(config.defaults.timeouts.connect, ...config.routes.filter((route) => !route.upstream).map((route) => route.timeouts.connect));
  const forwardTargets = createForwardTargets(targets, () => interceptor?.upstreamContext, deps, forwardConnectMs, config.forwardProxy.circuitBreaker);
  // SPEC §11: a provider per runtime, so a reload applies tracing changes; the old one exports what it holds when it retires.
  const tracing = tracingEnabled(config.tracing) ? createTracing(config.tracing, { dropped: (count) => deps.metrics.traceSpansDropped.inc({}, count) }) : null;
  return {
    config,
    tracing,
    routes,
    upstreams,
    match: (input) => matchRoute(reverseRoutes, input),
    matchForward: (input) => matchRoute(routes, input),
    targets,
    forwardTarget: (host, port, https) => forwardTargets.get(host, port, https),
    interceptor,
    forwardTargetCount: () => forwardTargets.size(),
    redisStatus: () => shared?.status() ?? null,
    async warmUp() {
      if (shared && !(await shared.waitReady(REDIS_STARTUP_WAIT_MS))) {
        deps.logger?.warn({ waitedMs: REDIS_STARTUP_WAIT_MS }, `redis is not reachable yet: shared rate limits start per redis.onError=${shared.onError}`);
      }
    },
    inherited: () => inherited,
    enter() {
      inFlight += 1;
    },
    leave() {
      inFlight -= 1;
      if (inFlight === 0) retired?.();
    },
    inFlight: () => inFlight,
    handOver: () => handOver(config, upstreams, routes, interceptor),
    retire(keep) {
      return new Promise<void>((resolve) => {
        retired = () => {
          retired = undefined;
          void this.close(keep).then(resolve);
        };
        if (inFlight === 0) retired();
      });
    },
    async close(keep = new Set<object>()) {
      // Redis first: a terminated connection lets the limiters go without
      // unsubscribing one by one from a Redis that may be gone.
      await shared?.close();
      for (const route of routes) {
        route.pipeline.close();
        if (route.rateLimit && !keep.has(route.rateLimit)) route.rateLimit.close();
        if (route.stale && !keep.has(route.stale)) route.stale.clear();
      }
      for (const target of [...upstreams.values()].flatMap((upstream) => upstream.targets)) {
        if (!keep.has(target.breaker)) target.breaker.close();
        if (target.pacing && !keep.has(target.pacing)) target.pacing.close();
        if (!keep.has(target.pool)) destroyPool(target.pool);
      }
      forwardTargets.close();
      await tracing?.close();
    },
  };
}
