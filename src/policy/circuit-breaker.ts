/**
 * One circuit breaker per upstream (SPEC §3 `circuitBreaker`), on opossum 9,
 * behind a small interface so that nothing else knows opossum. Every
 * attempt, retries included, is one call; an attempt fails when its outcome
 * is one of `failOn`. Open: calls are refused at once with CIRCUIT_OPEN and
 * `Retry-After` = the time left open. After `openFor`, one probe decides:
 * success closes, failure reopens.
 *
 * opossum traps, each pinned by test/integration/circuit-breaker.test.ts:
 * - its own call timeout (10 s by default) is turned off: the per-try timer
 *   owns timing;
 * - it opens when the failure rate is strictly above the threshold, and
 *   only once `volumeThreshold` calls are in the window;
 * - calls it rejects while open count as `fires` in its window, so after a
 *   probe closes it the old window would dilute (or inflate) the error rate.
 *   We rotate the window's buckets ourselves and clear it on close;
 * - `errorFilter` returning true counts as a success: we use it only for
 *   errors on the client's side (the client left, its body was too large),
 *   which say nothing about the upstream. opossum cannot leave a call out
 *   of its window, so those count as successes. Upstream outcomes never go
 *   through it: failures reject, everything else resolves.
 */
import { EventEmitter } from 'node:events';
import CircuitBreaker from 'opossum';
import type { CircuitBreakerConfig } from '../config/types.js';
import { formatDuration } from '../config/units.js';
import { BreakwaterError } from '../errors/breakwater-error.js';
import type { Metrics } from '../observe/metrics.js';
import type { AttemptResult, RequestContext } from './context.js';
import { compileConditions } from './conditions.js';
import type { Next, Policy } from './pipeline.js';
import type { Signal } from './signal.js';

export type CircuitState = 'closed' | 'open' | 'half_open';

export interface UpstreamBreaker {
  readonly upstream: string;
  state(): CircuitState;
  /** Failure rate over the current window, 0..1 (for /status). */
  failureRate(): number;
  /** The policy layer that routes a route's attempts through this breaker. */
  readonly policy: Policy;
  close(): void;
}

/**
 * An attempt whose outcome is in failOn: rejected so that opossum counts it,
 * then unwrapped. Not an Error: capturing a stack cost ~4 us per failed
 * attempt, paid exactly when an upstream is failing.
 */
class AttemptFailed {
  constructor(readonly result: AttemptResult) {}
}

const BUCKETS = 10;

export function createUpstreamBreaker(
  upstream: string,
  config: CircuitBreakerConfig,
  deps: { readonly metrics: Metrics; readonly now: () => number },
): UpstreamBreaker {
  const isFailure = compileConditions(config.failOn);
  const rotate = new EventEmitter();
  const action = async (ctx: RequestContext, signal: Signal, next: Next): Promise<AttemptResult> => {
    const result = await next(ctx, signal);
    if (isFailure(result.classification)) throw new AttemptFailed(result);
    return result;
  };
  const breaker = new CircuitBreaker(action, {
    timeout: false,
    errorThresholdPercentage: config.failureRate,
    volumeThreshold: config.minimumRequests,
    rollingCountTimeout: config.window,
    rollingCountBuckets: BUCKETS,
    resetTimeout: config.openFor,
    rotateBucketController: rotate,
    errorFilter: (error: unknown) => !(error instanceof AttemptFailed),
    rollingPercentilesEnabled: false,
    enableSnapshots: false,
  } as CircuitBreaker.Options);
  const rotation = setInterval(() => rotate.emit('rotate'), Math.max(1, Math.floor(config.window / BUCKETS)));
  rotation.unref();
  const clearWindow = () => {
    for (let i = 0; i < BUCKETS; i++) rotate.emit('rotate');
  };

  let state: CircuitState = 'closed';
  let openedAt = 0;
  let openedWith = { failures: 0, fires: 0 };
  const { metrics } = deps;
  breaker.on('open', () => {
    const stats = breaker.stats;
    openedWith = { failures: stats.failures, fires: stats.fires };
    openedAt = deps.now();
    state = 'open';
    metrics.circuitTransitions.inc({ upstream, to: 'open' });
  });
  breaker.on('halfOpen', () => {
    state = 'half_open';
    metrics.circuitTransitions.inc({ upstream, to: 'half_open' });
  });
  breaker.on('close', () => {
    state = 'closed';
    clearWindow();
    metrics.circuitTransitions.inc({ upstream, to: 'closed' });
  });
  breaker.on('reject', () => metrics.circuitRejections.inc({ upstream }));

  const openError = (): BreakwaterError => {
    const left = Math.max(0, openedAt + config.openFor - deps.now());
    const seconds = Math.max(1, Math.ceil(left / 1000));
    const detail =
      state === 'half_open'
        ? `Upstream '${upstream}' is being probed after failing; calls are refused until the probe succeeds.`
        : `Upstream '${upstream}' failed ${openedWith.failures} of ${openedWith.fires} recent calls; calls are refused for ${seconds} s (circuitBreaker.openFor ${formatDuration(config.openFor)}).`;
    return new BreakwaterError('CIRCUIT_OPEN', detail, { retryAfterSeconds: seconds });
  };

  const policy: Policy = {
    async run(ctx, signal, next) {
      try {
        return (await breaker.fire(ctx, signal, next)) as AttemptResult;
      } catch (error) {
        if (error instanceof AttemptFailed) return error.result;
        if ((error as { code?: string }).code === 'EOPENBREAKER') {
          ctx.flags.add('CIRCUIT_OPEN');
          throw openError();
        }
        throw error;
      }
    },
    close() {},
  };

  return {
    upstream,
    state: () => state,
    failureRate: () => {
      const stats = breaker.stats;
      const counted = stats.successes + stats.failures;
      return counted === 0 ? 0 : stats.failures / counted;
    },
    policy,
    close() {
      clearInterval(rotation);
      breaker.shutdown();
    },
  };
}
