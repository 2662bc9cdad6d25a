/**
 * Failover targets (SPEC §8.1): an upstream with `failover` has several
 * targets of the same API, each with its own pool, breaker and pacer. A
 * target is available when its breaker is not open and it is not cooling
 * down (a 429/503 with Retry-After, for that long up to `cooldownMax`; a
 * paced target whose announced quota ran out, until its reset).
 *
 * The first attempt goes to the first available target in order; a retry
 * (the retry layer still decides whether there is one: retryOn, methods,
 * Idempotency-Key, budget, deadline) to the next available one after the
 * target that just failed, wrapping around. A result tells the retry layer
 * whether the next attempt would go elsewhere (`elsewhere`): then it does
 * not wait for backoff or Retry-After. When no target is available, the
 * attempt goes to the one that will be available first, as if it were the
 * only one: into its open breaker (CIRCUIT_OPEN with its Retry-After) only
 * when every breaker is open.
 *
 * `TargetSet` is per upstream (shared by its routes, like the breakers);
 * `createFailover` is the per-route layer, between retry and pacing.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { PacingConfig } from '../config/types.js';
import { BreakwaterError } from '../errors/breakwater-error.js';
import { readDimensions } from '../errors/quota-dimensions.js';
import { retryDelayOf } from '../lib/retry-after.js';
import type { Metrics } from '../observe/metrics.js';
import type { UpstreamBreaker } from './breaker/types.js';
import type { AttemptResult, Destination, Policy, PolicyDeps } from './context.js';

export interface TargetState {
  readonly name: string;
  readonly breaker: UpstreamBreaker;
  /** The target's pacing settings, when it is paced: its quota running out cools it down. */
  readonly pacing: PacingConfig | null;
}

export interface TargetStatus {
  readonly name: string;
  /** ms until the target is back in rotation (0: available). */
  readonly coolingForMs: number;
}

export class TargetSet {
  /** Monotonic ms until which each target cools down. */
  private readonly coolUntil: number[];

  constructor(
    readonly targets: readonly TargetState[],
    private readonly cooldownMax: number,
    private readonly deps: Pick<PolicyDeps, 'now' | 'wall'>,
  ) {
    this.coolUntil = targets.map(() => 0);
  }

  /** The target the first attempt goes to. */
  first(at: number): number {
    for (let i = 0; i < this.targets.length; i++) if (this.available(i, at)) return i;
    return this.soonest(at);
  }

  /**
   * The target after `failed`, wrapping around: the next available one, else `failed` itself when it is, else
   * the soonest.
   */
  after(failed: number, at: number): number {
    return this.nextAvailable(failed, at) ?? (this.available(failed, at) ? failed : this.soonest(at));
  }

  /** The next available target after `from` other than it, wrapping around; undefined when there is none. */
  nextAvailable(from: number, at: number): number | undefined {
    const n = this.targets.length;
    for (let step = 1; step < n; step++) {
      const i = (from + step) % n;
      if (this.available(i, at)) return i;
    }
    return undefined;
  }

  /** Reads what a target's answer says about its availability: Retry-After on 429/503, a quota that ran out. */
  observe(index: number, result: AttemptResult, at: number): void {
    const response = result.response;
    if (!response) return;
    const status = result.classification.status;
    let coolMs = 0;
    const rule = result.classification.rule;
    if (status === 429 || status === 503)
      coolMs = rule?.delayMs ?? retryDelayOf(response.headers, this.deps.wall()) ?? 0;
    // An account out of quota or credit (SPEC §14): another target (another account) takes the next requests.
    if (rule?.code === 'UPSTREAM_QUOTA_EXHAUSTED') coolMs = this.cooldownMax;
    const pacing = this.targets[index]!.pacing;
    if (pacing) coolMs = Math.max(coolMs, this.exhaustedFor(response.headers, pacing));
    if (coolMs > 0) this.coolUntil[index] = Math.max(this.coolUntil[index]!, at + Math.min(coolMs, this.cooldownMax));
  }

