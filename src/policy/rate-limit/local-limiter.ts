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

  private canStart(cost: number): boolean {
    if (this.options.maxConcurrent !== null && this.inFlight >= this.options.maxConcurrent) return false;
    if (this.options.rate === null) return true;
    this.refill();
    return this.tokens >= cost;
  }

  private start(cost: number): () => void {
    if (this.options.rate !== null) this.tokens -= cost;
    this.inFlight += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inFlight -= 1;
      this.drain();
    };
  }

  /** Drains again with the timer re-armed for the head there is now. */
  private redrain(): void {
    clearTimeout(this.drainTimer);
    this.drainTimer = undefined;
    this.drain();
  }

  /** Starts the waiters that can start, oldest first; arms a timer for the next token. */
  private drain(): void {
    let head = this.waiters.head();
    while (head !== undefined && this.canStart(head.cost)) {
      this.waiters.resolveWaiter(head, this.start(head.cost));
      head = this.waiters.head();
    }
    if (head !== undefined && this.drainTimer === undefined && this.options.rate !== null && this.tokens < head.cost) {
      const wait = Math.max(1, Math.ceil(((head.cost - this.tokens) * 1000) / this.options.rate));
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
    cost = 1,
  ): Promise<() => void> {
    if (this.waiters.length === 0 && this.canStart(cost)) return Promise.resolve(this.start(cost));
    // A full queue refuses the newcomer, unless a lower class waits: then the newest of the lowest class makes room.
    if (
      this.waiters.length >= this.options.queueSize &&
      !this.waiters.displace(place?.rank ?? 0, () => new LimiterRefused('displaced'))
    )
      return Promise.reject(new LimiterRefused('queue-full'));
    const waiting = this.waiters.wait(waitMs, onAbort, () => new LimiterRefused('timeout'), place, note, cost);
    this.drain();
    // A waiter that gives up may have been the head the timer waits for: the next head may start sooner, or now.
    waiting.then(undefined, () => this.redrain());
    return waiting;
  }

  /**
   * ms until the bucket holds `cost` more than the waiters ahead take: a cost-weighted request's wait, known
   * before it queues (SPEC §15); 0 without a token bucket.
   */
  waitFor(cost: number): number {
    if (this.options.rate === null) return 0;
    this.refill();
    const missing = this.waiters.costWaiting() + cost - this.tokens;
    return missing <= 0 ? 0 : (missing * 1000) / this.options.rate;
  }

  /** The charge of a request that went is changed by `delta` (settled from its usage): the bucket may go below 0. */
  settle(delta: number): void {
    if (this.options.rate === null || delta === 0) return;
    this.refill();
    // Below zero by at most one burst: an answer's usage, however large, costs the key at most two bursts' time.
    this.tokens = Math.max(-this.options.burst, Math.min(this.options.burst, this.tokens - delta));
    if (delta < 0) this.drain();
  }

  /** A token and a slot now, with nobody waiting ahead, or undefined: report mode's question (SPEC §19.2). */
  tryAcquire(cost = 1): (() => void) | undefined {
    return this.waiters.length === 0 && this.canStart(cost) ? this.start(cost) : undefined;
  }

  /** Whole tokens left now. */
  tokensLeft(): number {
    this.refill();
    return Math.floor(this.tokens);
  }

  /** Seconds until the bucket holds `cost` (0 when it does): the next token by default. */
  secondsToNextToken(cost = 1): number {
    if (this.options.rate === null) return 0;
    this.refill();
    return this.tokens >= cost ? 0 : (cost - this.tokens) / this.options.rate;
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
