/**
 * One route of a runtime (runtime.ts): its pipeline around the attempt,
 * its destinations (one per target of its upstream, each with the route's
 * view of its pacer), its rate limit and stale store (taken over from the
 * runtime it replaces when their settings did not change), and what the
 * server reads of it: edits, priority classes, whether a body is held for
 * replay.
 */
import { readsBody } from '../policy/cost.js';
import type { IncomingHttpHeaders } from 'node:http';
import type { CacheConfig, RouteConfig, UpstreamConfig } from '../config/types.js';
import { sleep as systemSleep } from '../lib/clock.js';
import type { Signal } from '../lib/signal.js';
import { createAttempt, type AttemptDeps } from '../policy/attempt.js';
import type { Destination } from '../policy/context.js';
import { createFailover } from '../policy/failover.js';
import { createRoutePipeline, type RoutePipeline } from '../policy/pipeline.js';
import type { PriorityClass, PriorityClasses } from '../policy/priorities.js';
import { createRateLimit, type RateLimitPolicy } from '../policy/rate-limit/rate-limit.js';
import type { SharedLimits } from '../policy/rate-limit/shared-limits.js';
import { compileMatcher, type RouteMatcher } from '../router/match-route.js';
import { compileHeaderEdits, type CompiledHeaderEdits } from '../upstream/headers.js';
import { StaleStore } from '../upstream/stale-store.js';
import type CachePolicy from 'http-cache-semantics';
import { policyOn } from '../upstream/cache-rules.js';
import type { UpstreamRuntime } from './upstreams.js';

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
  /** Stored answers for stale fallback (SPEC §8.2), when `fallback.stale` is set: the route's store. */
  readonly stale: StaleStore | null;
  /** The route's cache (SPEC §17), when `cache` is set: its settings and the route's store (one with `stale`). */
  readonly cache: RouteCache | null;
  /** The route's one store, whichever uses it (null when neither does). */
  readonly store: StaleStore | null;
  /** Whether a request body is held for replay, from the route's retry settings (SPEC §3 `retry.bufferLimit`): upstream/body.ts reads it. */
  readonly bodyReplay: {
    readonly replay: boolean;
    readonly costed: boolean;
    readonly whole: boolean;
    readonly bufferLimit: number;
  };
}

/** What a route is built with: the attempt's needs, the policies' clock and jitter, and its predecessor's state on a reload. */
export interface RouteDeps extends AttemptDeps {
  readonly random?: () => number;
  readonly sleep?: (ms: number, signal: Signal) => Promise<void>;
  readonly inherit?: {
    rateLimit(route: RouteConfig): RateLimitPolicy | undefined;
    store(route: RouteConfig, upstream: UpstreamConfig | undefined): StaleStore | undefined;
  };
}

/** A route's cache (SPEC §17): its settings, the route's store, the freshness rules on the clock, shared requests. */
export interface RouteCache {
  readonly config: CacheConfig;
  readonly store: StaleStore;
  readonly policy: typeof CachePolicy;
  /** The GETs upstream that identical GETs wait for (coalescing), by store key. */
  readonly shared: Map<string, unknown>;
}

/** The route's one store (SPEC §17): bounded by `cache`'s limits when it has a cache, else by `fallback.stale`'s. */
function storeOf(config: RouteConfig, inherited: StaleStore | undefined): StaleStore | null {
  if (inherited) return inherited;
  const { cache } = config;
  const stale = config.fallback.stale;
  const limits = cache ?? stale;
  if (!limits) return null;
  const { maxEntries, maxEntryBytes, maxBytes } = limits;
  return new StaleStore({ maxStale: stale?.maxStale ?? 0, maxEntries, maxEntryBytes, maxBytes }, cache !== null);
}

/**
 * Whether a body is held for replay (a retry could send it again; an OAuth2 401 sends it once more, SPEC §18),
 * read for a cost (§15), or read whole to be signed (SigV4 without unsignedPayload).
 */
