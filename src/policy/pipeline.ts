/**
 * The policy stack of a route, in one place (STYLE.md: linkerd2-proxy's
 * model). A policy is built once per route from its config and sees each
 * request as `run(ctx, signal, next)`; `next` runs everything below it.
 * Policies never touch sockets or the HTTP client: the innermost `attempt`
 * (attempt.ts, one request through undici) is handed in.
 */
import type { RouteConfig } from '../config/types.js';
import type { AttemptResult, Next, Policy, PolicyDeps, RequestContext } from './context.js';
import type { RetryCounts } from './retry/budget.js';
import { createDeadline, createPerTryTimeout } from './timeouts.js';
import { createRetry } from './retry/retry.js';
import { credentialRefresh } from './credential-refresh.js';

export type { Next, Policy, PolicyDeps };

export interface RoutePipeline {
  run(ctx: RequestContext): Promise<AttemptResult>;
  close(): void;
}

/** The breaker layer: the breaker of the request's destination (its route's upstream, or its own forward target). */
const destinationBreaker: Policy = {
  run(ctx, signal, next) {
    const breaker = ctx.destination?.breaker;
    return breaker ? breaker.run(ctx, signal, next) : next(ctx, signal);
  },
  close() {},
};

/** The pacing layer: the pacer of the request's destination (each failover target has its own), when it is paced. */
const destinationPacing: Policy = {
  run(ctx, signal, next) {
    const pacing = ctx.destination?.pacing;
    return pacing ? pacing.run(ctx, signal, next) : next(ctx, signal);
  },
  close() {},
};

/** Runs `policies` outermost first around `attempt`. */
export function compose(policies: readonly Policy[], attempt: Next): Next {
  return policies.reduceRight<Next>((next, policy) => (ctx, signal) => policy.run(ctx, signal, next), attempt);
}

/** The layers a route shares with others, owned and closed by the runtime. */
export interface SharedPolicies {
  /** The route's rate limit, when it has one. */
  readonly rateLimit?: Policy;
  /** Failover between the upstream's targets, when it has more than one. */
  readonly failover?: Policy;
  /** The retry counts of the route's upstream, which its retry budget shares with the upstream's other routes. */
  readonly retryCounts?: RetryCounts;
  /** The upstream's idempotency-key header (SPEC §18), lower case. */
  readonly idempotencyHeader?: string;
  /** A target of the upstream holds OAuth2 credentials (SPEC §18): the refresh layer is needed. */
  readonly refreshesTokens?: boolean;
}

/**
 * The route's stack, outermost first: the one place the order is written.
 * Each layer's comment says why it sits where it does.
 */
export function createRoutePipeline(
  route: RouteConfig,
  deps: PolicyDeps,
  attempt: Next,
  shared: SharedPolicies = {},
): RoutePipeline {
  const policies: Policy[] = [
    // 1. Deadline: `total` bounds everything below it, queueing and
    //    retries included, so it starts first.
    createDeadline(route.timeouts, route.clientOverrides, deps),
    // 2. Rate limit: waits for a token and a slot, or refuses, before any
    //    upstream work; one token per request, retries included.
    ...(shared.rateLimit ? [shared.rateLimit] : []),
    // 3. Retry: repeats what is below (breaker included: every attempt is
    //    one breaker call), within the deadline and the route's budget.
    createRetry(
      {
        route: route.name,
        retry: route.retry,
        clientOverrides: route.clientOverrides,
        metrics: deps.metrics,
        budget: shared.retryCounts,
        idempotencyHeader: shared.idempotencyHeader,
      },
      deps,
    ),
    // 3a. Failover: picks each attempt's target (SPEC §8.1), so a retry
    //     can move to another; below the retry loop, which still decides
    //     whether there is a retry at all.
    ...(shared.failover ? [shared.failover] : []),
    // 3b. Pacing: each attempt waits for its target's announced quota,
    //     so retries are paced too; outside the breaker, so a paced wait is
    //     not a call.
    destinationPacing,
    // 4. Circuit breaker: each attempt is one call, so it sits inside the
    //    retry loop, and a retry into an open circuit is refused at once.
    //    The destination's breaker: the upstream's (shared by every route
    //    to it) or a forward-proxy target's own (one per host:port).
    destinationBreaker,
    // 4a. An OAuth2 401 (SPEC §18): the request sent once more with a new
    //     token; inside the breaker (one call, the second answer), outside
    //     the per-try timeout (a timer for each send).
    //     Only on an upstream with OAuth2 credentials: no await for the others.
    ...(shared.refreshesTokens ? [credentialRefresh] : []),
    // 5. Per-try timeout: one timer per attempt, cut to what is left of
    //    the deadline, until response headers.
    createPerTryTimeout(route.timeouts, deps),
  ];
  const run = compose(policies, attempt);
  return {
    run: (ctx) => run(ctx, ctx.signal),
    close() {
      // The breakers, pacers and the rate limit are owned and closed by the runtime.
      for (const policy of policies) if (policy !== shared.rateLimit) policy.close();
    },
  };
}
