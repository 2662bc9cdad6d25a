/**
 * A clock for tests (src/lib/clock.ts) whose sleeps pass at once: each
 * moves both readings on by its length and is recorded, so a test asserts
 * the wait a policy chose (a 20 s Retry-After) without waiting it.
 * Timers (timeouts, queues) still run on real time.
 */
import { performance } from 'node:perf_hooks';
import type { Clock } from '../../src/lib/clock.js';

export interface SkippingClock extends Clock {
  /** Every sleep asked for, in ms, in order. */
  readonly sleeps: number[];
  /** Moves both readings on by `ms` (the clock then disagrees with the system's, as a test may want). */
  advance(ms: number): void;
}

export function skippingClock(): SkippingClock {
  let skipped = 0;
  const sleeps: number[] = [];
  return {
    now: () => performance.now() + skipped,
    wall: () => Date.now() + skipped,
    sleep: (ms, signal) =>
      new Promise((resolve, reject) => {
        if (signal.aborted) {
          reject(signal.reason);
          return;
        }
        sleeps.push(ms);
        skipped += ms;
        setImmediate(resolve);
      }),
    sleeps,
    advance: (ms) => {
      skipped += ms;
    },
  };
}
