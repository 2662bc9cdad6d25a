/**
 * SPEC §13 in a pacer: a waiting request of a higher class is released
 * before any of a lower class, even one already asleep towards its slot.
 * With priority classes the request that sleeps towards its slot holds the
 * pacer's turn (lib/turns.ts); one of a higher class that comes meanwhile
 * does not wait for the turn: it reserves its own slot, and when the
 * sleeper's comes first the two exchange them: the newcomer takes the
 * earlier slot (and its places among a reset's waiters), the sleeper is
 * woken and sleeps on towards the later one. Nothing is reserved twice or
 * lost: the pacer's clock holds the same releases, in the order of class.
 * A sleeper is never pushed past its own deadline (maxWait, total), and
 * only requests that cost the same exchange (a slot is sized for its cost).
 */
import { Cancellation, type Signal } from '../../lib/signal.js';
import type { Tickets } from './quota.js';
import type { Costs } from '../cost.js';

/**
 * When a sleeper wakes (on the pacer's clock), when it expects to go (later, when it asks again then), and its
 * places among reset waiters.
 */
export interface Plan {
  readonly at: number;
  readonly goAt: number;
  readonly ask: boolean;
  readonly ticket: Tickets | null;
}

interface Sleeper {
  readonly rank: number;
  /** What it costs per dimension: a slot is only exchanged between requests that cost the same. */
  readonly costs: Costs;
  /** When the starvation guard (`priorities.promoteAfter`) makes it one of the highest class; null: never. */
  readonly promoteAt: number | null;
  /** It may not wake later than this. */
  readonly limitAt: number;
  plan: Plan;
  /** Ends its current sleep: its plan changed. */
  wake?: () => void;
}

/** The reason a sleeper's sleep ends early: its slot went to a higher class. */
const EXCHANGED = Symbol('exchanged');

function sameCosts(a: Costs, b: Costs): boolean {
  const names = Object.keys(a);
  return names.length === Object.keys(b).length && names.every((name) => Object.hasOwn(b, name) && a[name] === b[name]);
}

/** Its class at `now`: the highest once the starvation guard promoted it (SPEC §13). */
function rankOf(sleeper: Sleeper, now: number): number {
  return sleeper.promoteAt !== null && now >= sleeper.promoteAt ? 0 : sleeper.rank;
}

export class Sleepers {
  /** Per pacer id, the turn's holder asleep towards its slot. */
  private readonly byPacer = new Map<string, Sleeper>();

  /**
   * The turn's holder on `id` is of a lower class than `rank` (0 the highest) at `now` (a sleeper the starvation
   * guard promoted counts as the highest): a newcomer need not wait for it.
   */
  lowerThan(id: string, rank: number, now: number): boolean {
    const sleeper = this.byPacer.get(id);
    return sleeper !== undefined && rankOf(sleeper, now) > rank;
  }

  /**
   * A newcomer of class `rank` with its own `plan`: the plan it follows. The
   * holder's, when the holder is of a lower class and goes earlier (and can
   * wait until the newcomer's time); the holder then follows the
   * newcomer's.
   */
  exchange(id: string, rank: number, costs: Costs, plan: Plan, now: number): Plan {
    const sleeper = this.byPacer.get(id);
    if (!sleeper || rankOf(sleeper, now) <= rank || sleeper.plan.goAt >= plan.goAt || plan.goAt > sleeper.limitAt)
      return plan;
    // A slot and its places among reset waiters are sized for what the sleeper costs.
    if (!sameCosts(sleeper.costs, costs)) return plan;
    const theirs = sleeper.plan;
    // Never awake before the slot it gave up (a plan that asks again would ask ahead of the newcomer).
    sleeper.plan = { ...plan, at: Math.max(plan.at, theirs.at + 1) };
    sleeper.wake?.();
    return theirs;
  }

  /**
   * Sleeps as the turn's holder on `id` until its plan's time, following
   * whatever plan an exchange hands it meanwhile; resolves with the plan it
   * woke on. Rejects with `signal`'s reason when the request goes away.
   */
  async sleep(
    id: string,
    sleeper: Omit<Sleeper, 'wake'>,
    signal: Signal,
    deps: { readonly now: () => number; readonly sleep: (ms: number, signal: Signal) => Promise<void> },
  ): Promise<Plan> {
    const own: Sleeper = { ...sleeper };
    this.byPacer.set(id, own);
    try {
      for (;;) {
        const interrupt = Cancellation.linked(signal);
        own.wake = () => interrupt.abort(EXCHANGED);
        try {
          await deps.sleep(Math.max(0, own.plan.at - deps.now()), interrupt);
          return own.plan;
        } catch (error) {
          if (interrupt.reason !== EXCHANGED || signal.aborted) throw error;
        } finally {
          own.wake = undefined;
          interrupt.release();
        }
      }
    } finally {
      if (this.byPacer.get(id) === own) this.byPacer.delete(id);
    }
  }
}
