/**
 * An in-process limiter: a token bucket (`burst` tokens, refilled
 * continuously at `rate` per second), a cap on requests in flight, and a
 * FIFO queue of bounded size whose waiters give up after a deadline.
 *
 * Why not bottleneck here: measured on this machine, bottleneck's local
 * scheduler takes 2 to 5 ms per job and tops out near 450 jobs/s per
 * limiter, whatever its settings (it hops through several timers per job).
 * A limiter in the request path has to cost microseconds. Shared limits
 * are shared-limiter.ts (one Lua script per decision).
 */

import { WaitQueue, type Place, type PromotionNote } from '../../lib/wait-queue.js';

export interface LocalLimiterOptions {
  /** Tokens per second, or null for no token bucket. */
  readonly rate: number | null;
  readonly burst: number;
  readonly maxConcurrent: number | null;
  /** Waiters allowed; 0: a request that cannot start at once is refused. */
  readonly queueSize: number;
  readonly now: () => number;
}

/** `displaced`: a higher class took its place in a full queue (SPEC §13). */
export type Refusal = 'queue-full' | 'timeout' | 'displaced';

export class LimiterRefused extends Error {
  constructor(readonly reason: Refusal) {
    super(reason);
  }
}

export class LocalLimiter {
  private tokens: number;
  private refilledAt: number;
  private inFlight = 0;
  private readonly waiters = new WaitQueue<() => void>();
  private drainTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: LocalLimiterOptions) {
    this.tokens = options.burst;
    this.refilledAt = options.now();
  }

  private refill(): void {
    if (this.options.rate === null) return;
    const now = this.options.now();
    this.tokens = Math.min(this.options.burst, this.tokens + ((now - this.refilledAt) * this.options.rate) / 1000);
    this.refilledAt = now;
  }

  private canStart(): boolean {
    if (this.options.maxConcurrent !== null && this.inFlight >= this.options.maxConcurrent) return false;
    if (this.options.rate === null) return true;
    this.refill();
    return this.tokens >= 1;
  }

  private start(): () => void {
    if (this.options.rate !== null) this.tokens -= 1;
    this.inFlight += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inFlight -= 1;
      this.drain();
    };
  }

  /** Starts the waiters that can start, oldest first; arms a timer for the next token. */
  private drain(): void {
    while (this.waiters.length > 0 && this.canStart()) this.waiters.resolveHead(this.start());
    if (this.waiters.length > 0 && this.drainTimer === undefined && this.options.rate !== null && this.tokens < 1) {
      const wait = Math.max(1, Math.ceil(((1 - this.tokens) * 1000) / this.options.rate));
      this.drainTimer = setTimeout(() => {
        this.drainTimer = undefined;
        this.drain();
      }, wait);
    }
  }

  /**
   * Waits for a token and a slot, at most `waitMs`, behind the waiters of
   * its class (`place`) and higher; resolves with the
   * function that frees the slot. Rejects with LimiterRefused, or with the
   * abort's reason when `onAbort` fires first.
   */
  acquire(
    waitMs: number,
    onAbort: (listener: () => void) => () => void,
    place?: Place,
    note?: PromotionNote,
  ): Promise<() => void> {
    if (this.waiters.length === 0 && this.canStart()) return Promise.resolve(this.start());
    // A full queue refuses the newcomer, unless a lower class waits: then the newest of the lowest class makes room.
    if (
      this.waiters.length >= this.options.queueSize &&
      !this.waiters.displace(place?.rank ?? 0, () => new LimiterRefused('displaced'))
    )
      return Promise.reject(new LimiterRefused('queue-full'));
    const waiting = this.waiters.wait(waitMs, onAbort, () => new LimiterRefused('timeout'), place, note);
    this.drain();
    return waiting;
  }

  /** A token and a slot now, with nobody waiting ahead, or undefined: report mode's question (SPEC §19.2). */
  tryAcquire(): (() => void) | undefined {
    return this.waiters.length === 0 && this.canStart() ? this.start() : undefined;
  }

  /** Whole tokens left now. */
  tokensLeft(): number {
    this.refill();
    return Math.floor(this.tokens);
  }

  /** Seconds until the next token is back (0 when one is there). */
  secondsToNextToken(): number {
    if (this.options.rate === null) return 0;
    this.refill();
    return this.tokens >= 1 ? 0 : (1 - this.tokens) / this.options.rate;
  }

  queued(): number {
    return this.waiters.length;
  }

  /** Waiters per priority rank (SPEC §13), added into `into`. */
  queuedByRank(into: number[]): void {
    this.waiters.countRanks(into);
  }

  idle(): boolean {
    return this.inFlight === 0 && this.waiters.length === 0;
  }

  /**
   * Idle with a full bucket: the same as a fresh limiter, so dropping it
   * forgets nothing. A limiter that spent tokens is not spare until they
   * are back (burst / rate seconds at most).
   */
  spare(): boolean {
    if (!this.idle()) return false;
    if (this.options.rate === null) return true;
    this.refill();
    return this.tokens >= this.options.burst;
  }

  close(): void {
    clearTimeout(this.drainTimer);
    this.waiters.rejectAll(new LimiterRefused('timeout'));
  }
}
