/**
 * The one clock (injected everywhere, read nowhere else): `now` for
 * durations, deadlines and windows (monotonic), `wall` where a date from
 * outside is read or written (Retry-After and quota-reset HTTP-dates,
 * certificate validity, RFC 3339 stamps), `sleep` for the waits a policy
 * decides (backoff, Retry-After, pacing). Tests hand in a clock whose
 * sleeps pass at once and move both readings on (test/helpers/clock.ts).
 */
import { performance } from 'node:perf_hooks';
import type { Signal } from './signal.js';

export interface Clock {
  /** Milliseconds on a monotonic clock. */
  readonly now: () => number;
  /** Milliseconds since the Unix epoch. */
  readonly wall: () => number;
  /** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
  readonly sleep: (ms: number, signal: Signal) => Promise<void>;
}

/** The real clock's sleep, cancelled by the signal. */
export function sleep(ms: number, signal: Signal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const timer = setTimeout(() => {
      stop();
      resolve();
    }, ms);
    const stop = signal.onAbort(() => {
      clearTimeout(timer);
      reject(signal.reason);
    });
  });
}

export const systemClock: Clock = {
  now: () => performance.now(),
  wall: () => Date.now(),
  sleep,
};
