/**
 * The quota arithmetic of pacing (the policy is pacer.ts): when the next
 * request may go given the quota a provider announced (what a response
 * says about it is read by announced.ts). Functions of a PacerState and a time, without I/O (the
 * wall time is handed in to place an announced reset), so a shared
 * update may run them twice.
 */

import type { PacingConfig } from '../../config/types.js';

import type { PacerState } from './store.js';

/** Samples for the measured refill rate are at least this far apart (ms). */
export const REFILL_SAMPLE_MS = 1000;

const JITTER_MAX_MS = 150;

/** After a reset: a margin for clock skew and rounding, plus jitter so that waiters do not arrive together. */
function jitter(random: () => number): number {
  return 50 + random() * (JITTER_MAX_MS - 50);
}

/**
 * A class with a `quotaFloor` (SPEC §13) does not go while less than that
 * share of the announced quota is left (less the requests in flight): it
 * waits for the window's reset, without taking a slot. Undefined when the
 * floor does not hold it back.
 */
function belowFloor(
  state: PacerState,
  t: number,
  inFlight: number,
  floor: number | null,
  random: () => number,
): number | undefined {
  if (floor === null || floor <= 0 || state.remaining === undefined || state.limit === undefined || state.limit <= 0)
    return undefined;
  if (state.resetAt !== undefined && state.resetAt <= t) return undefined; // the window is over: refilled
  if (state.remaining - inFlight >= floor * state.limit) return undefined;
  const resetAt = state.resetAt ?? (state.windowMs !== undefined ? t + state.windowMs : undefined);
  // No reset announced (a leaking bucket): look again after a sample period.
  return (resetAt === undefined ? t + REFILL_SAMPLE_MS : resetAt) + jitter(random) - t;
}

/**
 * A reset's waiter: its `ticket`, and its slot (`wait` ms), or none (sleep `askAgainIn` ms, then ask again;
 * `wait` estimates the whole wait).
 */
interface Waiter {
  readonly wait: number;
  readonly askAgainIn: number | null;
  readonly ticket: number;
}

/** How many processes split the quota: none when shared (Redis reserves for all), else `replicas`. */
function splitAmong(config: PacingConfig): number {
  return config.shared ? 1 : config.replicas;
}

/** Requests a window's quota releases from those that waited for its reset. */
function perWindowOf(limit: number, config: PacingConfig): number {
  return Math.max(1, Math.floor((limit * (1 - config.reserve)) / splitAmong(config)));
}

/** `ticket` is one this state gave. */
function gave(state: PacerState, ticket: number): boolean {
  return state.queueBase !== undefined && ticket >= state.queueBase && ticket < state.queueTail!;
}

/** A reset passed: the waiters it released leave the queue. */
export function nextWindow(state: PacerState, config: PacingConfig): void {
  if (state.limit === undefined || state.limit <= 0 || state.queueTail === undefined) return;
  state.queueHead = Math.min(state.queueTail, state.queueHead! + perWindowOf(state.limit, config));
}

/**
 * A request that waits for the reset at `resetAt`. Each window's quota goes
 * to the requests that waited for it, in the order they came (by ticket):
 * a slot only on a reset the provider announced, in the coming window. The
 * window's length is known only from below (the longest time to a reset
 * seen), so a slot at a reset assumed from it, or a window on, could fall in
 * the window before: those ask again at the coming reset, keeping their
 * place (`wait` estimates the whole wait, for maxWait).
 */
function resetWaiter(
  state: PacerState,
  t: number,
  config: PacingConfig,
  random: () => number,
  resetAt: number,
  ticket: number | null,
): Waiter {
  const perWindow = perWindowOf(state.limit!, config);
  if (state.queueBase === undefined)
    state.queueBase = state.queueHead = state.queueTail = Math.floor(random() * 2 ** 40);
  // A ticket this state never gave (from Redis, asked again here while Redis fails, or the other way round) is
  // replaced.
  const own = ticket !== null && gave(state, ticket) ? ticket : state.queueTail!++;
  const position = own - state.queueHead!;
  // Within a window's share, waiters go spread over the jitter's span in the order they came;
  // a window after a reset starts with its first request, up to one jitter late: later windows are counted from there.
  const spread = 50 + ((JITTER_MAX_MS - 50) * (position % perWindow)) / perWindow;
  const at = resetAt + Math.floor(position / perWindow) * (state.windowMs! + JITTER_MAX_MS) + spread;
  if (state.resetAssumed || position >= perWindow)
    return { wait: at - t, askAgainIn: resetAt + spread - t, ticket: own };
  state.nextSlot = Math.max(state.nextSlot, at);
  return { wait: at - t, askAgainIn: null, ticket: own };
}

/**
 * How long a request must wait before it may go, in ms; reserves its slot.
 * `inFlight` counts the others (all replicas); `ticket`: its place among
 * the reset's waiters, when it asks again.
 */
