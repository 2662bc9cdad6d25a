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
 *
 * The starvation guard (`priorities.promoteAfter`): a waiter of a lower
 * class that has waited `promoteAfterMs` is released as one of the highest
 * class, first come first served among them, so a steady stream of higher
 * classes cannot hold it until its deadline. It keeps its own class for
 * everything else (counts, which waiter a full queue refuses).
 */

/**
 * Where a waiter stands: its class (0 the highest) and, with the starvation guard, after how long it goes as the
 * highest (a priority class is one).
 */
export interface Place {
  readonly rank: number;
  readonly promoteAfterMs: number | null;
}

/**
 * Where a promotion is noted when the promoted waiter goes ahead of a waiting one of a higher class (a request's
 * flags).
 */
export interface PromotionNote {
  add(flag: 'PROMOTED'): unknown;
}

const FIRST: Place = { rank: 0, promoteAfterMs: null };

interface Waiter<T> {
  /** Its own class. */
  readonly rank: number;
  /** What it takes when it goes (a rate limit's cost, SPEC §15; 1 otherwise). */
  readonly cost: number;
  /** The class it is released in: its own, or 0 once promoted. */
  order: number;
  readonly note: PromotionNote | undefined;
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
   * with `giveUp()` after `waitMs`, or when `onAbort` fires. `note` hears
   * of a promotion that put it ahead of a higher class.
   */
  wait(
    waitMs: number,
    onAbort: (listener: () => void) => () => void,
    giveUp: () => unknown,
    place: Place = FIRST,
    note?: PromotionNote,
    cost = 1,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let stop: () => void = () => {};
      let promote: NodeJS.Timeout | undefined;
      const leave = () => {
        const index = this.waiters.indexOf(waiter);
        if (index !== -1) this.waiters.splice(index, 1);
        clearTimeout(timer);
        clearTimeout(promote);
        stop();
      };
      const waiter: Waiter<T> = {
        rank: place.rank,
        cost,
        order: place.rank,
        note,
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
      if (place.rank > 0 && place.promoteAfterMs !== null && place.promoteAfterMs < waitMs)
        promote = setTimeout(() => (waiter.order = 0), place.promoteAfterMs);
      this.waiters.push(waiter);
      stop = onAbort(() => waiter.reject(giveUp()));
    });
  }

  /** The oldest waiter of the highest class (promoted ones in it), to go next; undefined when nobody waits. */
  head(): { readonly cost: number } | undefined {
    let head = this.waiters[0];
    if (!head) return undefined;
    for (let i = 1; i < this.waiters.length && head.order > 0; i++)
      if (this.waiters[i]!.order < head.order) head = this.waiters[i]!;
    return head;
  }

  /** Hands `value` to the head (see head()); false when nobody waits. */
  resolveHead(value: T): boolean {
    const head = this.head() as Waiter<T> | undefined;
    if (head === undefined) return false;
    this.give(head, value);
    return true;
  }

  /** Hands `value` to `waiter`, a head() of this queue; false when it no longer waits. */
  resolveWaiter(waiter: { readonly cost: number }, value: T): boolean {
    if (!this.waiters.includes(waiter as Waiter<T>)) return false;
    this.give(waiter as Waiter<T>, value);
    return true;
  }

  private give(head: Waiter<T>, value: T): void {
    // Promoted, it goes ahead of a waiter of a higher class, if one waits: say so.
    const rank = head.rank;
    if (head.order < rank && head.note && this.waiters.some((other) => other.rank < rank)) head.note.add('PROMOTED');
    head.resolve(value);
  }

  /** A waiter goes in class `rank` or higher (promoted ones in the highest). */
  someAtOrAbove(rank: number): boolean {
    return this.waiters.some((waiter) => waiter.order <= rank);
  }

  /** What all waiters take together. */
  costWaiting(): number {
    let cost = 0;
    for (const waiter of this.waiters) cost += waiter.cost;
    return cost;
  }

  /**
   * Makes room for a waiter of `rank`: the newest waiter of the lowest
   * class present gives up with `error()`, if that class is below `rank`.
   * Returns whether one did.
   */
  displace(rank: number, error: () => unknown): boolean {
    let victim: Waiter<T> | undefined;
    for (const waiter of this.waiters)
      if (waiter.rank > rank && (!victim || waiter.rank >= victim.rank)) victim = waiter;
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
