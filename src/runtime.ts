/**
 * An immutable snapshot of one config, built once at load: compiled routes
 * with their policy pipelines, and one keep-alive agent per upstream. A
 * reload builds a new runtime and closes the old one when its requests are
 * done; nothing here is mutated per request.
 */
import type { Config, RouteConfig, UpstreamConfig } from './config/types.js';
import type { Metrics } from './observe/metrics.js';
import type { RequestContext } from './policy/context.js';
import type { Signal } from './policy/signal.js';
import { createUpstreamBreaker, type UpstreamBreaker } from './policy/circuit-breaker.js';
import { createRateLimit, type RateLimitPolicy } from './policy/rate-limit.js';
import { connectSharedLimits, type SharedLimits } from './policy/shared-limits.js';
import type { Logger } from './observe/logger.js';
import { createRoutePipeline, sleep, type Next, type RoutePipeline } from './policy/pipeline.js';
import { compileMatcher, matchRoute, rewritePath, type MatchInput, type RouteMatcher } from './router/match-route.js';
import { buildUpstreamHeaders, compileHeaderEdits, type CompiledHeaderEdits } from './upstream/headers.js';
import { createForwardAgent, createUpstreamAgent } from './upstream/agents.js';
import { defaultCircuitBreaker } from './config/resolve.js';
import { createTargetChecker, type Lookup, type TargetChecker } from './router/target-check.js';
import type { Policy } from './policy/pipeline.js';
import type { Forwarder, UpstreamTarget } from './upstream/forward.js';

export interface UpstreamRuntime extends UpstreamTarget {
  readonly config: UpstreamConfig;
  readonly breaker: UpstreamBreaker;
}

export interface RouteRuntime {
  readonly name: string;
  readonly config: RouteConfig;
  readonly matcher: RouteMatcher;
  /** Null for forward-proxy routes, whose target is the request's own. */
  readonly upstream: UpstreamRuntime | null;
  readonly requestEdits: CompiledHeaderEdits;
  readonly responseEdits: CompiledHeaderEdits;
  /** `errors.normalize: off`: Breakwater's own errors as plain text. */
  readonly plainErrors: boolean;
  readonly pipeline: RoutePipeline;
  readonly rateLimit: RateLimitPolicy | null;
}

export interface Runtime {
  readonly config: Config;
  readonly routes: readonly RouteRuntime[];
  readonly upstreams: ReadonlyMap<string, UpstreamRuntime>;
  /** The first route whose match holds for an origin-form request. */
  match(input: MatchInput): RouteRuntime | undefined;
  /** The first route whose match holds for a forward-proxy request (routes without an upstream included). */
  matchForward(input: MatchInput): RouteRuntime | undefined;
  /** Forward-proxy target checks (allow-lists, ports, private networks). */
  readonly targets: TargetChecker;
  /** The target and breaker of `host:port`, for routes without an upstream; bounded in number. */
  forwardTarget(host: string, port: number): { readonly target: UpstreamTarget; readonly breaker: Policy };
  /** Live forward-proxy targets (each with a breaker and an agent). */
  forwardTargetCount(): number;
  /** Waits (briefly) for what the runtime connects to, Redis for shared limits. */
  warmUp(): Promise<void>;
  /** Stops breakers and limiters, disconnects Redis, destroys pooled sockets. */
  close(): Promise<void>;
}

export interface RuntimeDeps {
  readonly forwarder: Forwarder;
  readonly metrics: Metrics;
  /** Milliseconds on a monotonic clock. */
  readonly now: () => number;
  /** Backoff jitter source; Math.random by default. */
  readonly random?: () => number;
  readonly sleep?: (ms: number, signal: Signal) => Promise<void>;
  readonly logger?: Logger;
  /** DNS for forward-proxy target checks; the system resolver by default. */
  readonly lookup?: Lookup;
}

/** Live forward-proxy targets kept (idle ones beyond this are closed). */
export const MAX_FORWARD_TARGETS = 500;

function buildUpstream(config: UpstreamConfig, deps: RuntimeDeps): UpstreamRuntime {
  const url = new URL(config.url);
  const agent = createUpstreamAgent(config);
  const ca = config.tls.ca ?? undefined;
  const rejectUnauthorized = !config.tls.insecureSkipVerify;
  const breaker = createUpstreamBreaker(config.name, config.circuitBreaker, deps);
  return { name: config.name, config, url, agent, ca, rejectUnauthorized, proxyOptions: { target: url, agent, ca, secure: rejectUnauthorized }, breaker };
}

