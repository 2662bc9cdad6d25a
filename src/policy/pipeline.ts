/**
 * The policy stack of a route, in one place (STYLE.md: linkerd2-proxy's
 * model). A policy is built once per route from its config and sees each
 * request as `run(ctx, signal, next)`; `next` runs everything below it.
 * Policies never touch sockets or http-proxy: the innermost `attempt` is
 * handed in.
 */
import type { RouteConfig } from '../config/types.js';
import type { AttemptResult, RequestContext } from './context.js';
import { createDeadline } from './deadline.js';
import { createPerTryTimeout } from './per-try-timeout.js';
import type { Signal } from './signal.js';

export type Next = (ctx: RequestContext, signal: Signal) => Promise<AttemptResult>;

export interface Policy {
  run(ctx: RequestContext, signal: Signal, next: Next): Promise<AttemptResult>;
  close(): void;
}

export interface PolicyDeps {
  /** Milliseconds on a monotonic clock; injectable for tests. */
  readonly now: () => number;
}

export interface RoutePipeline {
  run(ctx: RequestContext): Promise<AttemptResult>;
  close(): void;
}

/** Runs `policies` outermost first around `attempt`. */
export function compose(policies: readonly Policy[], attempt: Next): Next {
  return policies.reduceRight<Next>((next, policy) => (ctx, signal) => policy.run(ctx, signal, next), attempt);
}

/**
 * The order of the stack, outermost first. Each layer's comment says why it
 * sits where it does.
 */
export function createRoutePipeline(route: RouteConfig, deps: PolicyDeps, attempt: Next): RoutePipeline {
  const policies: Policy[] = [
    // 1. Deadline: `total` bounds everything below it, queueing and
    //    retries included, so it starts first.
    createDeadline(route.timeouts, deps),
    // 2. Rate limit (issue: breakers and limits): waits for a token or
    //    refuses before any upstream work; not built yet.
    // 3. Retry (issue: retries): repeats what is below; not built yet.
    // 4. Circuit breaker (issue: breakers and limits): each attempt is one
    //    call, so it sits inside the retry loop; not built yet.
    // 5. Per-try timeout: one timer per attempt, cut to what is left of
    //    the deadline, until response headers.
    createPerTryTimeout(route.timeouts, deps),
  ];
  const run = compose(policies, attempt);
  return {
    run: (ctx) => run(ctx, ctx.signal),
    close() {
      for (const policy of policies) policy.close();
    },
  };
}
