/**
 * Shared rate limits in Redis (SPEC §3 `rateLimit.shared`): a token bucket
 * (`burst` tokens refilled at `rate`) and a cap on requests in flight
 * (`maxConcurrent`) that hold across every replica, decided by one Lua
 * script per decision: one round trip, atomic, on Redis's clock.
 *
 * Keys (both of one limiter on one Cluster slot through the `{…}` hash tag):
 *   breakwater:rl:{<route>:<key>}:tokens  hash {t: tokens, ts: ms}; expires once full again
 *   breakwater:rl:{<route>:<key>}:slots   sorted set of leases (member id, score expiry ms)
 * `<route>` is the route name with `{`, `}` and `%` percent-encoded,
 * `<key>` the key value (`client-ip`, `header:<name>`) in base64url, empty
 * for `key: route`.
 *
 * A slot is a lease that expires LEASE_MS after it was last renewed; each
 * replica renews the leases it holds every LEASE_MS / 3 (re-adding them
 * after a flush), so a replica that dies frees its slots within LEASE_MS.
 *
 * Waiting (`queue`) is per replica: a FIFO of bounded size whose head asks
 * Redis again when the token it lacked is due, or every SLOT_POLL_MS while
 * it waits for a slot (sooner when a slot of this replica is released).
 *
 * Why not bottleneck (the engine before this one) nor rate-limiter-flexible:
 * bottleneck makes several round trips per job and is unmaintained since
 * 2019; rate-limiter-flexible counts fixed windows (two bursts across a
 * window's edge) and has no shared cap on requests in flight. The numbers
 * are in the commit that brought this in (370b689).
 */
import { WaitQueue, type Place, type PromotionNote } from '../../lib/wait-queue.js';
import { sharedKeys, type Decision, type SharedBuckets } from './shared-buckets.js';

/** How often a waiter for a slot asks Redis again (ms). */
const SLOT_POLL_MS = 25;
/** Longest pause between two asks of a waiting head (ms). */
const MAX_POLL_MS = 1_000;

export class SharedRefused extends Error {
  constructor(
    readonly reason: 'queue-full' | 'timeout' | 'displaced',
    /** The last decision Redis gave (for the RateLimit headers). */
    readonly decision: Decision | undefined,
  ) {
    super(reason);
  }
}

export interface SharedLimiterOptions {
  readonly rate: number | null;
  readonly burst: number;
  readonly maxConcurrent: number | null;
  readonly queueSize: number;
}

/**
 * One key's shared limiter on this replica: asks Redis once per decision,
 * and queues what has to wait in a FIFO whose head alone asks again.
 */
export class SharedLimiter {
  private readonly keys: { tokens: string; slots: string };
  private readonly waiters = new WaitQueue<() => void>();
  private inFlight = 0;
  private asking = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private last: Decision | undefined;

  constructor(
    private readonly buckets: SharedBuckets,
    route: string,
    key: string,
    private readonly options: SharedLimiterOptions,
  ) {
    this.keys = sharedKeys(route, key);
  }

  /** Asks Redis once for `cost` tokens and a slot; resolves with the slot's release when allowed. */
  private async ask(cost: number): Promise<(() => void) | undefined> {
    const lease = this.buckets.leaseId();
    const decision = await this.buckets.decide(
      this.keys,
      this.options.rate,
      this.options.burst,
      this.options.maxConcurrent,
      lease,
      cost,
    );
    this.last = decision;
    if (!decision.allowed) return undefined;
    this.inFlight += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inFlight -= 1;
      if (this.options.maxConcurrent !== null) this.buckets.release(this.keys.slots, lease);
      this.wake();
    };
  }

  /**
   * Waits for a token and a slot, at most `waitMs`, behind waiters of
   * its class (`place`) and higher. Rejects with
   * SharedRefused, with the abort's reason, or with the Redis error (every
   * waiter of this key then gets it: Redis is failing).
   */
  /**
   * A slot from Redis now, with nobody of this replica waiting ahead, or undefined (SPEC §19.2); rejects when
   * Redis fails.
   */
  async tryAcquire(cost = 1): Promise<(() => void) | undefined> {
    return this.waiters.length === 0 ? this.ask(cost) : undefined;
  }

  /** A request's charge changed by `delta` once settled from its usage (SPEC §15); rejects when Redis fails. */
  async settle(delta: number): Promise<void> {
    if (this.options.rate === null || delta === 0) return;
    await this.buckets.settle(this.keys.tokens, this.options.rate, this.options.burst, delta);
    if (delta < 0) this.wake();
  }

  /**
   * `cost` tokens and a slot, at most `waitMs` away: see the comment above. `refuseLonger`: a wait Redis says
   * is longer than `waitMs` is refused at once (a cost-weighted limit, SPEC §15).
   */
  async acquire(
    waitMs: number,
    onAbort: (listener: () => void) => () => void,
    place?: Place,
    note?: PromotionNote,
    cost = 1,
    refuseLonger = false,
  ): Promise<() => void> {
    if (this.waiters.length === 0) {
      const release = await this.ask(cost);
      if (release) return release;
      if (refuseLonger && this.last !== undefined && this.last.waitMs > waitMs)
        throw new SharedRefused('timeout', this.last);
    }
    // This replica's queue: a higher class goes first, and displaces the newest of a lower one when full (SPEC §13).
    if (
      this.waiters.length >= this.options.queueSize &&
      !this.waiters.displace(place?.rank ?? 0, () => new SharedRefused('displaced', this.last))
    )
      throw new SharedRefused('queue-full', this.last);
    const waiting = this.waiters.wait(
      waitMs,
      onAbort,
      () => new SharedRefused('timeout', this.last),
      place,
      note,
      cost,
    );
    this.schedule(this.last);
    return waiting;
  }

  /** A slot of this replica came free: the head may ask at once. */
  private wake(): void {
    if (this.waiters.length === 0 || this.asking) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    void this.pump();
  }

  private schedule(decision: Decision | undefined): void {
    if (this.retryTimer !== undefined || this.asking || this.waiters.length === 0) return;
    const wait =
      decision === undefined || decision.allowed
        ? 0
        : decision.waitMs < 0
          ? SLOT_POLL_MS
          : Math.min(MAX_POLL_MS, Math.max(1, decision.waitMs));
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.pump();
    }, wait);
  }

  /** The head asks; on yes it starts and the next asks at once; on no it waits for what it lacked. */
  private async pump(): Promise<void> {
    if (this.asking) return;
    this.asking = true;
    try {
      for (let head = this.waiters.head(); head !== undefined; head = this.waiters.head()) {
        let release: (() => void) | undefined;
        try {
          release = await this.ask(head.cost);
        } catch (error) {
          this.waiters.rejectAll(error);
          return;
        }
        if (!release) break;
        if (this.waiters.resolveWaiter(head, release)) continue;
        // It left while Redis answered: the head now takes the slot if it costs the same, else it goes back.
        const next = this.waiters.head();
        if (next?.cost === head.cost) this.waiters.resolveWaiter(next, release);
        else {
          release();
          void this.settle(-head.cost).catch(() => {});
        }
      }
    } finally {
      this.asking = false;
    }
    this.schedule(this.last);
  }

  /** Every waiter gives up at once with `error` (Redis started failing). */
  failWaiters(error: unknown): void {
    this.waiters.rejectAll(error);
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

  close(): void {
    clearTimeout(this.retryTimer);
    this.waiters.rejectAll(new SharedRefused('timeout', this.last));
  }
}
