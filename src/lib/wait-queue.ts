/**
 * Callers waiting for something (a token, a slot), each of whom gives up
 * after its own deadline or when its request goes away. The local and the
 * shared rate limiters queue with it.
 *
 * Each waiter has a rank, its priority class (SPEC §13: 0 is the highest):
 * the head is the oldest waiter of the highest class present, and a full
 * queue can make room for a waiter by refusing the newest one of the lowest
 * class below it. With every rank 0 (no priorities) it is a plain FIFO, and
 * the head is found at once.
 */
interface Waiter<T> {
  readonly rank: number;
  resolve(value: T): void;
  reject(error: unknown): void;
}

export class WaitQueue<T> {
  private readonly waiters: Waiter<T>[] = [];

  get length(): number {
    return this.waiters.length;
  }

  /**
   * Waits at the back of the queue until resolveHead() reaches it; rejects
   * with `giveUp()` after `waitMs`, or when `onAbort` fires.
   */
  wait(waitMs: number, onAbort: (listener: () => void) => () => void, giveUp: () => unknown, rank = 0): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let stop: () => void = () => {};
      const leave = () => {
        const index = this.waiters.indexOf(waiter);
        if (index !== -1) this.waiters.splice(index, 1);
        clearTimeout(timer);
        stop();
      };
      const waiter: Waiter<T> = {
        rank,
        resolve: (value) => {
          leave();
          resolve(value);
        },
        reject: (error) => {
          leave();
          reject(error);
        },
      };
      const timer = setTimeout(() => waiter.reject(giveUp()), waitMs);
      this.waiters.push(waiter);
      stop = onAbort(() => waiter.reject(giveUp()));
    });
  }

  /** Hands `value` to the oldest waiter of the highest class; false when nobody waits. */
  resolveHead(value: T): boolean {
    let head = this.waiters[0];
    if (!head) return false;
    for (let i = 1; i < this.waiters.length && head.rank > 0; i++) if (this.waiters[i]!.rank < head.rank) head = this.waiters[i]!;
    head.resolve(value);
    return true;
  }

  /**
   * Makes room for a waiter of `rank`: the newest waiter of the lowest
   * class present gives up with `error()`, if that class is below `rank`.
   * Returns whether one did.
   */
  displace(rank: number, error: () => unknown): boolean {
    let victim: Waiter<T> | undefined;
    for (const waiter of this.waiters) if (waiter.rank > rank && (!victim || waiter.rank >= victim.rank)) victim = waiter;
    if (!victim) return false;
    victim.reject(error());
    return true;
  }

  /** Adds the waiters of each rank to `into[rank]`. */
  countRanks(into: number[]): void {
    for (const waiter of this.waiters) into[waiter.rank] = (into[waiter.rank] ?? 0) + 1;
  }

  /** Every waiter gives up with `error`. */
  rejectAll(error: unknown): void {
    for (const waiter of [...this.waiters]) waiter.reject(error);
  }
}
