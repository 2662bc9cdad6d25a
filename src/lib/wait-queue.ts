/**
 * A FIFO of callers waiting for something (a token, a slot), each of whom
 * gives up after its own deadline or when its request goes away. The local
 * and the shared rate limiters queue with it.
 */
interface Waiter<T> {
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
  wait(waitMs: number, onAbort: (listener: () => void) => () => void, giveUp: () => unknown): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let stop: () => void = () => {};
      const leave = () => {
        const index = this.waiters.indexOf(waiter);
        if (index !== -1) this.waiters.splice(index, 1);
        clearTimeout(timer);
        stop();
      };
      const waiter: Waiter<T> = {
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

  /** Hands `value` to the oldest waiter; false when nobody waits. */
  resolveHead(value: T): boolean {
    const head = this.waiters[0];
    if (!head) return false;
    head.resolve(value);
    return true;
  }

  /** Every waiter gives up with `error`. */
  rejectAll(error: unknown): void {
    for (const waiter of [...this.waiters]) waiter.reject(error);
  }
}
