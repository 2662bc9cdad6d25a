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
}

/** The load of `dimension`. */
export function loadIn(load: Load, dimension: string): number {
  if (dimension === 'requests' || !Object.hasOwn(load.costs, dimension)) return load.requests;
  return load.costs[dimension]!;
}

/** What is in flight on a pacer besides one request of `costs`. */
export function othersThan(load: Load, costs: Readonly<Record<string, number>>): Load {
  return addLoad(addLoad({ requests: 0, costs: {} }, load), { requests: 1, costs }, -1);
}

export const NO_LOAD: Load = Object.freeze({ requests: 0, costs: Object.freeze({}) as Record<string, number> });

/** `into` plus `sign` x `load`, in place. */
export function addLoad(into: Load, load: Load, sign = 1): Load {
  into.requests += sign * load.requests;
  for (const [name, cost] of Object.entries(load.costs))
    into.costs[name] = (Object.hasOwn(into.costs, name) ? into.costs[name]! : 0) + sign * cost;
  return into;
}
