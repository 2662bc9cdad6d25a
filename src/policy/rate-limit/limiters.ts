/**
 * The limiters behind a route's rate limit (rate-limit.ts): one per key
 * value, local (local-limiter.ts) or shared in Redis (shared-limiter.ts),
 * behind one interface; the bounded table of them; and the RATE_LIMITED
 * answer a refusal becomes.
 */
import { createHash } from 'node:crypto';
import type { RateLimitConfig } from '../../config/types.js';
import type { Metrics } from '../../observe/metrics.js';
import { BreakwaterError } from '../../errors/breakwater-error.js';

import type { RequestContext } from '../context.js';
import type { SharedLimits } from './shared-limits.js';

import { BoundedMap } from '../../lib/bounded-map.js';
import { LimiterRefused, LocalLimiter, type Refusal } from './local-limiter.js';
import { SharedLimiter, SharedRefused } from './shared-limiter.js';

/**
 * Live key limiters per route: a flood of distinct keys cannot exhaust
 * memory. Only a spare limiter is dropped to make room (idle, its bucket
 * full again: a fresh one would be the same). When none is spare, a new key
 * value shares the route's one overflow limiter (same settings) until one
 * is: dropping a limiter that spent tokens would hand its key a fresh
 * bucket, so a client could reset its own limit by cycling key values.
 * The price, under such a flood: new key values share one limit while
 * every key in the table spent a token in the last burst / rate seconds or
 * has a request in flight; keys already in the table keep theirs.
 */
export const MAX_KEYS = 2000;

/**
 * Key values longer than this (characters) are replaced by their SHA-256,
 * `sha256:` and 64 hex digits (71 characters, so never equal to a value
 * kept as sent). Hashed rather than cut: two API keys or tokens sharing
 * their first characters stay two limits. Short values stay as they are,
 * so shared limits keep their Redis keys across an upgrade.
 */
export const MAX_KEY_LENGTH = 64;
/** One key's limiter, local or shared, behind the interface the layer uses. */
export interface Limiter {
  /** Whole tokens left, when known locally. */
  tokens?(): number;
  /**
   * `cost` tokens (1 but with `rateLimit.cost`, SPEC §15) and a slot; resolves with the slot's release; rejects
   * with a RATE_LIMITED error, the abort reason, or a Redis error.
   */
  acquire(ctx: RequestContext, waitMs: number, cost: number): Promise<() => void>;
  /** `cost` tokens and a slot now, or undefined; never waits, never counts a refusal (report mode, SPEC §19.2). */
  tryAcquire(cost: number): (() => void) | undefined | Promise<(() => void) | undefined>;
  /** A request's charge changed by `delta` (settled from its usage); rejects when Redis fails. */
  settle(delta: number): void | Promise<void>;
  idle(): boolean;
  /** Dropping it forgets nothing a fresh one would not know. */
  spare(): boolean;
  queued(): number;
  queuedByRank(into: number[]): void;
  close(): void;
}

export interface KeyLimiters {
  readonly primary: Limiter;
  /** Local stand-in for a shared limiter while Redis is away (`onError: local`). */
  fallback?: Limiter;
}

/** The request's key value, its length bounded ({@link MAX_KEY_LENGTH}). */
export function keyOf(ctx: RequestContext, key: RateLimitConfig['key']): string {
  if (key === 'route') return '';
  let value: string;
  if (key === 'client-ip') value = ctx.remoteAddress ?? '';
  else {
    const sent = ctx.clientHeaders[key.slice('header:'.length)];
    value = Array.isArray(sent) ? sent.join(',') : (sent ?? '');
  }
  return value.length <= MAX_KEY_LENGTH ? value : `sha256:${createHash('sha256').update(value).digest('hex')}`;
}

export interface RateLimitDeps {
  readonly metrics: Metrics;
  readonly now: () => number;
  /** Present when a shared limit may use Redis. */
  readonly shared?: SharedLimits;
}

/** What the limiters of one route are built from. */
export interface RouteLimit {
  readonly route: string;
  readonly config: RateLimitConfig;
  readonly deps: RateLimitDeps;
}

/** `breakwater_shed_total`'s reason for a limiter's refusal (SPEC §13). */
const SHED_REASONS = { 'queue-full': 'queue_full', timeout: 'queue_timeout', displaced: 'displaced' } as const;

/** RATE_LIMITED with RateLimit headers; `left`: whole tokens and seconds to the next one, when known. */
function refused(
  { route, config, deps }: RouteLimit,
  ctx: RequestContext,
  reason: keyof typeof SHED_REASONS,
  left?: { tokens: number; toNext: number },
): BreakwaterError {
  deps.metrics.shed.inc({ route, priority: ctx.priority?.name ?? '', reason: SHED_REASONS[reason] });
  const why = whyRefused(config, reason);
  const headers: Record<string, string> = {};
  let retryAfter = 1;
  if (config.rate !== null) {
    const toNext = left ? left.toNext : 1 / config.rate;
    retryAfter = Math.max(1, Math.ceil(toNext || 1 / config.rate));
    headers['ratelimit-policy'] =
      `"${route}";q=${config.burst};w=${Math.max(1, Math.ceil(config.burst / config.rate))}`;
    headers['ratelimit'] = `"${route}";r=${left ? Math.max(0, left.tokens) : 0};t=${Math.ceil(toNext)}`;
  }
  deps.metrics.rateLimited.inc({ route });
  return new BreakwaterError('RATE_LIMITED', `Route '${route}' is rate limited: ${why}.`, {
    retryAfterSeconds: retryAfter,
    headers,
  });
}

