/**
 * Priority classes (SPEC §13): which class a request is handled in. Classes
 * are ranked from 0 (the highest) in the order the config lists them;
 * wherever requests wait, a lower rank goes first (lib/wait-queue.ts).
 *
 * A request's class is its route's `priority` if set (the header may name a
 * lower class, never a higher one), else the class the header names, else
 * the default. An unknown name in the header is ignored. Without a
 * `priorities` section every request is rank 0 and nothing changes. A
 * class is also a place in a wait queue (lib/wait-queue.ts `Place`): its
 * rank and the starvation guard's `promoteAfterMs`.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { PrioritiesConfig } from '../config/types.js';

/** A request's class: its rank (0 highest) and name ('' without priorities). */
export interface PriorityClass {
  readonly rank: number;
  readonly name: string;
  /** The share of an announced quota a pacer keeps from this class (0..1), or null. */
  readonly quotaFloor: number | null;
  /**
   * The starvation guard (`priorities.promoteAfter`, the same for every class): after this long waiting,
   * released as the highest class; null: off.
   */
  readonly promoteAfterMs: number | null;
}

export interface PriorityClasses {
  /** The request header that names a class (lower case); removed before forwarding. */
  readonly header: string;
  readonly classes: readonly PriorityClass[];
  /** `quotaFloor` per rank (0..1, or null). */
  readonly floors: readonly (number | null)[];
  /** The classifier of one route: its `priority` (or null) fixed. */
  forRoute(priority: string | null): (headers: IncomingHttpHeaders) => PriorityClass;
}

export function compilePriorities(config: PrioritiesConfig | null): PriorityClasses | null {
  if (!config) return null;
  const classes = config.classes.map((entry, rank) => ({
    rank,
    name: entry.name,
    quotaFloor: entry.quotaFloor,
    promoteAfterMs: config.promoteAfterMs,
  }));
  const byName = new Map(classes.map((entry) => [entry.name, entry]));
  const fallback = byName.get(config.default) ?? classes[classes.length - 1]!;
  const named = (headers: IncomingHttpHeaders): PriorityClass | undefined => {
    const value = headers[config.header];
    return typeof value === 'string' ? byName.get(value.trim()) : undefined;
  };
  return {
    header: config.header,
    classes,
    floors: config.classes.map((entry) => entry.quotaFloor),
    forRoute(priority) {
      const own = priority === null ? undefined : byName.get(priority);
      if (!own) return (headers) => named(headers) ?? fallback;
      // The header may only lower the route's class.
      return (headers) => {
        const asked = named(headers);
        return asked && asked.rank > own.rank ? asked : own;
      };
    },
  };
}

/** Counts by rank (holes read as zero) as an object by class name, every class listed, highest first. */
export function countsByClass(
  classes: readonly { readonly name: string }[],
  byRank: readonly number[],
): Record<string, number> {
  return Object.fromEntries(classes.map((entry, rank) => [entry.name, byRank[rank] ?? 0]));
}
