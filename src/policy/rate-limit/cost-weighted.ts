/**
 * What a rate limit in a cost unit adds (SPEC §15 `rateLimit.cost`,
 * `settle`): a request costing more than the bucket holds is answered at
 * once, and `settle: usage` replaces the estimate charged with the usage
 * the answer reports once it has ended.
 */
import type { RateLimitConfig } from '../../config/types.js';
import { BreakwaterError } from '../../errors/breakwater-error.js';
import type { Metrics } from '../../observe/metrics.js';
import type { UpstreamResponse } from '../../upstream/response.js';
import type { RequestContext } from '../context.js';
import { readUsage } from '../usage.js';
import type { Limiter } from './limiters.js';
import type { SharedLimits } from './shared-limits.js';

/** A cost above `burst` can never be taken from the bucket: not retryable, no Retry-After. */
export function neverFits(route: string, config: RateLimitConfig, cost: number): BreakwaterError {
  return new BreakwaterError(
    'RATE_LIMITED',
    `This request costs ${cost}; route '${route}' allows a burst of ${config.burst}, so it can never be sent: make it smaller.`,
    { retryable: false },
  );
}

/** Report mode: a cost above the bucket would be refused; it goes on, flagged and counted (SPEC §19.2). */
export function reportTooBig(ctx: RequestContext, route: string, metrics: Pick<Metrics, 'policyReports'>): void {
  ctx.flags.add('WOULD_RATE_LIMIT');
  metrics.policyReports.inc({ route, policy: 'rate_limit' });
}

/**
 * `settle: usage`: once the answer has ended (before its access-log line), its usage replaces the estimate it
 * was charged, the difference refunded or charged; no usage, the estimate stands. Redis failing here is
 * reported, the charge left as it was.
 */
export function settleFromUsage(
  ctx: RequestContext,
  response: UpstreamResponse,
  limiter: Limiter,
  cost: number,
  sharedStore: SharedLimits | undefined,
): void {
  const usage = readUsage(response);
  ctx.atExchangeEnd.push(() => {
    const used = usage.total();
    if (used === undefined || used === cost) return;
    const settled = limiter.settle(used - cost);
    if (settled instanceof Promise) settled.catch((error: unknown) => sharedStore?.reportFailure(error));
  });
}
