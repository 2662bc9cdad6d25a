/**
 * The retry layer (SPEC §3 `retry`, §4): repeats the attempt below it while
 * the outcome is one of `retryOn`, the method may be repeated, the body can
 * be replayed, retries are left, the route's budget allows it and the
 * request's deadline leaves room for the wait. It never retries once a
 * byte of a response went to the client: it only ever sees attempts whose
 * response has not been sent. When it stops, the last real upstream
 * response (or failure) goes back as it is.
 */
import { CATALOG, type ErrorCode } from '../../errors/catalog.js';
import type { RetryConfig } from '../../config/types.js';
import type { Metrics } from '../../observe/metrics.js';
import { discardResponse } from '../../upstream/discard.js';
import type { Classification } from '../../upstream/classify.js';
import { compileConditions } from '../conditions.js';
import type { AttemptResult, Policy, PolicyDeps, RequestContext } from '../context.js';
import { retryDelayOf } from '../../lib/retry-after.js';
import { createRetryBudget, type RetryCounts } from './budget.js';

/**
 * Exponential backoff with full jitter (SPEC §3 `retry.backoff`): retry n
 * (0-based) waits a uniformly random time in [0, min(max, base * 2^n)).
 * The random source is injected so unit tests can pin it.
 */
export function fullJitterDelay(retry: number, baseMs: number, maxMs: number, random: () => number): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** retry);
  return random() * ceiling;
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

/**
 * Failures a second try cannot fix (the same certificate, the same wrong port): the catalogue says they are not
 * retryable.
 */
const deterministic = (code: string | undefined): boolean =>
  code !== undefined && code in CATALOG && !CATALOG[code as ErrorCode].retryable;

export interface RetryOptions {
  readonly route: string;
  readonly retry: RetryConfig;
  readonly clientOverrides: boolean;
  readonly metrics: Metrics;
  /** The retry counts of the route's upstream, shared by its routes (budget.ts); the route's own when absent. */
  readonly budget?: RetryCounts;
  /** The header that makes a POST or PATCH retryable (its upstream's `idempotencyKeys.header`, SPEC §18), lower case. */
  readonly idempotencyHeader?: string;
}

/**
 * May this request be sent again? Idempotent methods always; POST and PATCH
 * when the client sent an Idempotency-Key; and any method when the attempt
 * never reached the upstream (a refused or timed-out connect sent nothing).
 */
function methodAllows(
  ctx: RequestContext,
  retry: RetryConfig,
  classification: Classification,
  keyHeader: string,
): boolean {
  if (classification.outcome === 'connect_failure') return true;
  if (retry.methods !== 'idempotent') return retry.methods.includes(ctx.method);
  if (IDEMPOTENT.has(ctx.method)) return true;
  return (ctx.method === 'POST' || ctx.method === 'PATCH') && ctx.clientHeaders[keyHeader] !== undefined;
}

/** `X-Breakwater-Max-Retries`, honoured only downward. */
function clientMaxRetries(ctx: RequestContext): number | undefined {
  const value = ctx.clientHeaders['x-breakwater-max-retries'];
  const text = Array.isArray(value) ? value[0] : value;
  return text !== undefined && /^\d{1,3}$/.test(text.trim()) ? Number(text) : undefined;
}

export function createRetry(options: RetryOptions, deps: PolicyDeps): Policy {
  const { retry, metrics, route } = options;
  const onRetryOn = compileConditions(retry.retryOn);
  // A provider rule's decision outranks retryOn (SPEC §14): true retries what retryOn would not, false never retries.
  const shouldRetry = (classification: Classification) => classification.rule?.retryable ?? onRetryOn(classification);
  const budget = createRetryBudget(retry.budget.ratio, retry.budget.minPerSecond, deps.now, options.budget);
  const keyHeader = options.idempotencyHeader ?? 'idempotency-key';

  return {
    async run(ctx, signal, next) {
      budget.deposit();
      // A WebSocket handshake is never retried (SPEC §4): its answer is already the client's.
      let maxRetries = ctx.handshake ? 0 : retry.maxRetries;
      if (options.clientOverrides) {
        const requested = clientMaxRetries(ctx);
        if (requested !== undefined) maxRetries = Math.min(maxRetries, requested);
      }
      for (let retries = 0; ; retries++) {
        const result: AttemptResult = await next(ctx, signal);
        const { classification, response } = result;
        // `final`: this target is down; another may not be.
        if ((result.final && !result.elsewhere) || !shouldRetry(classification) || deterministic(classification.code))
          return result;
        if (retries >= maxRetries || !methodAllows(ctx, retry, classification, keyHeader)) return result;
        if (!ctx.body.replayable) {
          ctx.flags.add('BODY_NOT_REPLAYABLE');
          return result;
        }

        // To another target: at once (SPEC §8.1); to the same one: backoff, or what Retry-After asks.
        let delay = result.elsewhere ? 0 : fullJitterDelay(retries, retry.backoff.base, retry.backoff.max, deps.random);
        let retryAfterDelay: number | undefined;
        if (
          !result.elsewhere &&
          response &&
          retry.retryAfter.honor &&
          (classification.status === 429 || classification.status === 503 || classification.rule?.delayMs !== undefined)
        ) {
          // A delay a rule knows (a reset, a secondary limit's 60 s) is handled like Retry-After.
          const retryAfter = classification.rule?.delayMs ?? retryDelayOf(response.headers, deps.wall());
          if (retryAfter !== undefined) {
            // A longer wait than configured: the app decides, with the header.
            if (retryAfter > retry.retryAfter.max) return result;
            delay = retryAfter;
            retryAfterDelay = retryAfter;
          }
        }
        // No wait may end past the deadline, and no attempt may start there.
        if (deps.now() + delay >= ctx.deadline) return result;
        if (!budget.tryWithdraw()) {
          ctx.flags.add('RETRY_BUDGET_EXHAUSTED');
          metrics.retryBudgetExhausted.inc({ route });
          metrics.errors.inc({ route, code: 'RETRY_BUDGET_EXHAUSTED' });
          return result;
        }

        if (response) discardResponse(response);
        ctx.flags.add('RETRIED');
        metrics.retries.inc({ route, reason: classification.outcome });
        if (delay > 0) {
          ctx.trace?.wait(delay === retryAfterDelay ? 'retry_after' : 'backoff', delay);
          await deps.sleep(delay, signal);
        }
      }
    },
    close() {},
  };
}
