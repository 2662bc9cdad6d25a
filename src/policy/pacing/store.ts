/**
 * Where pacer state lives. `local`: a bounded map in this process, on the
 * runtime's clock. `shared` (`pacing.shared: true`): one JSON value per
 * pacer in Redis, on Redis's clock (TIME), updated with a compare-and-set
 * script so that replicas reserve release slots from one timeline instead
 * of each assuming the whole quota.
 *
 * The state function runs here, in the process; Redis only stores and
 * compares. Updates of one pacer are queued within the process, so a
 * conflicting write can only come from another replica; it reruns the
 * function on the newer state. Requests in flight are published per replica
 * (this replica's count, rewritten on every update, so a count left behind
 * by a failed write heals at the next one); counts of a replica silent for
 * two minutes are dropped (it stopped or lost its connection).
 */
import { BoundedMap } from '../../lib/bounded-map.js';
import { randomUUID } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { addLoad, loadIn, type Load } from './load.js';

export { addLoad, loadIn, NO_LOAD, othersThan, unseenIn, type Load, type Sent } from './load.js';

/** Live pacers per upstream: least recently used dropped first (those with requests in flight kept). */
export const MAX_PACERS = 1000;

/** Counts of a replica that has not written for this long are dropped (ms). */
const REPLICA_SILENT_MS = 120_000;
/** A shared pacer's key expires after this long without a write (ms). */
const SHARED_TTL_MS = 3_600_000;
/** Compare-and-set rounds before a contended update gives up (and falls back per redis.onError). */
const MAX_ROUNDS = 25;

/**
 * One dimension of a provider's quota (SPEC §15): what was announced of it,
 * and its own release clock and queue of waiters for its reset. The
 * requests dimension lives in the PacerState itself; the others (tokens,
 * points, an IETF policy) in its `dims`.
 */
export interface DimState {
  limit?: number;
  remaining?: number;
  /** When the quota resets, on the store's clock (ms), if announced. */
  resetAt?: number;
  /** Next free release slot on the store's clock. */
  nextSlot: number;
  /** The quota's window (ms): the longest time to a reset announced; unset for quotas that name no reset. */
  windowMs?: number;
  /** `resetAt` was assumed at a refill (the window's length after the last reset), not announced yet. */
  resetAssumed?: boolean;
  /** A dimension besides requests: when an answer last announced it (one no answer names any more stops pacing). */
  seenAt?: number;
  /**
   * Local pacing: requests sent before this time (the pacer's clock) are counted in `remaining` (the answer that
   * set it was to a request sent then; a provider charges at admission), or were charged to the window before.
   */
  coveredAt?: number;
  /**
   * Tickets of the requests that waited for a reset, in the order they came,
   * in the dimension's unit (a request takes as many as it costs): the first
   * ticket of the coming reset's share, and the next ticket to give. Each
   * reset moves the head on by one window's share.
   */
  queueHead?: number;
  queueTail?: number;
  /**
   * The first ticket this state gave, drawn at random: a ticket from
   * elsewhere (a replica's local fallback while Redis failed, then Redis
   * again) falls outside [queueBase, queueTail) and is replaced, instead
   * of counting as a place far ahead or behind.
   */
  queueBase?: number;
}

export interface PacerState extends DimState {
  pausedUntil: number;
  /** AIMD rate (per second) when the provider announces no quota; null: unlimited. */
  aimdRate: number | null;
  lastIncrease: number;
  /** Requests released in the current second, for AIMD's starting point. */
  recent: { second: number; count: number; previous: number };
  scope: string;
  /** Responses observed so far: with `remaining`, it measures a refill nobody announces. */
  answered: number;
  /** The last sample for the refill estimate of quotas that name no reset (Shopify, Salesforce). */
  sample?: { at: number; remaining: number; answered: number };
  /** Learned refill rate (per second) of such quotas. */
  refillRate?: number;
  /** The dimensions besides requests that answers announced (at most MAX_DIMENSIONS). */
  dims?: Record<string, DimState>;
}

/** Every dimension of a pacer that was announced or holds a queue: requests (the state itself) first. */
export function* dimensionsOf(state: PacerState): Generator<[string, DimState]> {
  yield ['requests', state];
  if (state.dims) for (const name of Object.keys(state.dims)) yield [name, state.dims[name]!];
}

export function freshState(t: number): PacerState {
  return {
    pausedUntil: 0,
    nextSlot: t,
    aimdRate: null,
    lastIncrease: t,
    recent: { second: Math.floor(t / 1000), count: 0, previous: 0 },
    scope: '',
    answered: 0,
  };
}

/** `fn` sees the state, the store's clock (ms) and what is in flight on this pacer (all replicas). */
export type StateFn<T> = (state: PacerState, t: number, inFlight: Load) => T;

export interface PacerStore {
  update<T>(id: string, fn: StateFn<T>): T | Promise<T>;
  /** The last known state of each pacer, for /status. */
  entries(): Iterable<[string, PacerState, number]>;
  close(): void;
}

/** This process's load per pacer id. */
export type InFlight = (id: string) => Load;

export function localStore(now: () => number, inFlight: InFlight): PacerStore {
  // A pacer with requests in flight is never evicted.
  const states = new BoundedMap<string, PacerState>({ max: MAX_PACERS, busy: (_, id) => inFlight(id).requests > 0 });
  return {
    update(id, fn) {
      const state = states.getOrCreate(id, () => freshState(now()));
      return fn(state, now(), inFlight(id));
    },
    *entries() {
      const t = now();
      for (const [id, state] of states) yield [id, state, t];
    },
    close() {
      states.clear();
    },
  };
}

