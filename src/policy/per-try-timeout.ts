import type { TimeoutsConfig } from '../config/types.js';
import { formatDuration } from '../config/units.js';
import { DeadlineExceeded } from '../errors/deadline-exceeded.js';
import { classifyTimeout } from '../upstream/classify.js';
import type { Policy, PolicyDeps } from './context.js';
import { Cancellation } from '../lib/signal.js';

/**
 * One timer per attempt, until the response headers (SPEC §3 `perTry`),
 * cut to what is left of the request's deadline. A slow body is not cut:
 * the timer stops when the attempt resolves. It aborts the attempt through
 * the signal; the attempt turns that into a `timeout` outcome.
 */
export function createPerTryTimeout(timeouts: TimeoutsConfig, deps: PolicyDeps): Policy {
  const perTry = timeouts.perTry;
  return {
    async run(ctx, signal, next) {
      const left = ctx.deadline - deps.now();
      if (left <= 0) {
        return { classification: classifyTimeout(`No response within the total deadline of ${formatDuration(timeouts.total)}.`) };
      }
      const cutByTotal = left < perTry;
      const budget = cutByTotal ? left : perTry;
      const controller = Cancellation.linked(signal);
      const timer = setTimeout(
        () => {
          const what = cutByTotal ? `the total deadline of ${formatDuration(timeouts.total)}` : `perTry ${formatDuration(perTry)}`;
          controller.abort(new DeadlineExceeded(`sent no response headers within ${what}.`));
        },
        Math.max(1, Math.ceil(budget)),
      );
      try {
        return await next(ctx, controller);
      } finally {
        clearTimeout(timer);
        controller.release();
      }
    },
    close() {},
  };
}