function buildRoute(config: RouteConfig, upstream: UpstreamRuntime | null, deps: RuntimeDeps, shared: SharedLimits | undefined): RouteRuntime {
  const requestEdits = compileHeaderEdits(config.headers.request);
  const { metrics, forwarder, now } = deps;
  const routeName = config.name;

  // The innermost step of the pipeline: one attempt, classified and counted.
  const attempt: Next = async (ctx: RequestContext, signal) => {
    const target = ctx.forward?.target ?? upstream;
    if (!target) throw new Error(`route '${config.name}' has no upstream and the request no target`);
    const started = now();
    ctx.attempts += 1;
    const result = await forwarder.forward(
      {
        req: ctx.req,
        res: ctx.res,
        upstream: target,
        path: rewritePath(ctx.url, config.match.pathPrefix, config.stripPrefix),
        headers: buildUpstreamHeaders(ctx.clientHeaders, {
          remoteAddress: ctx.remoteAddress,
          proto: 'http',
          requestId: ctx.requestId,
          edits: requestEdits,
        }),
        body: ctx.body.open(),
        connectTimeoutMs: config.timeouts.connect,
      },
      signal,
    );
    ctx.last = result.classification;
    metrics.upstreamAttempts.inc({ route: routeName, upstream: target.name, outcome: result.classification.outcome });
    metrics.upstreamAttemptDuration.observe({ route: routeName, upstream: target.name }, (now() - started) / 1000);
    return result;
  };

  const rateLimit = config.rateLimit ? createRateLimit(config.name, config.rateLimit, { metrics, now, shared }) : null;
  return {
    name: config.name,
    config,
    rateLimit,
    matcher: compileMatcher(config),
    upstream,
    requestEdits,
    responseEdits: compileHeaderEdits(config.headers.response),
    plainErrors: config.errors.normalize === 'off',
    pipeline: createRoutePipeline(config, { now, random: deps.random ?? Math.random, sleep: deps.sleep ?? sleep, metrics }, attempt, { breaker: upstream?.breaker.policy, rateLimit: rateLimit ?? undefined }),
  };
}

/** How long startup waits for Redis before serving with shared limits degraded. */
const REDIS_STARTUP_WAIT_MS = 3000;

export function buildRuntime(config: Config, deps: RuntimeDeps): Runtime {
  const upstreams = new Map<string, UpstreamRuntime>();
  for (const upstream of Object.values(config.upstreams)) upstreams.set(upstream.name, buildUpstream(upstream, deps));
  const needsRedis = config.redis !== null && config.routes.some((route) => route.rateLimit?.shared === true);
  const shared = needsRedis ? connectSharedLimits(config.redis!, deps.logger) : undefined;
  const routes = config.routes.map((route) => buildRoute(route, route.upstream === null ? null : upstreams.get(route.upstream)!, deps, shared));
  // Origin-form requests only reach routes with an upstream; the others
  // serve forward-proxy requests.
  const reverseRoutes = routes.filter((route) => route.upstream !== null);
  const targets = createTargetChecker(config.forwardProxy, deps.lookup);
  const forwardTargets = new Map<string, { target: UpstreamTarget; breaker: UpstreamBreaker }>();
  const breakerConfig = defaultCircuitBreaker();
  const closeForward = (entry: { target: UpstreamTarget; breaker: UpstreamBreaker }) => {
    entry.breaker.close();
    entry.target.agent.destroy();
  };
  const forwardTarget = (host: string, port: number) => {
    const name = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    let entry = forwardTargets.get(name);
    if (entry) {
      forwardTargets.delete(name);
    } else {
      if (forwardTargets.size >= MAX_FORWARD_TARGETS) {
        for (const [key, candidate] of forwardTargets) {
          if (forwardTargets.size < MAX_FORWARD_TARGETS) break;
          const agent = candidate.target.agent as unknown as { sockets: Record<string, unknown[]>; requests: Record<string, unknown[]> };
          if (Object.keys(agent.sockets).length > 0 || Object.keys(agent.requests).length > 0) continue;
          forwardTargets.delete(key);
          closeForward(candidate);
        }
      }
      const url = new URL(`http://${name}`);
      const agent = createForwardAgent(targets.lookup as never);
      entry = {
        target: { name, url, agent, ca: undefined, rejectUnauthorized: true, proxyOptions: { target: url, agent, ca: undefined, secure: true } },
        breaker: createUpstreamBreaker(name, breakerConfig, deps),
      };
    }
    forwardTargets.set(name, entry);
    return { target: entry.target, breaker: entry.breaker.policy };
  };
  return {
    config,
    routes,
    upstreams,
    match: (input) => matchRoute(reverseRoutes, input),
    matchForward: (input) => matchRoute(routes, input),
    targets,
    forwardTarget,
    forwardTargetCount: () => forwardTargets.size,
    async warmUp() {
      if (shared && !(await shared.waitReady(REDIS_STARTUP_WAIT_MS))) {
        deps.logger?.warn({ waitedMs: REDIS_STARTUP_WAIT_MS }, `redis is not reachable yet: shared rate limits start per redis.onError=${shared.onError}`);
      }
    },
    async close() {
      // Redis first: a terminated connection lets the limiters go without
      // unsubscribing one by one from a Redis that may be gone.
      await shared?.close();
      for (const route of routes) {
        route.pipeline.close();
        route.rateLimit?.close();
      }
      for (const upstream of upstreams.values()) {
        upstream.breaker.close();
        upstream.agent.destroy();
      }
      for (const entry of forwardTargets.values()) closeForward(entry);
      forwardTargets.clear();
    },
  };
}
