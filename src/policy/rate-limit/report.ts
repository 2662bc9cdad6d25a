/**
 * A rate limit in report mode (SPEC §19.2): the request takes a token and a
 * slot when the limit would let it start now, as enforcing would;
 * otherwise it goes on at once, unchanged, with no token or slot, flagged
 * WOULD_RATE_LIMIT and counted in breakwater_policy_reports_total. It never
 * waits, and is not counted as rate limited nor shed.
 */
import type { Metrics } from '../../observe/metrics.js';
import type { RequestContext } from '../context.js';
import type { SharedLimits } from './shared-limits.js';

interface Taker {
  tryAcquire(cost: number): (() => void) | undefined | Promise<(() => void) | undefined>;
}

interface Entry {
  readonly primary: Taker;
  fallback?: Taker;
}

export interface ReportDeps {
  readonly route: string;
  readonly metrics: Pick<Metrics, 'policyReports'>;
  readonly sharedStore: SharedLimits | undefined;
  /** A local limiter: the stand-in while Redis is away (redis.onError: local). */
  readonly local: () => Taker;
}

/** `cost`: the tokens the request takes (SPEC §15). */
export async function reportOnly(ctx: RequestContext, entry: Entry, deps: ReportDeps, cost: number): Promise<void> {
  const { sharedStore } = deps;
  let limiter: Taker | undefined = entry.primary;
  // Redis away: decide as redis.onError would (local: this replica's stand-in; allow: no limit to report on).
  if (sharedStore && !sharedStore.healthy())
    limiter = sharedStore.onError === 'allow' ? undefined : (entry.fallback ??= deps.local());
  let release: (() => void) | undefined;
  try {
    release = await limiter?.tryAcquire(cost);
  } catch (error) {
    sharedStore?.reportFailure(error);
    release = await (entry.fallback ??= deps.local()).tryAcquire(cost);
  }
  if (release) ctx.atExchangeEnd.push(release);
  else if (limiter) {
    ctx.flags.add('WOULD_RATE_LIMIT');
    deps.metrics.policyReports.inc({ route: deps.route, policy: 'rate_limit' });
  }
}
