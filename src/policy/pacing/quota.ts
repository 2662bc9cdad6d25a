/**
 * The quota arithmetic of pacing (the policy is pacer.ts): when the next
 * request may go given the quota a provider announced (what a response
 * says about it is read by announced.ts). Functions of a PacerState and a time, without I/O (the
 * wall time is handed in to place an announced reset), so a shared
 * update may run them twice.
 */

import type { PacingConfig } from '../../config/types.js';

import { NO_COSTS, type Costs } from '../cost.js';
import { gave, jitter, nextWindow, resetWaiter, splitAmong, type Waiter } from './reset-queue.js';

export { nextWindow } from './reset-queue.js';
import { dimensionsOf, type DimState, type Load, type PacerState } from './store.js';
import { costIn, splitIn, unseenIn } from './load.js';

/** Samples for the measured refill rate are at least this far apart (ms). */
export const REFILL_SAMPLE_MS = 1000;

/** A dimension besides requests that no answer has named for this long holds nothing back (ms). */
const FORGET_AFTER_MS = 60_000;

/**
 * A dimension (besides requests) no answer has named for a minute, nor for two of its windows: the upstream
 * stopped announcing it, and what it said last must not hold every request back for ever.
 */
function forgotten(dim: DimState, t: number): boolean {
  return dim.seenAt !== undefined && t - dim.seenAt > Math.max(FORGET_AFTER_MS, 2 * (dim.windowMs ?? 0));
}

/** A dimension whose limit and remaining count are known. */
function announced(dim: DimState): dim is DimState & { limit: number; remaining: number } {
  return dim.remaining !== undefined && dim.limit !== undefined && dim.limit > 0;
}

/** The time its quota resets, or the time to look again for a quota that names none. */
function resetOrSample(dim: DimState, t: number): number {
  const resetAt = dim.resetAt ?? (dim.windowMs !== undefined ? t + dim.windowMs : undefined);
  return resetAt === undefined ? t + REFILL_SAMPLE_MS : resetAt;
}

/**
 * A class with a `quotaFloor` (SPEC §13) does not go while, in any
 * dimension, less than that share of the announced quota is left (less what
 * is in flight): it waits for that dimension's reset, without taking a slot.
 * Undefined when the floor does not hold it back.
 */
function belowFloor(
  state: PacerState,
  t: number,
  inFlight: Load,
  floor: number | null,
  random: () => number,
): number | undefined {
  if (floor === null || floor <= 0) return undefined;
  let until: number | undefined;
  for (const [name, dim] of dimensionsOf(state)) {
    if (!announced(dim) || forgotten(dim, t)) continue;
    if (dim.resetAt !== undefined && dim.resetAt <= t) continue; // the window is over: refilled
    if (dim.remaining - unseenIn(inFlight, name, dim.coveredAt) >= floor * dim.limit) continue;
    until = Math.max(until ?? 0, resetOrSample(dim, t));
  }
  return until === undefined ? undefined : until + jitter(random) - t;
}

/**
 * How long a request costing `cost` must wait in one dimension (`name`)
 * before it may go, in ms; reserves its slot there. `load` is what the
 * others have in flight (all replicas), of which what the remaining does
 * not count yet is taken off it; `ticket`: its place among the reset's waiters,
 * when it asks again. `refillRate`: the requests dimension's measured
 * refill, for quotas that name no reset.
 */
