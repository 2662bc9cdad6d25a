/**
 * The rate-limit layer (SPEC §3 `rateLimit`, §4): a token
 * bucket (`burst` tokens, refilled at `rate`), a cap on requests in flight
 * (`maxConcurrent`, a slot held until the response has ended), and a
 * bounded queue with a deadline. One limiter per key value (`route`,
 * `client-ip`, `header:<name>`), kept in a bounded LRU. Local limits use
 * LocalLimiter; shared limits live in Redis, one Lua script per decision
 * (shared-limiter.ts); while Redis fails the route follows `redis.onError`
 * and every such decision is counted and flagged RATE_LIMIT_DEGRADED.
 *
 * Refused requests get RATE_LIMITED (429) with `Retry-After` and the IETF
 * RateLimit fields describing the limit that refused them.
 */
import type { RateLimitConfig } from '../config/types.js';
import { BreakwaterError } from '../errors/breakwater-error.js';
import type { Metrics } from '../observe/metrics.js';
import type { Policy, RequestContext } from './context.js';
import type { SharedLimits } from './shared-limits.js';
import { BoundedMap } from '../lib/bounded-map.js';
import { LimiterRefused, LocalLimiter } from './local-limiter.js';
import { SharedLimiter, SharedRefused } from './shared-limiter.js';

/** Live key limiters per route: a flood of distinct keys cannot exhaust memory. */
export const MAX_KEYS = 2000;
export interface RateLimitDeps {
  readonly metrics: Metrics;
  readonly now: () => number;
  /** Present when a shared limit may use Redis. */
  readonly shared?: SharedLimits;
}

export interface RateLimitPolicy extends Policy {
  /** Requests waiting in this route's queues. */
  queueDepth(): number;
  /** The same, per priority rank (index 0: the highest class). */
  queueDepthByRank(): number[];
  /** Live key limiters. */
  size(): number;
  /** Whole tokens left for `key: route` limits (null for keyed, shared or rate-less ones). */
  tokens(): number | null;
}

/** One key's limiter, local or shared, behind the interface the layer uses. */
interface Limiter {
  /** Whole tokens left, when known locally. */
  tokens?(): number;
  /** Resolves with the slot's release; rejects with a RATE_LIMITED error, the abort reason, or a Redis error. */
  acquire(ctx: RequestContext, waitMs: number): Promise<() => void>;
  idle(): boolean;
  queued(): number;
  queuedByRank(into: number[]): void;
  close(): void;
}

interface KeyLimiters {
  readonly primary: Limiter;
  /** Local stand-in for a shared limiter while Redis is away (`onError: local`). */
  fallback?: Limiter;
}

function keyOf(ctx: RequestContext, key: RateLimitConfig['key']): string {
  if (key === 'route') return '';
  if (key === 'client-ip') return ctx.remoteAddress ?? '';
  const value = ctx.clientHeaders[key.slice('header:'.length)];
  return Array.isArray(value) ? value.join(',') : (value ?? '');
}

/** What the limiters of one route are built from. */
interface RouteLimit {
  readonly route: string;
  readonly config: RateLimitConfig;
  readonly deps: RateLimitDeps;
}

/** `breakwater_shed_total`'s reason for a limiter's refusal (SPEC §13). */
const SHED_REASONS = { 'queue-full': 'queue_full', timeout: 'queue_timeout', displaced: 'displaced' } as const;

/** RATE_LIMITED with RateLimit headers; `left`: whole tokens and seconds to the next one, when known. */
function refused({ route, config, deps }: RouteLimit, ctx: RequestContext, reason: keyof typeof SHED_REASONS, left?: { tokens: number; toNext: number }): BreakwaterError {
  deps.metrics.shed.inc({ route, priority: ctx.priority?.name ?? '', reason: SHED_REASONS[reason] });
  const why = whyRefused(config, reason);
  const headers: Record<string, string> = {};
  let retryAfter = 1;
  if (config.rate !== null) {
    const toNext = left ? left.toNext : 1 / config.rate;
    retryAfter = Math.max(1, Math.ceil(toNext || 1 / config.rate));
    headers['ratelimit-policy'] = `"${route}";q=${config.burst};w=${Math.max(1, Math.ceil(config.burst / config.rate))}`;
    headers['ratelimit'] = `"${route}";r=${left ? Math.max(0, left.tokens) : 0};t=${Math.ceil(toNext)}`;
  }
  deps.metrics.rateLimited.inc({ route });
  return new BreakwaterError('RATE_LIMITED', `Route '${route}' is rate limited: ${why}.`, { retryAfterSeconds: retryAfter, headers });
}

function whyRefused(config: RateLimitConfig, reason: 'queue-full' | 'timeout' | 'displaced'): string {
  if (reason === 'timeout') return `no token or slot came free within queue.timeout (${config.queue.timeout} ms)`;
  if (reason === 'displaced') return `its queue is full (queue.size ${config.queue.size}) and a request of a higher priority class took this one's place`;
  return config.queue.size === 0 ? 'no token or slot is free and queue.size is 0' : `its queue is full (queue.size ${config.queue.size})`;
}

/** A limiter's acquire for one request: the client leaving wins; the limiter's own refusal (`refusal` maps it) becomes RATE_LIMITED. */
async function acquireFor(
  ctx: RequestContext,
  waitMs: number,
  acquire: (waitMs: number, onAbort: (listener: () => void) => () => void) => Promise<() => void>,
  refusal: (error: unknown) => BreakwaterError | undefined,
): Promise<() => void> {
  try {
    return await acquire(waitMs, (listener) => ctx.signal.onAbort(listener));
  } catch (error) {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    throw refusal(error) ?? error;
  }
}

