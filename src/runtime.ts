/**
 * An immutable snapshot of one config, built once at load: compiled routes
 * with their policy pipelines, and one keep-alive pool per upstream target. A
 * reload builds a new runtime and closes the old one when its requests are
 * done; nothing here is mutated per request.
 */
import type { Config, RouteConfig, UpstreamConfig } from './config/types.js';

import type { UpstreamBreaker } from './policy/breaker/circuit-breaker.js';
import { type RateLimitPolicy } from './policy/rate-limit/rate-limit.js';
import { type Interceptor } from './tls/interceptor.js';
import { connectSharedLimits, type SharedLimits } from './policy/rate-limit/shared-limits.js';

import { matchRoute, type MatchInput } from './router/match-route.js';
import { compilePriorities } from './policy/priorities.js';

import { buildForwardProxy } from './runtime/forward-targets.js';
import { buildUpstreams, type UpstreamDeps, type UpstreamRuntime } from './runtime/upstreams.js';

import { StaleStore } from './upstream/stale-store.js';

import { type Lookup, type TargetChecker } from './router/target-check.js';
import type { Forwarder, UpstreamTarget } from './upstream/forward.js';
import { destroyPool } from './upstream/pools.js';
import { createTracing, tracingEnabled, type Tracing } from './observe/tracing.js';
import { LeakGuard } from './credentials/leak-guard.js';
import { SecretFiles } from './credentials/secret-source.js';

export type { TargetRuntime, UpstreamRuntime } from './runtime/upstreams.js';
export type { RouteRuntime } from './runtime/routes.js';
import { buildRoute, type RouteRuntime } from './runtime/routes.js';

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
  /**
   * The target and breaker of `host:port` (`https` for intercepted CONNECTs), for routes without an upstream;
   * bounded in number.
   */
  forwardTarget(
    host: string,
    port: number,
    https?: boolean,
  ): { readonly target: UpstreamTarget; readonly breaker: UpstreamBreaker };
  /** TLS interception, when `forwardProxy.connect.mode: intercept`. */
  readonly interceptor: Interceptor | null;
  /** SPEC §18: the leak guard, while any credentials are configured; null (no cost) otherwise. */
  readonly leakGuard: LeakGuard | null;
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

/**
 * What building a runtime needs: what its upstreams need (runtime/upstreams.ts: metrics, the clock, jitter, the
 * logger), and the forwarder.
 */
export interface RuntimeDeps extends Omit<UpstreamDeps, 'previous' | 'files'> {
  readonly forwarder: Forwarder;
  /** DNS for forward-proxy target checks; the system resolver by default. */
  readonly lookup?: Lookup;
  /** State to take over from the runtime this one replaces (reload). */
  readonly inherit?: Inheritance;
}

export { MAX_FORWARD_TARGETS } from './runtime/forward-targets.js';

/** What a new runtime may take over from the one it replaces: unchanged upstreams and local limits keep their state. */
export interface Inheritance {
  /**
   * The same upstream, when its settings (failover targets included) did not change: its targets' pools and
   * breakers.
   */
  upstream(config: UpstreamConfig): UpstreamRuntime | undefined;
  rateLimit(route: RouteConfig): RateLimitPolicy | undefined;
  /** The route's stored answers, when its name, upstream (its settings too), fallback and cache did not change. */
  store(route: RouteConfig, upstream: UpstreamConfig | undefined): StaleStore | undefined;
  /** The interceptor (its leaf key and minted leaves), when `intercept` is unchanged (the CA certificate included). */
  interceptor(intercept: NonNullable<Config['forwardProxy']['intercept']>): Interceptor | undefined;
}

/** How long startup waits for Redis before serving with shared limits degraded. */
const REDIS_STARTUP_WAIT_MS = 3000;

