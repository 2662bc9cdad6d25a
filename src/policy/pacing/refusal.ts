/**
 * The answer to a request a pacer will not make wait (SPEC §3 `maxWait`,
 * §13 `quotaFloor`): RATE_LIMITED with the wait as Retry-After, and in
 * words why; in report mode (§19.2), the flag and the count instead.
 */
import { BreakwaterError } from '../../errors/breakwater-error.js';
import type { Metrics } from '../../observe/metrics.js';
import type { RequestContext } from '../context.js';
import type { PriorityClass } from '../priorities.js';

/** One observation per request that slept: the time it slept in all (ms). */
export function observeSlept(
  metrics: Pick<Metrics, 'pacingWait'>,
  upstream: string,
  ctx: RequestContext,
  slept: number,
): void {
  metrics.pacingWait.observe(ctx.priority ? { upstream, priority: ctx.priority.name } : { upstream }, slept / 1000);
}

/**
 * Report mode: the request a pacer would have delayed or refused goes at once, flagged and counted once per
 * request.
 */
export function reportPaced(metrics: Pick<Metrics, 'policyReports'>, ctx: RequestContext, route: string): void {
  if (ctx.flags.has('WOULD_PACE')) return;
  ctx.flags.add('WOULD_PACE');
  metrics.policyReports.inc({ route, policy: 'pacing' });
}

/**
 * `wait`: what the quota would make the request wait (ms); `floor`: the class held below its quota floor, if
 * that was why.
 */
function pacedRefusal(
  upstream: string,
  maxWaitMs: number,
  wait: number,
  floor: PriorityClass | undefined,
): BreakwaterError {
  const seconds = Math.max(1, Math.ceil(wait / 1000));
  const beyond =
    wait > maxWaitMs ? 'more than pacing.maxWait' : "longer than what is left of the request's total timeout";
  const why = floor
    ? `the '${floor.name}' class keeps off the last ${Math.round((floor.quotaFloor ?? 0) * 100)}% of its announced quota, and the reset is ${seconds} s away, ${beyond}`
    : `its announced quota would make this request wait ${seconds} s, ${beyond}`;
  return new BreakwaterError('RATE_LIMITED', `Upstream '${upstream}' is paced: ${why}.`, {
    retryAfterSeconds: seconds,
  });
}

/**
 * RATE_LIMITED for a wait past maxWait or the deadline (`floor`: held by its class's quota floor), counted in
 * breakwater_shed_total.
 */
export function refusePaced(
  metrics: Pick<Metrics, 'shed'>,
  upstream: string,
  maxWaitMs: number,
  ctx: RequestContext,
  route: string,
  wait: number,
  floor: boolean,
): never {
  metrics.shed.inc({ route, priority: ctx.priority?.name ?? '', reason: floor ? 'quota_floor' : 'max_wait' });
  throw pacedRefusal(upstream, maxWaitMs, wait, floor ? ctx.priority : undefined);
}

/**
 * A request whose cost exceeds a dimension's whole window (less the reserve) can never be sent: answered at
 * once, not retryable, without Retry-After (SPEC §15).
 */
export function refuseNeverFits(
  upstream: string,
  tooBig: { readonly dimension: string; readonly cost: number; readonly limit: number },
): never {
  throw new BreakwaterError(
    'RATE_LIMITED',
    `This request costs ${tooBig.cost} ${tooBig.dimension}; the limit of upstream '${upstream}' is ${tooBig.limit} per window, so it can never be sent: make it smaller.`,
    { retryable: false },
  );
}