function createLocal(limit: RouteLimit): Limiter {
  const { config, deps } = limit;
  const limiter = new LocalLimiter({ rate: config.rate, burst: config.burst, maxConcurrent: config.maxConcurrent, queueSize: config.queue.size, now: deps.now });
  return {
    acquire: (ctx, waitMs) =>
      acquireFor(
        ctx,
        waitMs,
        (ms, onAbort) => limiter.acquire(ms, onAbort, ctx.priority, ctx.flags),
        (error) => (error instanceof LimiterRefused ? refused(limit, ctx, error.reason, { tokens: limiter.tokensLeft(), toNext: limiter.secondsToNextToken() }) : undefined),
      ),
    idle: () => limiter.idle(),
    queued: () => limiter.queued(),
    queuedByRank: (into) => limiter.queuedByRank(into),
    close: () => limiter.close(),
    tokens: () => limiter.tokensLeft(),
  };
}

function createShared(limit: RouteLimit, store: SharedLimits, key: string): Limiter {
  const { route, config } = limit;
  const limiter = new SharedLimiter(store.buckets, route, key, { rate: config.rate, burst: config.burst, maxConcurrent: config.maxConcurrent, queueSize: config.queue.size });
  // Redis failing for one request: this key's waiters give up at once (each then decided by onError).
  const stopFailure = store.onFailure(() => limiter.failWaiters(new Error('redis is failing')));
  const refusal = (ctx: RequestContext, error: unknown) => {
    if (!(error instanceof SharedRefused)) return undefined;
    const last = error.decision;
    const toNext = last && last.waitMs > 0 ? last.waitMs / 1000 : config.rate !== null ? 1 / config.rate : 1;
    return refused(limit, ctx, error.reason, last ? { tokens: last.tokens, toNext } : undefined);
  };
  return {
    acquire: (ctx, waitMs) =>
      acquireFor(
        ctx,
        waitMs,
        (ms, onAbort) => limiter.acquire(ms, onAbort, ctx.priority, ctx.flags),
        (error) => refusal(ctx, error),
      ),
    idle: () => limiter.idle(),
    queued: () => limiter.queued(),
    queuedByRank: (into) => limiter.queuedByRank(into),
    close: () => {
      stopFailure();
      limiter.close();
    },
  };
}

export function createRateLimit(route: string, config: RateLimitConfig, deps: RateLimitDeps): RateLimitPolicy {
  const keys = new BoundedMap<string, KeyLimiters>({
    max: MAX_KEYS,
    busy: (entry) => !entry.primary.idle() || (entry.fallback !== undefined && !entry.fallback.idle()),
    onEvict: (entry) => {
      entry.primary.close();
      entry.fallback?.close();
    },
  });
  const sharedStore = config.shared ? deps.shared : undefined;
  const limit: RouteLimit = { route, config, deps };

  const limitersFor = (key: string): KeyLimiters => keys.getOrCreate(key, () => ({ primary: sharedStore ? createShared(limit, sharedStore, key) : createLocal(limit) }));

  /** Redis is away: enforce locally, or let it through, per redis.onError. */
  const degraded = async (ctx: RequestContext, entry: KeyLimiters, waitMs: number): Promise<() => void> => {
    ctx.flags.add('RATE_LIMIT_DEGRADED');
    deps.metrics.rateLimitDegraded.inc({ route });
    if (sharedStore!.onError === 'allow') return () => {};
    entry.fallback ??= createLocal(limit);
    return entry.fallback.acquire(ctx, waitMs);
  };

  return {
    async run(ctx, signal, next) {
      const entry = limitersFor(keyOf(ctx, config.key));
      const started = deps.now();
      const waitMs = Math.max(0, Math.min(config.queue.timeout, ctx.deadline - started));
      let release: () => void;
      if (sharedStore && !sharedStore.healthy()) {
        release = await degraded(ctx, entry, waitMs);
      } else {
        try {
          release = await entry.primary.acquire(ctx, waitMs);
        } catch (error) {
          // Anything but our own refusal or the client leaving is Redis failing.
          if (!sharedStore || error instanceof BreakwaterError || error === ctx.signal.reason) throw error;
          sharedStore.reportFailure(error);
          release = await degraded(ctx, entry, waitMs);
        }
      }
      ctx.cleanups.push(release);
      if (ctx.trace) {
        const waited = deps.now() - started;
        if (waited >= 1) ctx.trace.wait('queue', Math.round(waited));
      }
      return next(ctx, signal);
    },
    close() {
      for (const entry of keys.values()) {
        entry.primary.close();
        entry.fallback?.close();
      }
      keys.clear();
    },
    queueDepth() {
      let depth = 0;
      for (const entry of keys.values()) depth += entry.primary.queued() + (entry.fallback?.queued() ?? 0);
      return depth;
    },
    queueDepthByRank() {
      const byRank: number[] = [];
      for (const entry of keys.values()) {
        entry.primary.queuedByRank(byRank);
        entry.fallback?.queuedByRank(byRank);
      }
      return byRank;
    },
    size: () => keys.size,
    tokens: () => (config.key === 'route' && config.rate !== null ? (keys.peek('')?.primary.tokens?.() ?? config.burst) : null),
  };
}