function bodyReplayOf(config: RouteConfig, upstream: UpstreamRuntime | null) {
  const pacing = upstream?.config.pacing;
  const costed = readsBody(config.rateLimit?.cost ?? null) || (pacing?.enabled === true && readsBody(pacing.cost));
  const types = upstream?.targets.map((target) => target.credential) ?? [];
  const signed = upstream
    ? [upstream.config, ...upstream.config.failover].some(
        (target) => target.credentials?.type === 'aws-sigv4' && !target.credentials.unsignedPayload,
      )
    : false;
  const refreshes = types.some((credential) => credential?.type === 'oauth2');
  return {
    replay: config.retry.maxRetries > 0 || costed || refreshes,
    costed,
    whole: signed,
    bufferLimit: config.retry.bufferLimit,
  };
}

export function buildRoute(
  config: RouteConfig,
  upstream: UpstreamRuntime | null,
  deps: RouteDeps,
  shared: SharedLimits | undefined,
  inherited: Set<object>,
  priorities: PriorityClasses | null,
): RouteRuntime {
  // The priority header is Breakwater's: never forwarded (SPEC §13).
  const request = config.headers.request;
  // The app's own headers of the names the upstream's credentials write never reach it (SPEC §18).
  const requestEdits = compileHeaderEdits({
    ...request,
    remove: [...request.remove, ...(priorities ? [priorities.header] : []), ...(upstream?.managedHeaders ?? [])],
  });
  const { metrics, now } = deps;

  const attempt = createAttempt(config, requestEdits, upstream?.config.errorRules ?? [], deps);

  // One destination per target of the upstream, each with the route's view of its pacer.
  const destinations: Destination[] = (upstream?.targets ?? []).map((target) => ({
    target,
    breaker: target.breaker.policy,
    pacing: target.pacing?.policy(config.name, config.match.pathPrefix),
    edits: target.edits ?? undefined,
    credential: target.credential ?? undefined,
  }));
  const policyDeps = {
    now,
    wall: deps.wall,
    random: deps.random ?? Math.random,
    sleep: deps.sleep ?? systemSleep,
    metrics,
  };
  const failover = upstream?.failover
    ? createFailover(config.name, upstream.config.name, upstream.failover, destinations, policyDeps)
    : undefined;
  const previousLimit = config.rateLimit && !config.rateLimit.shared ? deps.inherit?.rateLimit(config) : undefined;
  if (previousLimit) inherited.add(previousLimit);
  const rateLimit =
    previousLimit ??
    (config.rateLimit ? createRateLimit(config.name, config.rateLimit, { metrics, now, shared }) : null);
  const previousStore =
    config.fallback.stale || config.cache ? deps.inherit?.store(config, upstream?.config) : undefined;
  if (previousStore) inherited.add(previousStore);
  const store = storeOf(config, previousStore);
  return {
    name: config.name,
    config,
    rateLimit,
    stale: config.fallback.stale ? store : null,
    cache:
      config.cache && store ? { config: config.cache, store, policy: policyOn(deps.wall), shared: new Map() } : null,
    store,
    // A body is buffered only when a retry could send it again, or a cost is read from it (SPEC §15).
    bodyReplay: bodyReplayOf(config, upstream),
    matcher: compileMatcher(config),
    upstream,
    destination: destinations[0] ?? null,
    requestEdits,
    responseEdits: compileHeaderEdits(config.headers.response),
    plainErrors: config.errors.normalize === 'off',
    classify: priorities ? priorities.forRoute(config.priority) : null,
    pipeline: createRoutePipeline(config, policyDeps, attempt, {
      rateLimit: rateLimit ?? undefined,
      failover,
      retryCounts: upstream?.retryCounts,
      idempotencyHeader: upstream?.config.idempotencyKeys.header,
      refreshesTokens: upstream?.targets.some((target) => target.credential?.type === 'oauth2') ?? false,
    }),
  };
}
