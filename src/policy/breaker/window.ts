/**
 * The two memories of a closed circuit breaker (circuit-breaker.ts):
 *
 * - RecentCalls: the last `size` calls, failed or not, and when; the
 *   breaker opens when too many of them failed within the window.
 * - CallWindow: calls offered, accepted and failed over the window, in
 *   BUCKETS buckets; the adaptive throttle's shed probability comes from it.
 *
 * And the CIRCUIT_OPEN answers that say what these memories hold.
 */
import { BreakwaterError } from '../../errors/breakwater-error.js';

/** Buckets of the shedding window. */
export const BUCKETS = 10;
/**
 * The most that shedding refuses (Envoy's admission control caps at 80 %, failsafe-go suggests 90 %): some calls
 * always test the upstream.
 */
export const MAX_SHED = 0.9;

export class RecentCalls {
  private readonly failedAt: Uint8Array;
  private readonly at: Float64Array;
  private next = 0;
  /** Failed calls among the last `size`. */
  failures = 0;

  constructor(readonly size: number) {
    this.failedAt = new Uint8Array(size);
    this.at = new Float64Array(size).fill(-Infinity);
  }

  record(didFail: boolean, at: number): void {
    this.failures += (didFail ? 1 : 0) - this.failedAt[this.next]!;
    this.failedAt[this.next] = didFail ? 1 : 0;
    this.at[this.next] = at;
    this.next = (this.next + 1) % this.size;
  }

  /**
   * The newest call counted as a success (within `windowMs` of `at`) failed after all (SPEC §16: a stream cut
   * for its silence). False when there is none to amend.
   */
  amend(at: number, windowMs: number): boolean {
    for (let back = 1; back <= this.size; back++) {
      const slot = (this.next - back + this.size) % this.size;
      if (at - this.at[slot]! > windowMs) return false;
      if (this.failedAt[slot] === 0) {
        this.failedAt[slot] = 1;
        this.failures += 1;
        return true;
      }
    }
    return false;
  }

  /** All of the last calls fall within `windowMs` of `at` (the slot written next holds the oldest). */
  fresh(at: number, windowMs: number): boolean {
    return at - this.at[this.next]! <= windowMs;
  }

  /** When the oldest failure among the last calls happened. */
  firstFailure(): number {
    let first = Infinity;
    for (let i = 0; i < this.size; i++) if (this.failedAt[i]) first = Math.min(first, this.at[i]!);
    return first;
  }

  clear(): void {
    this.at.fill(-Infinity);
    this.failedAt.fill(0);
    this.failures = 0;
  }
}

export interface ShedSettings {
  readonly enabled: boolean;
  /** The adaptive throttle's multiplier: accepted calls count k times. */
  readonly k: number;
  /** No shedding below this many calls offered in the window. */
  readonly minimumRequests: number;
}

export class CallWindow {
  private readonly bucketMs: number;
  private readonly offered = new Float64Array(BUCKETS);
  private readonly acceptedIn = new Float64Array(BUCKETS);
  private readonly failedIn = new Float64Array(BUCKETS);
  private bucket: number;
  offeredSum = 0;
  acceptedSum = 0;
  failedSum = 0;
  /** The share of calls to refuse now (0 when not shedding). */
  shedProbability = 0;

  constructor(
    windowMs: number,
    private readonly shed: ShedSettings,
    at: number,
  ) {
    this.bucketMs = Math.max(1, windowMs / BUCKETS);
    this.bucket = Math.floor(at / this.bucketMs);
  }

  /**
   * Moves the window to `at`, forgetting the buckets it leaves; updates the shed probability. Returns false when
   * nothing moved.
   */
  advance(at: number): boolean {
    const current = Math.floor(at / this.bucketMs);
    if (current === this.bucket) return false;
    const steps = Math.min(BUCKETS, current - this.bucket);
    for (let i = 1; i <= steps; i++) {
      const slot = (this.bucket + i) % BUCKETS;
      this.offeredSum -= this.offered[slot]!;
      this.acceptedSum -= this.acceptedIn[slot]!;
      this.failedSum -= this.failedIn[slot]!;
      this.offered[slot] = 0;
      this.acceptedIn[slot] = 0;
      this.failedIn[slot] = 0;
    }
    this.bucket = current;
    if (!this.shed.enabled || this.offeredSum < this.shed.minimumRequests) this.shedProbability = 0;
    else
      this.shedProbability = Math.min(
        MAX_SHED,
        Math.max(0, (this.offeredSum - this.shed.k * this.acceptedSum) / (this.offeredSum + 1)),
      );
    return true;
  }

  /** Counts a call in the current bucket (call advance first). */
  record(didFail: boolean): void {
    const slot = this.bucket % BUCKETS;
    this.offered[slot]! += 1;
    this.offeredSum += 1;
    if (didFail) {
      this.failedIn[slot]! += 1;
      this.failedSum += 1;
    } else {
      this.acceptedIn[slot]! += 1;
      this.acceptedSum += 1;
    }
  }

  /** One accepted call in the window, the newest bucket's first, counted as failed instead (call advance first). */
  amend(): void {
    for (let back = 0; back < BUCKETS; back++) {
      const slot = (this.bucket - back + BUCKETS) % BUCKETS;
      if (this.acceptedIn[slot]! > 0) {
        this.acceptedIn[slot]! -= 1;
        this.acceptedSum -= 1;
        this.failedIn[slot]! += 1;
        this.failedSum += 1;
        return;
      }
    }
  }

  /** Failed share of the calls in the window, 0..1. */
  failureRate(): number {
    return this.failedSum + this.acceptedSum === 0 ? 0 : this.failedSum / (this.failedSum + this.acceptedSum);
  }

  clear(): void {
    this.offered.fill(0);
    this.acceptedIn.fill(0);
    this.failedIn.fill(0);
    this.offeredSum = this.acceptedSum = this.failedSum = this.shedProbability = 0;
  }
}

/** CIRCUIT_OPEN for a call shed by a closed circuit. */
export function shedRefusal(upstream: string, calls: CallWindow): BreakwaterError {
  const percent = Math.round(calls.shedProbability * 100);
  return new BreakwaterError(
    'CIRCUIT_OPEN',
    `Upstream '${upstream}' failed ${calls.failedSum} of ${calls.failedSum + calls.acceptedSum} recent calls; Breakwater sheds ${percent}% of calls to it until more succeed.`,
    { retryAfterSeconds: 1 },
  );
}

/** CIRCUIT_OPEN for a call that met an open or half-open circuit. */
export function openRefusal(
  upstream: string,
  circuit: {
    readonly halfOpen: boolean;
    readonly openUntil: number;
    readonly episodeStart: number;
    readonly openedWith: number;
    readonly recentSize: number;
  },
  at: number,
): BreakwaterError {
  const seconds = Math.max(1, Math.ceil(Math.max(0, circuit.openUntil - at) / 1000));
  const down = Math.max(1, Math.round((at - circuit.episodeStart) / 1000));
  const detail = circuit.halfOpen
    ? `Upstream '${upstream}' is being probed after failing ${circuit.openedWith} of its last ${circuit.recentSize} calls; calls are refused until the probes succeed.`
    : `Upstream '${upstream}' failed ${circuit.openedWith} of its last ${circuit.recentSize} calls and has been down for ${down} s; calls are refused for ${seconds} s, then probed.`;
  return new BreakwaterError('CIRCUIT_OPEN', detail, { retryAfterSeconds: seconds });
}
