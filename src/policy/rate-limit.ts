/**
 * The rate-limit layer (SPEC §3 `rateLimit`, §4), on bottleneck: a token
 * bucket (`burst` tokens, refilled at `rate`), a cap on requests in flight
 * (`maxConcurrent`, a slot held until the response has ended), and a
 * bounded queue with a deadline. One limiter per key value (`route`,
 * `client-ip`, `header:<name>`), kept in a bounded LRU. Shared limits live
 * in Redis; while Redis is unreachable the route follows `redis.onError`
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

function limiterOptions(config: RateLimitConfig): Bottleneck.ConstructorOptions {
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

interface KeyLimiters {
  readonly primary: Bottleneck;
  /** Local stand-in for a shared limiter while Redis is away (`onError: local`). */
  fallback?: Bottleneck;
}

/** Stops a limiter's timers (and its Redis subscription); local limiters answer synchronously. */
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

function isIdle(limiter: Bottleneck): boolean {
  const counts = limiter.counts();
  return counts.RECEIVED + counts.QUEUED + counts.RUNNING + counts.EXECUTING === 0;
}

function queuedIn(limiter: Bottleneck | undefined): number {
  if (!limiter) return 0;
  const counts = limiter.counts();
  return counts.RECEIVED + counts.QUEUED;
}

export function createRateLimit(route: string, config: RateLimitConfig, deps: RateLimitDeps): RateLimitPolicy {
  const options = limiterOptions(config);
  const keys = new Map<string, KeyLimiters>();
  const step = config.rate !== null ? refillStep(config.rate) : undefined;
  const sharedStore = config.shared ? deps.shared : undefined;

  const createLocal = () => new Bottleneck(options);
  const createShared = (key: string) =>
    new Bottleneck({
      ...options,
      id: `breakwater:${route}:${Buffer.from(key).toString('base64url')}`,
      datastore: 'ioredis',
      connection: sharedStore!.connection,
      clearDatastore: false,
      timeout: SHARED_IDLE_MS,
    });

  const limitersFor = (key: string): KeyLimiters => {
    let entry = keys.get(key);
    if (entry) {
      keys.delete(key); // re-inserted below: Map order is the LRU order
    } else {
      entry = { primary: sharedStore ? createShared(key) : createLocal() };
      entry.primary.on('error', () => {});
      if (keys.size >= MAX_KEYS) evictIdle();
    }
    keys.set(key, entry);
    return entry;
  };

  const evictIdle = () => {
    for (const [key, entry] of keys) {
      if (keys.size < MAX_KEYS) return;
      if (!isIdle(entry.primary) || (entry.fallback && !isIdle(entry.fallback))) continue;
      keys.delete(key);
      disconnect(entry.primary);
      if (entry.fallback) disconnect(entry.fallback);
    }
  };

  const refused = (why: string): BreakwaterError => {
    const retryAfter = step ? Math.max(1, Math.ceil(step.intervalMs / step.amount / 1000)) : 1;
    const headers: Record<string, string> = {};
    if (config.rate !== null && step) {
      headers['ratelimit-policy'] = `"${route}";q=${config.burst};w=${Math.max(1, Math.ceil(config.burst / config.rate))}`;
      headers['ratelimit'] = `"${route}";r=0;t=${retryAfter}`;
    }
    deps.metrics.rateLimited.inc({ route });
    return new BreakwaterError('RATE_LIMITED', `Route '${route}' is rate limited: ${why}.`, { retryAfterSeconds: retryAfter, headers });
  };

  /** Waits for a token and a slot; resolves with the function that frees the slot. */
  async function acquire(limiter: Bottleneck, ctx: RequestContext): Promise<() => void> {
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
    const waitMs = Math.max(0, Math.min(config.queue.timeout, ctx.deadline - deps.now()));
    let timer: NodeJS.Timeout | undefined;
    let stopAbort: () => void = () => {};
    try {
      await Promise.race([
        started,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(refused(`no token or slot came free within queue.timeout (${config.queue.timeout} ms)`)), waitMs);
          stopAbort = ctx.signal.onAbort(() => reject(ctx.signal.reason));
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
    }
    return release;
  }

  return {
    async run(ctx, signal, next) {
      const key = keyOf(ctx, config.key);
      const entry = limitersFor(key);
      let release: () => void;
      if (sharedStore && !sharedStore.healthy()) {
        release = await degraded(ctx, entry);
      } else {
        try {
          release = await acquire(entry.primary, ctx);
        } catch (error) {
          // Anything but our own refusal or the client leaving is Redis failing.
          if (!sharedStore || error instanceof BreakwaterError || error === ctx.signal.reason) throw error;
          release = await degraded(ctx, entry);
        }
      }
      ctx.cleanups.push(release);
      return next(ctx, signal);
    },
    close() {
      for (const entry of keys.values()) {
        disconnect(entry.primary);
        if (entry.fallback) disconnect(entry.fallback);
      }
      keys.clear();
    },
    queueDepth() {
      let depth = 0;
      for (const entry of keys.values()) depth += queuedIn(entry.primary) + queuedIn(entry.fallback);
      return depth;
    },
    size: () => keys.size,
  };

  /** Redis is away: enforce locally, or let it through, per redis.onError. */
  async function degraded(ctx: RequestContext, entry: KeyLimiters): Promise<() => void> {
    ctx.flags.add('RATE_LIMIT_DEGRADED');
    deps.metrics.rateLimitDegraded.inc({ route });
    if (sharedStore!.onError === 'allow') return () => {};
    entry.fallback ??= createLocal();
    return acquire(entry.fallback, ctx);
  }
}