/** What a reload's runtime may take over from this one: state whose config did not change. */
function handOver(
  config: Config,
  upstreams: Map<string, UpstreamRuntime>,
  routes: readonly RouteRuntime[],
  interceptor: Interceptor | null,
): Inheritance {
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
    store: (next, upstream) => {
      const current = routes.find((route) => route.name === next.name);
      // Answers from another URL or account are not this upstream's.
      if (!same(current?.upstream?.config ?? null, upstream ?? null)) return undefined;
      // Kept only while the answers would still be the same: where the route sends, with what, its fallback,
      // its cache and the headers that key an answer.
      const sendsAlike = (route: RouteConfig) => [
        route.fallback,
        route.cache,
        route.keyHeaders,
        route.upstream,
        route.match,
        route.stripPrefix,
        route.headers.request,
      ];
      return current?.store && same(sendsAlike(current.config), sendsAlike(next)) ? current.store : undefined;
    },
    interceptor: (next) => (interceptor && same(config.forwardProxy.intercept, next) ? interceptor : undefined),
  };
}

/** Stops what a runtime holds, sparing what `keep` holds (taken over by the runtime that replaces it). */
async function closeRuntime(
  parts: {
    readonly shared: SharedLimits | undefined;
    readonly routes: readonly RouteRuntime[];
    readonly upstreams: ReadonlyMap<string, UpstreamRuntime>;
    readonly forwardTargets: { close(): void };
    readonly tracing: Tracing | null;
    readonly files: SecretFiles;
  },
  keep: ReadonlySet<object>,
): Promise<void> {
  const { shared, routes, upstreams, forwardTargets, tracing, files } = parts;
  files.close();
  // Redis first: a terminated connection lets the limiters go without
  // unsubscribing one by one from a Redis that may be gone.
  await shared?.close();
  for (const route of routes) {
    route.pipeline.close();
    if (route.rateLimit && !keep.has(route.rateLimit)) route.rateLimit.close();
    if (route.store && !keep.has(route.store)) route.store.clear();
  }
  for (const target of [...upstreams.values()].flatMap((upstream) => upstream.targets)) {
    if (!keep.has(target.breaker)) target.breaker.close();
    if (target.pacing && !keep.has(target.pacing)) target.pacing.close();
    if (!keep.has(target.pool)) destroyPool(target.pool);
  }
  forwardTargets.close();
  await tracing?.close();
}

export function buildRuntime(config: Config, deps: RuntimeDeps): Runtime {
  const inherited = new Set<object>();
  let inFlight = 0;
  let retired: (() => void) | undefined;
  const needsRedis =
    config.redis !== null &&
    (config.routes.some((route) => route.rateLimit?.shared === true) ||
      Object.values(config.upstreams).some((upstream) => upstream.pacing.enabled && upstream.pacing.shared));
  const shared = needsRedis ? connectSharedLimits(config.redis!, deps.logger, deps.wall) : undefined;
  const files = new SecretFiles();
  const upstreams = buildUpstreams(config, { ...deps, files }, inherited, shared, deps.inherit?.upstream);
  const credentials = [...upstreams.values()].flatMap((upstream) =>
    upstream.targets.flatMap((target) =>
      target.credential ? [{ owner: upstream.config.name, credential: target.credential }] : [],
    ),
  );
  const priorities = compilePriorities(config.priorities);
  const routes = config.routes.map((route) =>
    buildRoute(
      route,
      route.upstream === null ? null : upstreams.get(route.upstream)!,
      deps,
      shared,
      inherited,
      priorities,
    ),
  );
  // Origin-form requests only reach routes with an upstream; the others
  // serve forward-proxy requests.
  const reverseRoutes = routes.filter((route) => route.upstream !== null);
  const { targets, interceptor, forwardTargets } = buildForwardProxy(config, deps);
  // SPEC §11: a provider per runtime, so a reload applies tracing changes; the old one exports what it holds
  // when it retires.
  const tracing = tracingEnabled(config.tracing)
    ? createTracing(config.tracing, { dropped: (count) => deps.metrics.traceSpansDropped.inc({}, count) })
    : null;
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
    leakGuard: credentials.length > 0 ? new LeakGuard(credentials) : null,
    forwardTargetCount: () => forwardTargets.size(),
    redisStatus: () => shared?.status() ?? null,
    async warmUp() {
      if (shared && !(await shared.waitReady(REDIS_STARTUP_WAIT_MS))) {
        deps.logger?.warn(
          { waitedMs: REDIS_STARTUP_WAIT_MS },
          `redis is not reachable yet: shared rate limits start per redis.onError=${shared.onError}`,
        );
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
    close: (keep = new Set<object>()) =>
      closeRuntime({ shared, routes, upstreams, forwardTargets, tracing, files }, keep),
  };
}
