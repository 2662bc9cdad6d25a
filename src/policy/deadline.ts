import type { TimeoutsConfig } from '../config/types.js';
import { parseDuration } from '../config/units.js';
import type { Policy, PolicyDeps, RequestContext } from './context.js';

/** `X-Breakwater-Timeout` (a duration such as `2s`), or undefined when absent or unreadable. */
function clientTimeout(ctx: RequestContext): number | undefined {
  const value = ctx.clientHeaders['x-breakwater-timeout'];
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined) return undefined;
  const parsed = parseDuration(text);
  return parsed.ok && parsed.value > 0 ? parsed.value : undefined;
}

/**
 * Sets the request's absolute deadline from `timeouts.total` (SPEC §4):
 * no attempt starts, and no wait lasts, past it. With `clientOverrides`, an
 * `X-Breakwater-Timeout` may shorten it, never lengthen it. The layers
 * below read `ctx.deadline`; this one only sets it.
 */
export function createDeadline(timeouts: TimeoutsConfig, clientOverrides: boolean, deps: PolicyDeps): Policy {
  return {
    run(ctx, signal, next) {
      let total = timeouts.total;
      if (clientOverrides) {
        const requested = clientTimeout(ctx);
        if (requested !== undefined) total = Math.min(total, requested);
      }
      ctx.deadline = Math.min(ctx.deadline, deps.now() + total);
      return next(ctx, signal);
    },
    close() {},
  };
}