function reserve(
  state: PacerState,
  t: number,
  inFlight: number,
  config: PacingConfig,
  random: () => number,
  ticket: number | null,
): number | Waiter {
  if (state.pausedUntil > t) {
    const at = state.pausedUntil + jitter(random);
    // A reset's waiter keeps its place: it asks again when the pause ends.
    if (ticket !== null) return { wait: at - t, askAgainIn: at - t, ticket };
    state.nextSlot = Math.max(state.nextSlot, at);
    return at - t;
  }
  let rate: number | null = null;
  const haveQuota = state.remaining !== undefined && state.limit !== undefined && state.limit > 0;
  if (haveQuota && state.resetAt !== undefined && state.resetAt <= t) {
    // The window the quota described is over: assume it refilled, and a window as long as the longest seen.
    state.remaining = state.limit;
    state.resetAt = state.windowMs !== undefined ? t + state.windowMs : undefined;
    state.resetAssumed = true;
    nextWindow(state, config);
  }
  // A waiter whose reset came: its share of the window was kept for it (it counts in flight).
  if (ticket !== null && gave(state, ticket) && ticket < state.queueHead!) return 0;
  if (haveQuota) {
    const limit = state.limit!;
    const effective = state.remaining! - inFlight - config.reserve * limit;
    if (state.remaining! / limit > config.engageBelow && effective > 0) return 0;
    if (state.windowMs !== undefined) {
      // A quota that resets.
      const resetAt = state.resetAt ?? t + state.windowMs;
      // Nothing left in this window: wait for the reset.
      if (effective <= 0) return resetWaiter(state, t, config, random, resetAt, ticket);
      rate = Math.max(config.minRate, effective / Math.max(0.001, (resetAt - t) / 1000));
    } else if (state.refillRate !== undefined) {
      // No reset announced: release at the measured refill rate, half of it once nothing is left.
      rate = Math.max(config.minRate, effective > 0 ? state.refillRate : state.refillRate / 2);
    } else if (effective > 0) {
      // Not measured yet: spend what is left over a second.
      rate = Math.max(config.minRate, effective);
    } else {
      // Nothing left and no measurement yet: wait for one (a sample period), without queueing behind a guessed rate.
      return REFILL_SAMPLE_MS + jitter(random);
    }
    rate /= splitAmong(config);
  } else if (state.aimdRate !== null) {
    if (t - state.lastIncrease >= config.aimd.increaseEvery) {
      state.aimdRate += config.aimd.increaseBy;
      state.lastIncrease = t;
    }
    rate = state.aimdRate / splitAmong(config);
  }
  if (rate === null) return 0;
  // Slots reserved at an older, lower rate (or by requests that never went)
  // do not hold back the queue: at the current rate, at most the requests
  // in flight are ahead of this one.
  const slot = Math.max(t, Math.min(state.nextSlot, t + ((inFlight + 1) * 1000) / rate));
  // A slot past the reset is a place among the reset's waiters: the next window's share, counted.
  if (haveQuota && state.resetAt !== undefined && state.windowMs !== undefined && slot > state.resetAt)
    return resetWaiter(state, t, config, random, state.resetAt, ticket);
  state.nextSlot = slot + 1000 / rate;
  return slot - t;
}

/**
 * What a request was told: `wait` (ms) for its slot; or, without a slot, to ask again in `askAgainIn` ms
 * (`floor`: held by its class's quota floor).
 */
export interface Reservation {
  readonly wait: number;
  readonly floor: boolean;
  readonly askAgainIn: number | null;
  /** The request's place among the reset's waiters, to ask again with. */
  readonly ticket: number | null;
}

/**
 * `reserve`, but a wait beyond `limitMs` (maxWait, or what is left of the
 * request's deadline) is refused without taking a slot or a place among the
 * reset's waiters: refused requests must not push later ones back.
 */
export function reserveWithin(
  state: PacerState,
  t: number,
  inFlight: number,
  config: PacingConfig,
  random: () => number,
  limitMs: number,
  floor: number | null = null,
  ticket: number | null = null,
): Reservation {
  // Held below its class's floor: no slot is taken; the request asks again after the wait.
  const held = belowFloor(state, t, inFlight, floor, random);
  if (held !== undefined) return { wait: held, floor: true, askAgainIn: held, ticket };
  const { nextSlot, queueTail, queueHead, queueBase } = state;
  const reserved = reserve(state, t, inFlight, config, random, ticket);
  const wait = typeof reserved === 'number' ? reserved : reserved.wait;
  const own = typeof reserved === 'number' ? ticket : reserved.ticket;
  if (wait > limitMs) {
    state.nextSlot = nextSlot;
    // A ticket just given is taken back (one given before stays: the queue then counts one too many, which only
    // errs on the safe side).
    if (own !== ticket) Object.assign(state, { queueTail, queueHead, queueBase });
  }
  return { wait, floor: false, askAgainIn: typeof reserved === 'number' ? null : reserved.askAgainIn, ticket: own };
}

/** A request is released: counters for AIMD's starting point and the refill guard. */
export function released(state: PacerState, t: number): void {
  const second = Math.floor(t / 1000);
  if (second !== state.recent.second)
    state.recent = { second, count: 0, previous: state.recent.second === second - 1 ? state.recent.count : 0 };
  state.recent.count += 1;
}