function whyRefused(config: RateLimitConfig, reason: 'queue-full' | 'timeout' | 'displaced'): string {
  if (reason === 'timeout') return `no token or slot came free within queue.timeout (${config.queue.timeout} ms)`;
  if (reason === 'displaced')
    return `its queue is full (queue.size ${config.queue.size}) and a request of a higher priority class took this one's place`;
  return config.queue.size === 0
    ? 'no token or slot is free and queue.size is 0'
    : `its queue is full (queue.size ${config.queue.size})`;
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

export function createLocal(limit: RouteLimit): Limiter {
  const { config, deps } = limit;
  const limiter = new LocalLimiter({
    rate: config.rate,
    burst: config.burst,
    maxConcurrent: config.maxConcurrent,
    queueSize: config.queue.size,
    now: deps.now,
  });
  // A cost-weighted limit refuses at once a wait it knows is too long (SPEC §15).
  const weighted = config.cost !== null;
  const refusal = (ctx: RequestContext, reason: Refusal, cost: number) =>
    refused(limit, ctx, reason, { tokens: limiter.tokensLeft(), toNext: limiter.secondsToNextToken(cost) });
  return {
    acquire: (ctx, waitMs, cost) => {
      if (weighted && limiter.waitFor(cost) > waitMs) return Promise.reject(refusal(ctx, 'timeout', cost));
      return acquireFor(
        ctx,
        waitMs,
        (ms, onAbort) => limiter.acquire(ms, onAbort, ctx.priority, ctx.flags, cost),
        (error) => (error instanceof LimiterRefused ? refusal(ctx, error.reason, cost) : undefined),
      );
    },
    tryAcquire: (cost) => limiter.tryAcquire(cost),
    settle: (delta) => limiter.settle(delta),
    idle: () => limiter.idle(),
    spare: () => limiter.spare(),
    queued: () => limiter.queued(),
    queuedByRank: (into) => limiter.queuedByRank(into),
    close: () => limiter.close(),
    tokens: () => limiter.tokensLeft(),
  };
}

function createShared(limit: RouteLimit, store: SharedLimits, key: string): Limiter {
  const { route, config } = limit;
  const limiter = new SharedLimiter(store.buckets, route, key, {
    rate: config.rate,
    burst: config.burst,
    maxConcurrent: config.maxConcurrent,
    queueSize: config.queue.size,
  });
  // Redis failing for one request: this key's waiters give up at once (each then decided by onError).
  const stopFailure = store.onFailure(() => limiter.failWaiters(new Error('redis is failing')));
  const refusal = (ctx: RequestContext, error: unknown) => {
    if (!(error instanceof SharedRefused)) return undefined;
    const last = error.decision;
    const toNext = last && last.waitMs > 0 ? last.waitMs / 1000 : config.rate !== null ? 1 / config.rate : 1;
    return refused(limit, ctx, error.reason, last ? { tokens: last.tokens, toNext } : undefined);
  };
  return {
    acquire: (ctx, waitMs, cost) =>
      acquireFor(
        ctx,
        waitMs,
        (ms, onAbort) => limiter.acquire(ms, onAbort, ctx.priority, ctx.flags, cost, config.cost !== null),
        (error) => refusal(ctx, error),
      ),
    tryAcquire: (cost) => limiter.tryAcquire(cost),
    settle: (delta) => limiter.settle(delta),
    idle: () => limiter.idle(),
    // The bucket lives in Redis: an idle one forgets nothing.
    spare: () => limiter.idle(),
    queued: () => limiter.queued(),
    queuedByRank: (into) => limiter.queuedByRank(into),
    close: () => {
      stopFailure();
      limiter.close();
    },
  };
}

function closeLimiters(entry: KeyLimiters): void {
  entry.primary.close();
  entry.fallback?.close();
}

/** The key limiters of one route: at most MAX_KEYS, then the overflow limiter (see MAX_KEYS). */
export function keyTable(limit: RouteLimit, sharedStore: SharedLimits | undefined) {
  const keys = new BoundedMap<string, KeyLimiters>({
    max: MAX_KEYS,
    busy: (entry) => !entry.primary.spare() || (entry.fallback !== undefined && !entry.fallback.spare()),
    onEvict: closeLimiters,
  });
  const create = (key: string): KeyLimiters => ({
    primary: sharedStore ? createShared(limit, sharedStore, key) : createLocal(limit),
  });
  // Local even for a shared limit: it only serves while this replica's table is full.
  let overflow: KeyLimiters | undefined;
  const all = () => (overflow ? [...keys.values(), overflow] : keys.values());
  return {
    limitersFor: (key: string): KeyLimiters =>
      keys.getOrCreateWithin(key, () => create(key)) ?? (overflow ??= { primary: createLocal(limit) }),
    all,
    peek: (key: string) => keys.peek(key),
    size: () => keys.size,
    close() {
      for (const entry of all()) closeLimiters(entry);
      keys.clear();
      overflow = undefined;
    },
  };
}