function reserveIn(
  dim: DimState,
  t: number,
  load: Load,
  name: string,
  cost: number,
  config: PacingConfig,
  random: () => number,
  ticket: number | null,
  refillRate: number | undefined,
): number | Waiter | null {
  if (!announced(dim) || forgotten(dim, t)) return null;
  // A request that costs nothing here (an app's `header:` cost of 0) takes no room in it.
  if (cost <= 0) return 0;
  if (dim.resetAt !== undefined && dim.resetAt <= t) {
    // The window the quota described is over: assume it refilled, and a window as long as the longest seen.
    // What was sent before the reset was charged to the window that ended.
    dim.coveredAt = dim.resetAt;
    dim.remaining = dim.limit;
    dim.resetAt = dim.windowMs !== undefined ? t + dim.windowMs : undefined;
    dim.resetAssumed = true;
    nextWindow(dim, config);
  }
  // A waiter whose reset came: its share of the window was kept for it (it counts in flight).
  if (ticket !== null && gave(dim, ticket) && ticket + cost <= dim.queueHead!) return 0;
  // What went and the remaining does not count yet is spent; what waits for a slot is ahead of this request.
  const { sent, queued } = splitIn(load, name, dim.coveredAt);
  const limit = dim.limit;
  // Beyond the first unit, the room the request's own cost takes (0 for a request costing 1).
  const spare = cost - 1;
  const effective = dim.remaining - sent - config.reserve * limit;
  const ahead = load.sent ? queued : 0;
  if ((dim.remaining - spare) / limit > config.engageBelow && effective - ahead - spare > 0) return 0;
  // The slowest release, minRate requests per second, in the dimension's unit.
  const minRate = config.minRate * cost;
  let rate: number;
  if (dim.windowMs !== undefined) {
    // A quota that resets.
    const resetAt = dim.resetAt ?? t + dim.windowMs;
    // Not enough left in this window for its cost and what waits ahead of it: wait for the reset.
    if (effective - ahead - spare <= 0) return resetWaiter(dim, t, cost, config, random, resetAt, ticket);
    rate = Math.max(minRate, effective / Math.max(0.001, (resetAt - t) / 1000));
  } else if (refillRate !== undefined) {
    // No reset announced: release at the measured refill rate, half of it once nothing is left.
    rate = Math.max(minRate, effective - spare > 0 ? refillRate : refillRate / 2);
  } else if (effective - spare > 0) {
    // Not measured yet: spend what is left over a second.
    rate = Math.max(minRate, effective);
  } else {
    // Nothing left and no measurement yet: wait for one (a sample period), without queueing behind a guessed rate.
    return REFILL_SAMPLE_MS + jitter(random);
  }
  rate /= splitAmong(config);
  // Slots reserved at an older, lower rate (or by requests that never went) do not hold back the queue: at the
  // current rate, at most what waits is ahead of this one.
  const slot = Math.max(t, Math.min(dim.nextSlot, t + ((queued + cost) * 1000) / rate));
  // A slot past the reset is a place among the reset's waiters: the next window's share, counted.
  if (dim.resetAt !== undefined && dim.windowMs !== undefined && slot > dim.resetAt)
    return resetWaiter(dim, t, cost, config, random, dim.resetAt, ticket);
  dim.nextSlot = slot + (cost * 1000) / rate;
  return slot - t;
}

/** The AIMD rate's slot, when no dimension was announced and a 429 set one. */
function aimdSlot(state: PacerState, t: number, inFlight: number, config: PacingConfig): number {
  if (t - state.lastIncrease >= config.aimd.increaseEvery) {
    state.aimdRate! += config.aimd.increaseBy;
    state.lastIncrease = t;
  }
  const rate = state.aimdRate! / splitAmong(config);
  const slot = Math.max(t, Math.min(state.nextSlot, t + ((inFlight + 1) * 1000) / rate));
  state.nextSlot = slot + 1000 / rate;
  return slot - t;
}

/** A request's place among each dimension's reset waiters, by dimension. */
export type Tickets = Readonly<Record<string, number>>;

interface Reserved {
  readonly wait: number;
  readonly askAgainIn: number | null;
  readonly tickets: Tickets | null;
}

/**
 * How long a request must wait before it may go, in ms: the latest time
 * any of its dimensions allows; reserves its slot in each. `inFlight`
 * counts the others (all replicas); `tickets`: its places among the
 * resets' waiters, when it asks again.
 */
function reserve(
  state: PacerState,
  t: number,
  inFlight: Load,
  costs: Costs,
  config: PacingConfig,
  random: () => number,
  tickets: Tickets | null,
): Reserved {
  if (state.pausedUntil > t) {
    const at = state.pausedUntil + jitter(random);
    // A reset's waiter keeps its place: it asks again when the pause ends.
    if (tickets !== null) return { wait: at - t, askAgainIn: at - t, tickets };
    state.nextSlot = Math.max(state.nextSlot, at);
    return { wait: at - t, askAgainIn: null, tickets };
  }
  let wait = 0;
  /** The latest slot a dimension gave outright (not as a reset's waiter). */
  let slotWait = 0;
  let askAgainIn: number | null = null;
  let own: Record<string, number> | null = null;
  let anyAnnounced = false;
  for (const [name, dim] of dimensionsOf(state)) {
    const ticket = tickets !== null && Object.hasOwn(tickets, name) ? tickets[name]! : null;
    const refill = name === 'requests' ? state.refillRate : undefined;
    const found = reserveIn(dim, t, inFlight, name, costIn(costs, name), config, random, ticket, refill);
    if (found === null) continue;
    anyAnnounced = true;
    if (typeof found === 'number') {
      wait = Math.max(wait, found);
      slotWait = Math.max(slotWait, found);
      continue;
    }
    (own ??= {})[name] = found.ticket;
    wait = Math.max(wait, found.wait);
    if (found.askAgainIn !== null) askAgainIn = Math.max(askAgainIn ?? 0, found.askAgainIn);
  }
  if (!anyAnnounced && state.aimdRate !== null) wait = aimdSlot(state, t, inFlight.requests, config);
  // Asking again re-reserves in every dimension: not before the slots the others gave have come.
  if (askAgainIn !== null) askAgainIn = Math.max(askAgainIn, slotWait);
  return { wait, askAgainIn, tickets: own };
}

