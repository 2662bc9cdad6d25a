/**
 * What is in flight on a pacer, per dimension (SPEC §15): the requests
 * released or waiting for their slot and not yet answered, and what they
 * cost. Every reservation counts it against the announced quota.
 */

/**
 * What is in flight on a pacer (requests released or waiting for their slot, not yet answered), and their cost
 * per dimension besides requests: a dimension missing from `costs` costs 1 per request.
 */
export interface Load {
  requests: number;
  readonly costs: Record<string, number>;
  /**
   * Local pacing: the requests of this load already sent, with when (the pacer's clock) and what they cost. A
   * provider that charges at admission already counts one sent before the answer that set a dimension's
   * remaining (its `coveredAt`): it is not taken off that remaining twice.
   */
  readonly sent?: ReadonlySet<Sent>;
}

/** A request sent upstream and not answered yet: when, and its cost per dimension. */
export interface Sent {
  readonly at: number;
  readonly costs: Readonly<Record<string, number>>;
}

/** A cost in `dimension` (requests: 1; a dimension missing from `costs`: 1). */
export function costIn(costs: Readonly<Record<string, number>>, dimension: string): number {
  return dimension === 'requests' || !Object.hasOwn(costs, dimension) ? 1 : costs[dimension]!;
}

/**
 * The load of `dimension` that its announced remaining does not count yet: all of it but what was sent before
 * `coveredAt` (when the request whose answer set that remaining was sent).
 */
export function unseenIn(load: Load, dimension: string, coveredAt: number | undefined): number {
  let unseen = loadIn(load, dimension);
  if (coveredAt === undefined || load.sent === undefined) return unseen;
  for (const sent of load.sent) if (sent.at < coveredAt) unseen -= costIn(sent.costs, dimension);
  return Math.max(0, unseen);
}

/**
 * The load of `dimension` split as a pacer spends its quota: `sent`, what went and its remaining does not count
 * yet (taken off the remaining); `queued`, what waits for a slot (ahead of a newcomer on the release clock).
 * Without send times (shared pacing), all of it is both, as before send times were kept.
 */
export function splitIn(
  load: Load,
  dimension: string,
  coveredAt: number | undefined,
): { readonly sent: number; readonly queued: number } {
  const all = loadIn(load, dimension);
  if (load.sent === undefined) return { sent: all, queued: all };
  let sent = 0;
  let unseen = 0;
  for (const entry of load.sent) {
    const cost = costIn(entry.costs, dimension);
    sent += cost;
    if (coveredAt === undefined || entry.at >= coveredAt) unseen += cost;
  }
  return { sent: unseen, queued: Math.max(0, all - sent) };
}

/** The load of `dimension`. */
export function loadIn(load: Load, dimension: string): number {
  if (dimension === 'requests' || !Object.hasOwn(load.costs, dimension)) return load.requests;
  return load.costs[dimension]!;
}

/** What is in flight on a pacer besides one request of `costs` (not sent yet). */
export function othersThan(load: Load, costs: Readonly<Record<string, number>>): Load {
  const others = addLoad(addLoad({ requests: 0, costs: {} }, load), { requests: 1, costs }, -1);
  return load.sent ? { ...others, sent: load.sent } : others;
}

export const NO_LOAD: Load = Object.freeze({ requests: 0, costs: Object.freeze({}) as Record<string, number> });

/** `into` plus `sign` x `load`, in place. */
export function addLoad(into: Load, load: Load, sign = 1): Load {
  into.requests += sign * load.requests;
  for (const [name, cost] of Object.entries(load.costs))
    into.costs[name] = (Object.hasOwn(into.costs, name) ? into.costs[name]! : 0) + sign * cost;
  return into;
}