  status(at: number): TargetStatus[] {
    return this.targets.map((target, i) => ({
      name: target.name,
      coolingForMs: Math.max(0, Math.ceil(this.coolUntil[i]! - at)),
    }));
  }

  private available(i: number, at: number): boolean {
    const breaker = this.targets[i]!.breaker;
    return this.coolUntil[i]! <= at && (breaker.reportOnly || breaker.state() !== 'open');
  }

  /**
   * None is available: the one available first. A target whose breaker is
   * not open goes before any whose breaker is (failover never answers
   * worse than one target would); among open ones, the soonest probe.
   */
  private soonest(at: number): number {
    let best = 0;
    let bestKey = Infinity;
    this.targets.forEach((target, i) => {
      const status = target.breaker.status();
      const key = status.state === 'open' ? 1e15 + status.openForMs : Math.max(0, this.coolUntil[i]! - at);
      if (key < bestKey) {
        bestKey = key;
        best = i;
      }
    });
    return best;
  }

  /** A paced target whose announced quota is spent, in any dimension, is out of rotation until that reset. */
  private exhaustedFor(headers: IncomingHttpHeaders, pacing: PacingConfig): number {
    const dimensions = readDimensions(headers, this.deps.wall(), {
      dialect: pacing.headers,
      resetFormat: pacing.resetFormat,
      quotaHeaders: pacing.quotaHeaders,
    });
    let ms = 0;
    for (const quota of dimensions.values())
      if (quota.remaining !== undefined && quota.remaining <= 0 && quota.resetSeconds !== undefined)
        ms = Math.max(ms, quota.resetSeconds * 1000);
    return ms;
  }
}

/**
 * A target that refused before sending: its breaker (CIRCUIT_OPEN) or its
 * pacer (RATE_LIMITED: its quota's wait is past maxWait; the route's own
 * rate limit sits above this layer). Another target may take the attempt.
 */
function refusedBeforeSending(error: unknown): boolean {
  return error instanceof BreakwaterError && (error.code === 'CIRCUIT_OPEN' || error.code === 'RATE_LIMITED');
}

/** The layer of one route: picks each attempt's destination (index-aligned with the set's targets). */
export function createFailover(
  route: string,
  upstream: string,
  set: TargetSet,
  destinations: readonly Destination[],
  deps: PolicyDeps & { readonly metrics: Metrics },
): Policy {
  const indexOf = new Map(destinations.map((destination, i) => [destination, i]));
  return {
    async run(ctx, signal, next) {
      const at = deps.now();
      const previous = ctx.attempts > 0 && ctx.destination ? indexOf.get(ctx.destination) : undefined;
      let index = previous === undefined ? set.first(at) : set.after(previous, at);
      for (let tried = 1; ; tried++) {
        const destination = destinations[index]!;
        ctx.destination = destination;
        // Counted once sent: an attempt its breaker refused never reached the target.
        const sent = () => {
          if (index > 0) deps.metrics.failovers.inc({ route, upstream, target: destination.target.name });
        };
        let result: AttemptResult;
        try {
          result = await next(ctx, signal);
        } catch (error) {
          // A token that could not be had (SPEC §18) sent nothing either.
          if (
            !refusedBeforeSending(error) &&
            !(error instanceof BreakwaterError && error.code === 'CREDENTIALS_UNAVAILABLE')
          )
            sent();
          // Refused by this target's breaker (shedding, or opened meanwhile) or its pacer: the next available
          // target, at once.
          const other =
            refusedBeforeSending(error) && tried < destinations.length
              ? set.nextAvailable(index, deps.now())
              : undefined;
          if (other === undefined) throw error;
          index = other;
          continue;
        }
        sent();
        const after = deps.now();
        set.observe(index, result, after);
        // Where a retry would go: elsewhere, it neither waits nor is stopped by retryAfter.max.
        return set.nextAvailable(index, after) !== undefined ? { ...result, elsewhere: true } : result;
      }
    },
    close() {},
  };
}
