/**
 * The rate-limit layer (SPEC §3 `rateLimit`, §4): a token
 * bucket (`burst` tokens, refilled at `rate`), a cap on requests in flight
 * (`maxConcurrent`, a slot held until the response has ended), and a
 * bounded queue with a deadline. One limiter per key value (`route`,
 * `client-ip`, `header:<name>`), kept in a bounded LRU. Local limits use
 * LocalLimiter (local-limiter.ts says why not bottleneck); shared limits
 * live in Redis through bottleneck's ioredis clustering; while Redis is unreachable the route follows `redis.onError`
 * and every such decision is counted and flagged RATE_LIMIT_DEGRADED.
 *
 * Refused requests get RATE_LIMITED (429) with `Retry-After` and the IETF
 * RateLimit fields describing the limit that refused them.
 */
import Bottleneck from 'bottleneck';
import type { RateLimitConfig } from '../config/types.js';
import { BreakwaterError } from '../errors/breakwater-error.js';
import type { Metrics } from '../observe/metrics.js';
import type { RequestContext } from './context.js';
import type { Policy } from './pipeline.js';
import type { SharedLimits } from './shared-limits.js';
import { LimiterRefused, LocalLimiter } from './local-limiter.js';

/** Live key limiters per route: a flood of distinct keys cannot exhaust memory. */
export const MAX_KEYS = 2000;
/** Bottleneck applies reservoir increases on its heartbeat; this is the finest step used. */
const MIN_STEP_MS = 50;
/** Shared limiters' Redis keys expire after this long unused. */
const SHARED_IDLE_MS = 10 * 60_000;

export interface RateLimitDeps {
  readonly metrics: Metrics;
  readonly now: () => number;
  /** Present when a shared limit may use Redis. */
  readonly shared?: SharedLimits;
}

export interface RateLimitPolicy extends Policy {
  /** Requests waiting in this route's queues. */
  queueDepth(): number;
  /** Live key limiters. */
  size(): number;
  /** Whole tokens left for `key: route` limits (null for keyed, shared or rate-less ones). */
  tokens(): number | null;
}

interface Refill {
  readonly intervalMs: number;
  readonly amount: number;
}

/** A refill step bottleneck can honour: at least MIN_STEP_MS, whole tokens. */
export function refillStep(rate: number): Refill {
  const amount = Math.max(1, Math.ceil((MIN_STEP_MS * rate) / 1000));
  return { intervalMs: (amount * 1000) / rate, amount };
}

/** bottleneck's settings for a shared (Redis) limiter. */
function bottleneckOptions(config: RateLimitConfig): Bottleneck.ConstructorOptions {
  const options: Bottleneck.ConstructorOptions = {
    maxConcurrent: config.maxConcurrent,
    // OVERFLOW: a request that cannot start and finds `size` requests
    // waiting is dropped (refused); with size 0 nothing ever waits.
    highWater: config.queue.size,
    strategy: Bottleneck.strategy.OVERFLOW,
  };
  if (config.rate !== null) {
    const step = refillStep(config.rate);
    Object.assign(options, {
      reservoir: config.burst,
      reservoirIncreaseInterval: step.intervalMs,
      reservoirIncreaseAmount: step.amount,
      reservoirIncreaseMaximum: config.burst,
      heartbeatInterval: Math.min(250, step.intervalMs),
    });
  }
  return options;
}

/** One key's limiter, local or shared, behind the interface the layer uses. */
interface Limiter {
  /** Whole tokens left, when known locally. */
  tokens?(): number;
  /** Resolves with the slot's release; rejects with a RATE_LIMITED error, the abort reason, or a Redis error. */
  acquire(ctx: RequestContext, waitMs: number): Promise<() => void>;
  idle(): boolean;
  queued(): number;
  close(): void;
}

interface KeyLimiters {
  readonly primary: Limiter;
  /** Local stand-in for a shared limiter while Redis is away (`onError: local`). */
  fallback?: Limiter;
}

/** Stops a limiter's timers and its Redis subscription. */
function disconnect(limiter: Bottleneck): void {
  try {
    void Promise.resolve(limiter.disconnect(false)).catch(() => {});
  } catch {
    // already disconnected
  }
}

function keyOf(ctx: RequestContext, key: RateLimitConfig['key']): string {
  if (key === 'route') return '';
  if (key === 'client-ip') return ctx.remoteAddress ?? '';
  const value = ctx.clientHeaders[key.slice('header:'.length)];
  return Array.isArray(value) ? value.join(',') : (value ?? '');
}

