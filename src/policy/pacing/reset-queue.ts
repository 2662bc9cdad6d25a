/**
 * The queue of requests that wait for a quota dimension's reset (quota.ts
 * reserves): each window's quota goes to those that waited for it, in the
 * order they came, by ticket in the dimension's unit. Functions of a
 * dimension's state and a time, without I/O (a shared update may run them
 * twice).
 */
import type { PacingConfig } from '../../config/types.js';
import type { DimState } from './store.js';

const JITTER_MAX_MS = 150;

/** After a reset: a margin for clock skew and rounding, plus jitter so that waiters do not arrive together. */
export function jitter(random: () => number): number {
  return 50 + random() * (JITTER_MAX_MS - 50);
}

/**
 * A reset's waiter: its `ticket`, and its slot (`wait` ms), or none (sleep `askAgainIn` ms, then ask again;
 * `wait` estimates the whole wait).
 */
export interface Waiter {
  readonly wait: number;
  readonly askAgainIn: number | null;
  readonly ticket: number;
}

/** How many processes split the quota: none when shared (Redis reserves for all), else `replicas`. */
export function splitAmong(config: PacingConfig): number {
  return config.shared ? 1 : config.replicas;
}

/** What a window's quota releases to those that waited for its reset, in the dimension's unit. */
function perWindowOf(limit: number, config: PacingConfig): number {
  return Math.max(1, Math.floor((limit * (1 - config.reserve)) / splitAmong(config)));
}

/** `ticket` is one this dimension gave. */
export function gave(dim: DimState, ticket: number): boolean {
  return dim.queueBase !== undefined && ticket >= dim.queueBase && ticket < dim.queueTail!;
}

/** A reset passed: the waiters it released leave the dimension's queue. */
export function nextWindow(dim: DimState, config: PacingConfig): void {
  if (dim.limit === undefined || dim.limit <= 0 || dim.queueTail === undefined) return;
  dim.queueHead = Math.min(dim.queueTail, dim.queueHead! + perWindowOf(dim.limit, config));
}

/**
 * A request that waits for the reset at `resetAt`. Each window's quota goes
 * to the requests that waited for it, in the order they came (by ticket, a
 * request taking as many as it costs): a slot only on a reset the provider
 * announced, in the coming window. The window's length is known only from
 * below (the longest time to a reset seen), so a slot at a reset assumed
 * from it, or a window on, could fall in the window before: those ask again
 * at the coming reset, keeping their place (`wait` estimates the whole
 * wait, for maxWait).
 */
export function resetWaiter(
  dim: DimState,
  t: number,
  cost: number,
  config: PacingConfig,
  random: () => number,
  resetAt: number,
  ticket: number | null,
): Waiter {
  const perWindow = perWindowOf(dim.limit!, config);
  if (dim.queueBase === undefined) dim.queueBase = dim.queueHead = dim.queueTail = Math.floor(random() * 2 ** 40);
  // A ticket this state never gave (from Redis, asked again here while Redis fails, or the other way round) is
  // replaced.
  let own = ticket;
  if (own === null || !gave(dim, own)) {
    own = dim.queueTail!;
    dim.queueTail! += cost;
  }
  const position = own - dim.queueHead!;
  // The window its whole cost fits in: a cost that would straddle two goes in the later one.
  const windows = Math.floor((position + cost - 1) / perWindow);
  // Within a window's share, waiters go spread over the jitter's span in the order they came;
  // a window after a reset starts with its first request, up to one jitter late: later windows are counted from there.
  const spread = 50 + ((JITTER_MAX_MS - 50) * (position % perWindow)) / perWindow;
  const at = resetAt + windows * (dim.windowMs! + JITTER_MAX_MS) + spread;
  if (dim.resetAssumed || windows > 0) return { wait: at - t, askAgainIn: resetAt + spread - t, ticket: own };
  dim.nextSlot = Math.max(dim.nextSlot, at);
  return { wait: at - t, askAgainIn: null, ticket: own };
}
