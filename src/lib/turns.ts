/**
 * One turn at a time, handed to the waiter of the highest class first
 * (SPEC §13). A pacer makes a request wait by giving it a slot on its
 * virtual clock; with priority classes, the request that sleeps towards
 * its slot holds the turn, and the requests that come meanwhile wait here
 * by class, so a later critical request reserves before an earlier batch
 * one. Nobody waits here while nobody sleeps: the common path is free.
 */
import { WaitQueue, type Place, type PromotionNote } from './wait-queue.js';

export class Turns {
  private held = false;
  private readonly queue = new WaitQueue<void>();

  /** Someone holds the turn, or waits for it. */
  get busy(): boolean {
    return this.held || this.queue.length > 0;
  }

  /** Someone of class `rank` or higher (0 the highest; promoted ones count as 0) waits for the turn. */
  waitingAtOrAbove(rank: number): boolean {
    return this.queue.someAtOrAbove(rank);
  }

  /** Takes the free turn at once; false when it is held. */
  claim(): boolean {
    if (this.held) return false;
    this.held = true;
    return true;
  }

  /**
   * Waits for the turn behind the waiters of its class (`place`) and higher; rejects with `giveUp()` after
   * `waitMs` or on abort.
   */
  take(
    place: Place,
    waitMs: number,
    onAbort: (listener: () => void) => () => void,
    giveUp: () => unknown,
    note?: PromotionNote,
  ): Promise<void> {
    if (this.claim()) return Promise.resolve();
    return this.queue.wait(waitMs, onAbort, giveUp, place, note);
  }

  /** The holder is done: the turn goes to the next waiter, or is free. */
  give(): void {
    if (!this.queue.resolveHead(undefined)) this.held = false;
  }
}

/** Turns per key (a pacer id), kept only while someone holds or waits for one. */
export class TurnsByKey {
  private readonly byKey = new Map<string, Turns>();

  of(key: string): Turns {
    let turns = this.byKey.get(key);
    if (!turns) this.byKey.set(key, (turns = new Turns()));
    return turns;
  }

  /** The holder of `key`'s turn is done. */
  give(key: string): void {
    const turns = this.byKey.get(key);
    if (!turns) return;
    turns.give();
    if (!turns.busy) this.byKey.delete(key);
  }
}
