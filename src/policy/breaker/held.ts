/**
 * Calls a circuit breaker holds (circuit-breaker.ts, `hold`): in the first
 * seconds of an outage a call that meets an open circuit waits for the next
 * probe instead of failing at once. They are released in arrival order as
 * far as the breaker admits them; one timer, only while calls are held, at
 * the next probe time or the first hold expiry.
 */
import type { Signal } from '../../lib/signal.js';

/**
 * A held call with less time than this before its deadline is refused rather than made a probe that can only
 * time out.
 */
export const MIN_PROBE_MS = 100;

interface Waiter<A> {
  /** When it stops waiting: hold, or its deadline. */
  readonly until: number;
  readonly deadline: number;
  /** Its request went away: dropped at the next pump. */
  gone: boolean;
  resolve(admitted: A | undefined): void;
}

export class HeldCalls<A> {
  private readonly held: Waiter<A>[] = [];
  /** Held calls whose request is still there (`held` keeps gone ones until the next pump). */
  waiting = 0;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;

  constructor(
    private readonly now: () => number,
    /** Runs a pump when the timer fires. */
    private readonly onTimer: () => void,
  ) {}

  get size(): number {
    return this.held.length;
  }

  /**
   * Holds a call until `until` at most; resolves with its admission, or
   * undefined when refused; rejects with the signal's reason when its
   * request goes away. `nextProbeAt`: when the breaker may admit next.
   */
  hold(until: number, deadline: number, signal: Signal, nextProbeAt: number): Promise<A | undefined> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(signal.reason);
        return;
      }
      const waiter: Waiter<A> = {
        until,
        deadline,
        gone: false,
        resolve: (admission) => {
          this.waiting--;
          stop();
          resolve(admission);
        },
      };
      const stop = signal.onAbort(() => {
        waiter.gone = true;
        this.waiting--;
        reject(signal.reason);
      });
      this.held.push(waiter);
      this.waiting++;
      // The earliest of the next probe and the hold expiries; pump recomputes it.
      const next = Math.min(this.timerAt, nextProbeAt, waiter.until);
      if (next !== this.timerAt || !this.timer) this.arm(next);
    });
  }

  /**
   * Lets held calls go, in arrival order, as far as `admit` admits them
   * (undefined: not now); refuses those held too long or too near their
   * deadline. `nextProbeAt`: when the breaker may admit next.
   */
  pump(admit: (deadline: number, at: number) => A | undefined, nextProbeAt: number): void {
    if (this.held.length === 0) return;
    const at = this.now();
    let kept = 0;
    let next = nextProbeAt;
    for (const waiter of this.held) {
      if (waiter.gone) continue;
      const admission = admit(waiter.deadline, at);
      if (admission !== undefined) waiter.resolve(admission);
      else if (at >= waiter.until || waiter.deadline - at < MIN_PROBE_MS) waiter.resolve(undefined);
      else {
        this.held[kept++] = waiter;
        next = Math.min(next, waiter.until);
      }
    }
    this.held.length = kept;
    this.arm(next);
  }

  /** Lets every held call go with `admission` (the breaker is being dropped). */
  releaseAll(admission: A): void {
    this.stopTimer();
    for (const waiter of this.held.splice(0)) if (!waiter.gone) waiter.resolve(admission);
  }

  private stopTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
  }

  private arm(at: number): void {
    if (this.held.length === 0 || at === Infinity) {
      this.stopTimer();
      return;
    }
    if (at === this.timerAt && this.timer) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.timerAt = Infinity;
        this.onTimer();
      },
      Math.max(0, at - this.now()),
    );
    this.timer.unref?.();
  }
}
