/**
 * The rate-limit layer (SPEC §3 `rateLimit`, §4): a token
 * bucket (`burst` tokens, refilled at `rate`), a cap on requests in flight
 * (`maxConcurrent`, a slot held until the response has ended), and a
 * bounded queue with a deadline. One limiter per key value (`route`,
 * `client-ip`, `header:<name>`), kept in a bounded table (see
 * limiters.ts MAX_KEYS for what it drops and when). Local limits use
 * LocalLimiter; shared limits live in Redis, one Lua script per decision
 * (shared-limiter.ts); while Redis fails the route follows `redis.onError`
 * and every such decision is counted and flagged RATE_LIMIT_DEGRADED.
 *
 * Refused requests get RATE_LIMITED (429) with `Retry-After` and the IETF
 * RateLimit fields describing the limit that refused them.
 */

import type { RateLimitConfig } from '../../config/types.js';
import { BreakwaterError } from '../../errors/breakwater-error.js';

import type { Policy, RequestContext } from '../context.js';

import { reportOnly } from './report.js';
import {
  createLocal,
  keyOf,
  keyTable,
  type KeyLimiters,
  type Limiter,
  type RateLimitDeps,
  type RouteLimit,
} from './limiters.js';
import { costReader } from '../cost.js';
import type { SharedLimits } from './shared-limits.js';
import { neverFits, reportTooBig, settleFromUsage } from './cost-weighted.js';

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

/** Redis is away: enforce locally, or let it through, per redis.onError; the release, and the limiter charged. */
async function withoutRedis(
  limit: RouteLimit,
  sharedStore: SharedLimits,
  ctx: RequestContext,
  entry: KeyLimiters,
  waitMs: number,
  cost: number,
): Promise<[() => void, Limiter | undefined]> {
  ctx.flags.add('RATE_LIMIT_DEGRADED');
  limit.deps.metrics.rateLimitDegraded.inc({ route: limit.route });
  if (sharedStore.onError === 'allow') return [() => {}, undefined];
  entry.fallback ??= createLocal(limit);
  return [await entry.fallback.acquire(ctx, waitMs, cost), entry.fallback];
}

export function createRateLimit(route: string, config: RateLimitConfig, deps: RateLimitDeps): RateLimitPolicy {
  const sharedStore = config.shared ? deps.shared : undefined;
  const limit: RouteLimit = { route, config, deps };
  const keys = keyTable(limit, sharedStore);

  /** What a request takes from the bucket (SPEC §15): its cost in the limit's unit, else 1. */
  const costOf = config.cost !== null ? costReader(config.cost) : null;

  const degraded = (ctx: RequestContext, entry: KeyLimiters, waitMs: number, cost: number) =>
    withoutRedis(limit, sharedStore!, ctx, entry, waitMs, cost);

  /** Report mode (SPEC §19.2): report.ts. */
  const local = () => createLocal(limit);
  const report = (ctx: RequestContext, entry: KeyLimiters, cost: number) =>
    reportOnly(ctx, entry, { route, metrics: deps.metrics, sharedStore, local }, cost);

  return {
    async run(ctx, signal, next) {
      const entry = keys.limitersFor(keyOf(ctx, config.key));
      const cost = costOf ? costOf(ctx) : 1;
      // A cost above the bucket can never be taken: answered at once (SPEC §15).
      const tooBig = config.rate !== null && cost > config.burst;
      if (config.mode === 'report') {
        if (tooBig) reportTooBig(ctx, route, deps.metrics);
        else await report(ctx, entry, cost);
        return next(ctx, signal);
      }
      if (tooBig) {
        deps.metrics.rateLimited.inc({ route });
        throw neverFits(route, config, cost);
      }
      const started = deps.now();
      const waitMs = Math.max(0, Math.min(config.queue.timeout, ctx.deadline - started));
      let release: () => void;
      let charged: Limiter | undefined = entry.primary;
      if (sharedStore && !sharedStore.healthy()) {
        [release, charged] = await degraded(ctx, entry, waitMs, cost);
      } else {
        try {
          release = await entry.primary.acquire(ctx, waitMs, cost);
        } catch (error) {
          // Anything but our own refusal or the client leaving is Redis failing.
          if (!sharedStore || error instanceof BreakwaterError || error === ctx.signal.reason) throw error;
          sharedStore.reportFailure(error);
          [release, charged] = await degraded(ctx, entry, waitMs, cost);
        }
      }
      ctx.atExchangeEnd.push(release);
      if (ctx.trace) {
        const waited = deps.now() - started;
        if (waited >= 1) ctx.trace.wait('queue', Math.round(waited));
      }
      const result = await next(ctx, signal);
      if (config.settle === 'usage' && charged && result.response)
        settleFromUsage(ctx, result.response, charged, cost, sharedStore);
      return result;
    },
    close: () => keys.close(),
    queueDepth() {
      let depth = 0;
      for (const entry of keys.all()) depth += entry.primary.queued() + (entry.fallback?.queued() ?? 0);
      return depth;
    },
    queueDepthByRank() {
      const byRank: number[] = [];
      for (const entry of keys.all()) {
        entry.primary.queuedByRank(byRank);
        entry.fallback?.queuedByRank(byRank);
      }
      return byRank;
    },
    size: () => keys.size(),
    tokens: () =>
      config.key === 'route' && config.rate !== null ? (keys.peek('')?.primary.tokens?.() ?? config.burst) : null,
  };
}