interface SharedValue {
  s: PacerState;
  /** Requests in flight per replica: [count, last write on Redis's clock, their cost per dimension if any]. */
  f: Record<string, [number, number, Record<string, number>?]>;
}

const READ = `return {redis.call('GET', KEYS[1]) or '', redis.call('TIME')}`;
const CAS = `local current = redis.call('GET', KEYS[1]) or ''
if current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return {1}
end
return {0, current, redis.call('TIME')}`;

type Reply = [string, [string, string]];

/** `now`: this process's monotonic clock, to age the last states read (for /status). */
export function sharedStore(
  client: Redis | Cluster,
  prefix: string,
  inFlight: InFlight,
  now: () => number,
): PacerStore {
  const replica = randomUUID();
  const seen = new BoundedMap<string, [PacerState, number, number]>({ max: MAX_PACERS });
  const clock = (time: [string, string]) => Number(time[0]) * 1000 + Math.floor(Number(time[1]) / 1000);
  /** Updates of one pacer from this process, one at a time: compare-and-set then only contends across replicas. */
  const queues = new Map<string, Promise<unknown>>();
  const run = async <T>(id: string, fn: StateFn<T>): Promise<T> => {
    const key = `${prefix}${id}`;
    let [raw, time] = (await client.eval(READ, 1, key)) as Reply;
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const t = clock(time);
      const value: SharedValue = raw ? (JSON.parse(raw) as SharedValue) : { s: freshState(t), f: {} };
      const load: Load = addLoad({ requests: 0, costs: {} }, inFlight(id));
      for (const [who, [count, at, costs]] of Object.entries(value.f)) {
        if (who === replica) continue;
        if (t - at > REPLICA_SILENT_MS || count <= 0) delete value.f[who];
        else addLoad(load, { requests: count, costs: costs ?? {} });
      }
      const result = fn(value.s, t, load);
      // Read after `fn`: an update that ends a request's count publishes the count without it.
      const mine = inFlight(id);
      if (mine.requests > 0)
        value.f[replica] = Object.keys(mine.costs).length > 0 ? [mine.requests, t, mine.costs] : [mine.requests, t];
      else delete value.f[replica];
      const next = JSON.stringify(value);
      const reply = (await client.eval(CAS, 1, key, raw, next, SHARED_TTL_MS)) as [number, string?, [string, string]?];
      if (reply[0] === 1) {
        seen.set(id, [value.s, t, now()]);
        return result;
      }
      raw = reply[1]!;
      time = reply[2]!;
    }
    throw new Error(`pacer state for ${id} stayed contended over ${MAX_ROUNDS} rounds`);
  };
  return {
    update(id, fn) {
      const previous = queues.get(id) ?? Promise.resolve();
      const next = previous.then(
        () => run(id, fn),
        () => run(id, fn),
      );
      const settled = next.catch(() => undefined);
      queues.set(id, settled);
      void settled.then(() => {
        if (queues.get(id) === settled) queues.delete(id);
      });
      return next;
    },
    *entries() {
      // The state's clock, moved on by the time since it was written.
      for (const [id, [state, t, at]] of seen) yield [id, state, t + (now() - at)];
    },
    close() {
      seen.clear();
    },
  };
}

export interface PacingSnapshot {
  readonly upstream: string;
  readonly key: string;
  readonly scope: string;
  readonly limit: number | null;
  readonly remaining: number | null;
  readonly resetSeconds: number | null;
  /** The rate requests are released at below engageBelow (learned refill or AIMD), if known. */
  readonly ratePerSecond: number | null;
  readonly inFlight: number;
  readonly shared: boolean;
  /** With priority classes: this process's requests waiting for their slot or turn, by rank (SPEC §13). */
  readonly waitingByRank: readonly number[];
  /** Per dimension of the quota (SPEC §15): its limit, remaining as announced, reset, and the cost in flight. */
  readonly dimensions: Readonly<Record<string, DimensionSnapshot>>;
}

export interface DimensionSnapshot {
  readonly limit: number | null;
  readonly remaining: number | null;
  readonly resetSeconds: number | null;
  readonly inFlight: number;
}

/** Every pacer of `stores` as /status and the metrics show it; `shared`: the store kept in Redis, if any. */
export function snapshotOf(
  upstream: string,
  stores: readonly PacerStore[],
  shared: PacerStore | null,
  inFlight: InFlight,
  waiting: (id: string) => readonly number[],
): PacingSnapshot[] {
  const out: PacingSnapshot[] = [];
  for (const store of stores) {
    for (const [id, state, t] of store.entries()) {
      const load = inFlight(id);
      const dimensions: Record<string, DimensionSnapshot> = {};
      for (const [name, dim] of dimensionsOf(state)) {
        dimensions[name] = {
          limit: dim.limit ?? null,
          remaining: dim.remaining ?? null,
          resetSeconds: dim.resetAt !== undefined ? Math.max(0, (dim.resetAt - t) / 1000) : null,
          inFlight: loadIn(load, name),
        };
      }
      out.push({
        upstream,
        key: id.slice(id.indexOf(':') + 1),
        scope: state.scope,
        ...dimensions.requests!,
        ratePerSecond: state.aimdRate ?? state.refillRate ?? null,
        shared: store === shared,
        waitingByRank: waiting(id),
        // SPEC §15: each dimension the pacer reads (`limit`, `remaining`, ... describe requests too).
        dimensions,
      });
    }
  }
  return out;
}
