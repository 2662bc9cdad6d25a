/**
 * A cancellation signal for one request or attempt. Node's AbortController
 * is an EventTarget and costs several microseconds per request (measured:
 * about 10% of a proxied request's CPU in the benchmark); this is the part
 * of it the pipeline needs, as plain objects.
 */
export interface Signal {
  readonly aborted: boolean;
  readonly reason: unknown;
  /** Calls `listener` once when aborted (at once if already aborted); returns an unsubscribe function. */
  onAbort(listener: () => void): () => void;
}

export class Cancellation implements Signal {
  aborted = false;
  reason: unknown = undefined;
  private listeners: (() => void)[] | undefined;

  /** A cancellation that is also aborted when `parent` is. Call `release()` when done with it. */
  static linked(parent: Signal): Cancellation {
    const child = new Cancellation();
    child.unlink = parent.onAbort(() => child.abort(parent.reason));
    return child;
  }

  private unlink: (() => void) | undefined;

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    const listeners = this.listeners;
    this.listeners = undefined;
    if (listeners) for (const listener of listeners) listener();
  }

  onAbort(listener: () => void): () => void {
    if (this.aborted) {
      listener();
      return noop;
    }
    (this.listeners ??= []).push(listener);
    return () => {
      const index = this.listeners?.indexOf(listener) ?? -1;
      if (index !== -1) this.listeners!.splice(index, 1);
    };
  }

  /** Detaches from the parent signal. */
  release(): void {
    this.unlink?.();
    this.unlink = undefined;
  }
}

function noop(): void {}

/** `promise`, or the signal's reason when it aborts first (the promise goes on for whoever else waits on it). */
export function untilAborted<T>(promise: Promise<T>, signal: Signal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const stop = signal.onAbort(() => reject(signal.reason as Error));
    promise.then(
      (value) => {
        stop();
        resolve(value);
      },
      (error: unknown) => {
        stop();
        reject(error as Error);
      },
    );
  });
}