export function createRateLimit(route: string, config: RateLimitConfig, deps: RateLimitDeps): RateLimitPolicy {
  const keys = new Map<string, KeyLimiters>();
  const sharedStore = config.shared ? deps.shared : undefined;

  const refused = (why: string, limiter?: LocalLimiter): BreakwaterError => {
    const headers: Record<string, string> = {};
    let retryAfter = 1;
    if (config.rate !== null) {
      const toNext = limiter ? limiter.secondsToNextToken() : 1 / config.rate;
      retryAfter = Math.max(1, Math.ceil(toNext || 1 / config.rate));
      headers['ratelimit-policy'] = `"${route}";q=${config.burst};w=${Math.max(1, Math.ceil(config.burst / config.rate))}`;
      headers['ratelimit'] = `"${route}";r=${limiter ? limiter.tokensLeft() : 0};t=${Math.ceil(toNext)}`;
    }
    deps.metrics.rateLimited.inc({ route });
    return new BreakwaterError('RATE_LIMITED', `Route '${route}' is rate limited: ${why}.`, { retryAfterSeconds: retryAfter, headers });
  };

  const createLocal = (): Limiter => {
    const limiter = new LocalLimiter({ rate: config.rate, burst: config.burst, maxConcurrent: config.maxConcurrent, queueSize: config.queue.size, now: deps.now });
    return {
      async acquire(ctx, waitMs) {
        try {
          return await limiter.acquire(waitMs, (listener) => ctx.signal.onAbort(listener));
        } catch (error) {
          if (ctx.signal.aborted) throw ctx.signal.reason;
          if (error instanceof LimiterRefused) {
            throw refused(
              error.reason === 'timeout'
                ? `no token or slot came free within queue.timeout (${config.queue.timeout} ms)`
                : config.queue.size === 0
                  ? 'no token or slot is free and queue.size is 0'
                  : `its queue is full (queue.size ${config.queue.size})`,
              limiter,
            );
          }
          throw error;
        }
      },
      idle: () => limiter.idle(),
      queued: () => limiter.queued(),
      close: () => limiter.close(),
      tokens: () => limiter.tokensLeft(),
    };
  };

  const createShared = (key: string): Limiter => {
    const limiter = new Bottleneck({
      ...bottleneckOptions(config),
      id: `breakwater:${route}:${Buffer.from(key).toString('base64url')}`,
      datastore: 'ioredis',
      connection: sharedStore!.connection,
      clearDatastore: false,
      timeout: SHARED_IDLE_MS,
    });
    limiter.on('error', () => {});
    // bottleneck starts its Redis datastore in the constructor and leaves
    // that promise unhandled: with Redis gone, the first request of a new
    // key ended the process. Its failure is this request's Redis failure.
    limiter.ready().catch(() => {});
    return {
      acquire: (ctx, waitMs) => acquireShared(limiter, ctx, waitMs),
      idle: () => {
        const counts = limiter.counts();
        return counts.RECEIVED + counts.QUEUED + counts.RUNNING + counts.EXECUTING === 0;
      },
      queued: () => {
        const counts = limiter.counts();
        return counts.RECEIVED + counts.QUEUED;
      },
      close: () => disconnect(limiter),
    };
  };

  /** Waits for a token and a slot of a Redis-backed limiter. */
  async function acquireShared(limiter: Bottleneck, ctx: RequestContext, waitMs: number): Promise<() => void> {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let abandoned = false;
    const started = new Promise<void>((resolve, reject) => {
      limiter
        .schedule(() => {
          if (abandoned) return Promise.resolve();
          resolve();
          return held;
        })
        .catch(reject);
    });
    let timer: NodeJS.Timeout | undefined;
    let stopAbort: () => void = () => {};
    let stopFailure: () => void = () => {};
    try {
      await Promise.race([
        started,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(refused(`no token or slot came free within queue.timeout (${config.queue.timeout} ms)`)), waitMs);
          stopAbort = ctx.signal.onAbort(() => reject(ctx.signal.reason));
          // bottleneck submits one job of a limiter at a time: when Redis
          // fails, the requests queued behind the one that timed out give
          // up at once instead of each paying redis.timeout in turn.
          stopFailure = sharedStore!.onFailure(() => reject(new Error('redis is failing')));
        }),
      ]);
    } catch (error) {
      abandoned = true;
      release();
      if (error instanceof BreakwaterError || error === ctx.signal.reason) throw error;
      if (error instanceof Bottleneck.BottleneckError) {
        throw refused(config.queue.size === 0 ? 'no token or slot is free and queue.size is 0' : `its queue is full (queue.size ${config.queue.size})`);
      }
      throw error;
    } finally {
      clearTimeout(timer);
      stopAbort();
      stopFailure();
    }
    return release;
  }

  const limitersFor = (key: string): KeyLimiters => {
    let entry = keys.get(key);
    if (entry) {
      keys.delete(key); // re-inserted below: Map order is the LRU order
    } else {
      if (keys.size >= MAX_KEYS) evictIdle();
      entry = { primary: sharedStore ? createShared(key) : createLocal() };
    }
    keys.set(key, entry);
    return entry;
  };

  const evictIdle = () => {
    for (const [key, entry] of keys) {
      if (keys.size < MAX_KEYS) return;
      if (!entry.primary.idle() || (entry.fallback && !entry.fallback.idle())) continue;
      keys.delete(key);
      entry.primary.close();
      entry.fallback?.close();
    }
  };

  /** Redis is away: enforce locally, or let it through, per redis.onError. */
  const degraded = async (ctx: RequestContext, entry: KeyLimiters, waitMs: number): Promise<() => void> => {
    ctx.flags.add('RATE_LIMIT_DEGRADED');
    deps.metrics.rateLimitDegraded.inc({ route });
    if (sharedStore!.onError === 'allow') return () => {};
    entry.fallback ??= createLocal();
    return entry.fallback.acquire(ctx, waitMs);
  };

  return {
    async run(ctx, signal, next) {
      const entry = limitersFor(keyOf(ctx, config.key));
      const waitMs = Math.max(0, Math.min(config.queue.timeout, ctx.deadline - deps.now()));
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
    size: () => keys.size,
    tokens: () => (config.key === 'route' && config.rate !== null ? (keys.get('')?.primary.tokens?.() ?? config.burst) : null),
  };
}
