import type { TimeoutsConfig } from '../config/types.js';
import type { Policy, PolicyDeps } from './pipeline.js';

/**
 * Sets the request's absolute deadline from `timeouts.total` (SPEC §4):
 * no attempt starts, and no wait lasts, past it. The layers below read
 * `ctx.deadline`; this one only sets it.
 */
export function createDeadline(timeouts: TimeoutsConfig, deps: PolicyDeps): Policy {
  return {
    run(ctx, signal, next) {
      ctx.deadline = Math.min(ctx.deadline, deps.now() + timeouts.total);
      return next(ctx, signal);
    },
    close() {},
  };
}
