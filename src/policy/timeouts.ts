/**
 * The request's time limits (SPEC §3 `timeouts`, §4): the deadline the
 * whole request runs within (`total`, set first), and the timer of each
 * attempt (`perTry`, innermost), cut to what is left of that deadline.
 */
import type { TimeoutsConfig } from '../config/types.js';
import { formatDuration, parseDuration } from '../config/units.js';
import { DeadlineExceeded } from '../errors/deadline-exceeded.js';
import { Cancellation } from '../lib/signal.js';
import { classifyTimeout } from '../upstream/classify.js';
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

/**
 * One timer per attempt, until the response headers (SPEC §3 `perTry`),
 * cut to what is left of the request's deadline. A slow body is not cut:
 * the timer stops when the attempt resolves (with `firstByte`, when its
 * headers arrive: the attempt then waits for the first byte, §16). It aborts the attempt through
 * the signal; the attempt turns that into a `timeout` outcome.
 */
export function createPerTryTimeout(timeouts: TimeoutsConfig, deps: PolicyDeps): Policy {
  const perTry = timeouts.perTry;
  return {
    async run(ctx, signal, next) {
      const left = ctx.deadline - deps.now();
      if (left <= 0) {
        return {
          classification: classifyTimeout(
            `No response within the total deadline of ${formatDuration(timeouts.total)}.`,
          ),
        };
      }
      const cutByTotal = left < perTry;
      const budget = cutByTotal ? left : perTry;
      const controller = Cancellation.linked(signal);
      const timer = setTimeout(
        () => {
          const what = cutByTotal
            ? `the total deadline of ${formatDuration(timeouts.total)}`
            : `perTry ${formatDuration(perTry)}`;
          controller.abort(new DeadlineExceeded(`sent no response headers within ${what}.`));
        },
        Math.max(1, Math.ceil(budget)),
      );
      // With firstByte (SPEC §16) the attempt stops this timer at the response headers.
      if (timeouts.firstByte !== null) ctx.perTryTimer = timer;
      try {
        return await next(ctx, controller);
      } finally {
        clearTimeout(timer);
        controller.release();
        ctx.perTryTimer = undefined;
      }
    },
    close() {},
  };
}