/**
 * What a request was told: `wait` (ms) for its slot; or, without a slot, to ask again in `askAgainIn` ms
 * (`floor`: held by its class's quota floor). `tooBig`: its cost in a dimension exceeds the dimension's whole
 * window (less the reserve): it can never be sent (SPEC §15).
 */
export interface Reservation {
  readonly wait: number;
  readonly floor: boolean;
  readonly askAgainIn: number | null;
  /** The request's places among the resets' waiters, to ask again with. */
  readonly ticket: Tickets | null;
  readonly tooBig?: { readonly dimension: string; readonly cost: number; readonly limit: number };
}

/** The dimension a request's cost can never fit in, if any: its cost above the window's limit less the reserve. */
function neverFits(state: PacerState, t: number, costs: Costs, config: PacingConfig): Reservation['tooBig'] {
  for (const [name, dim] of dimensionsOf(state)) {
    if (!announced(dim) || forgotten(dim, t)) continue;
    const cost = costIn(costs, name);
    const limit = Math.max(1, Math.floor(dim.limit * (1 - config.reserve)));
    if (cost > limit) return { dimension: name, cost, limit };
  }
  return undefined;
}

/** The release clock and queue of every dimension, to put back. */
function savedClocks(state: PacerState): [string, DimState, Pick<DimState, 'nextSlot' | 'queueTail' | 'queueBase'>][] {
  const saved: [string, DimState, Pick<DimState, 'nextSlot' | 'queueTail' | 'queueBase'>][] = [];
  for (const [name, dim] of dimensionsOf(state)) {
    const { nextSlot, queueTail, queueBase } = dim;
    saved.push([name, dim, { nextSlot, queueTail, queueBase }]);
  }
  return saved;
}

/**
 * `reserve`, but a wait beyond `limitMs` (maxWait, or what is left of the
 * request's deadline) is refused without taking a slot or a place among the
 * reset's waiters: refused requests must not push later ones back. A cost
 * that never fits is refused the same way, before anything is taken.
 */
export function reserveWithin(
  state: PacerState,
  t: number,
  inFlight: Load,
  config: PacingConfig,
  random: () => number,
  limitMs: number,
  floor: number | null = null,
  tickets: Tickets | null = null,
  costs: Costs = NO_COSTS,
): Reservation {
  const tooBig = neverFits(state, t, costs, config);
  if (tooBig) return { wait: 0, floor: false, askAgainIn: null, ticket: null, tooBig };
  // Held below its class's floor: no slot is taken; the request asks again after the wait.
  const held = belowFloor(state, t, inFlight, floor, random);
  if (held !== undefined) return { wait: held, floor: true, askAgainIn: held, ticket: tickets };
  const saved = savedClocks(state);
  const reserved = reserve(state, t, inFlight, costs, config, random, tickets);
  if (reserved.wait > limitMs) {
    // Tickets just given are taken back (one given before stays: the queue then counts one too many, which only
    // errs on the safe side).
    for (const [name, dim, before] of saved) {
      dim.nextSlot = before.nextSlot;
      const given = reserved.tickets?.[name];
      if (given === undefined || given === tickets?.[name]) continue;
      if (before.queueBase === undefined)
        Object.assign(dim, { queueTail: undefined, queueHead: undefined, queueBase: undefined });
      else dim.queueTail = before.queueTail;
    }
  }
  return { wait: reserved.wait, floor: false, askAgainIn: reserved.askAgainIn, ticket: reserved.tickets };
}

/** A request is released: counters for AIMD's starting point and the refill guard. */
export function released(state: PacerState, t: number): void {
  const second = Math.floor(t / 1000);
  if (second !== state.recent.second)
    state.recent = { second, count: 0, previous: state.recent.second === second - 1 ? state.recent.count : 0 };
  state.recent.count += 1;
}
