/**
 * The Redis side of shared rate limits (shared-limiter.ts): the Lua script
 * that decides (token bucket and slot leases, one round trip, on Redis's
 * clock), the keys, and the leases this replica holds, renewed and given
 * back. One per Redis connection (shared-limits.ts).
 */
import { randomBytes } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';

/** A slot's lease lives this long without renewal (ms). */
export const LEASE_MS = 30_000;
/** Most released leases one decision carries to Redis. */
const MAX_CARRIED = 64;

/**
 * KEYS: tokens, slots. ARGV: rate (tokens/s, 0 = none), burst, maxConcurrent
 * (0 = none), lease id, lease ms, cost (tokens the request takes, SPEC §15),
 * then leases given back since the last call (removed first: a release
 * rides on the next decision instead of costing a command of its own).
 * Returns {allowed 0|1, wait ms until the bucket holds the cost (-1: a slot), whole tokens left}.
 */
const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local max = tonumber(ARGV[3])
local cost = tonumber(ARGV[6])
if #ARGV > 6 then redis.call('ZREM', KEYS[2], unpack(ARGV, 7)) end
if max > 0 and redis.call('ZCARD', KEYS[2]) >= max then
  -- Full: drop the leases of replicas that stopped renewing, then look again.
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= max then return {0, -1, -1} end
end
local tokens = -1
if rate > 0 then
  local state = redis.call('HMGET', KEYS[1], 't', 'ts')
  tokens = tonumber(state[1])
  local ts = tonumber(state[2])
  if tokens == nil or ts == nil then tokens = burst; ts = now end
  if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate / 1000) end
  if tokens < cost then return {0, math.ceil((cost - tokens) * 1000 / rate), math.max(0, math.floor(tokens))} end
  tokens = tokens - cost
  redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', now)
  redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
end
if max > 0 then
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[4])
  redis.call('PEXPIRE', KEYS[2], 2 * tonumber(ARGV[5]))
end
return {1, 0, math.floor(tokens)}
`;

/**
 * KEYS: tokens. ARGV: rate, burst, delta: a request's charge changed by `delta` once settled from its usage
 * (SPEC §15); the bucket may go below zero, by one burst at most. Returns whole tokens left.
 */
const SETTLE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then tokens = burst; ts = now end
if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate / 1000) end
tokens = math.max(-burst, math.min(burst, tokens - tonumber(ARGV[3])))
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
return math.floor(tokens)
`;

/** KEYS: slots. ARGV: lease ms, then lease ids: (re)adds them with a fresh expiry. */
const RENEW = `
local t = redis.call('TIME')
local expiry = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], expiry, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[1]))
return #ARGV - 1
`;

type Client = Redis | Cluster;
interface Scripted {
  bwLimitAcquire(
    tokens: string,
    slots: string,
    rate: number,
    burst: number,
    max: number,
    lease: string,
    leaseMs: number,
    cost: number,
    ...released: string[]
  ): Promise<[number, number, number]>;
  bwLimitSettle(tokens: string, rate: number, burst: number, delta: number): Promise<number>;
  bwLimitRenew(slots: string, leaseMs: number, ...leases: string[]): Promise<number>;
}

/** The Redis keys of one limiter (see the header). */
export function sharedKeys(route: string, key: string): { tokens: string; slots: string } {
  const tag = `${route.replace(/[%{}]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)}:${Buffer.from(key).toString('base64url')}`;
  return { tokens: `breakwater:rl:{${tag}}:tokens`, slots: `breakwater:rl:{${tag}}:slots` };
}

/** One decision's answer. */
export interface Decision {
  readonly allowed: boolean;
  /** ms until the missing token is due; -1 when a slot is missing; 0 when allowed. */
  readonly waitMs: number;
  /** Whole tokens left (0 when refused for a token, -1 without a token bucket or when refused for a slot). */
  readonly tokens: number;
}

/** The per-connection part: the scripts and the leases this replica holds. */
export interface SharedBuckets {
  decide(
    keys: { tokens: string; slots: string },
    rate: number | null,
    burst: number,
    maxConcurrent: number | null,
    lease: string,
    cost?: number,
  ): Promise<Decision>;
  /** Changes a request's charge by `delta` (SPEC §15 `settle: usage`). */
  settle(tokens: string, rate: number, burst: number, delta: number): Promise<void>;
  /** A new lease id, unique across replicas. */
  leaseId(): string;
  /** Frees a held slot (best effort: an unreachable Redis lets it expire). */
  release(slots: string, lease: string): void;
  close(): void;
}

export function createSharedBuckets(client: Client): SharedBuckets {
  client.defineCommand('bwLimitAcquire', { numberOfKeys: 2, lua: ACQUIRE });
  client.defineCommand('bwLimitRenew', { numberOfKeys: 1, lua: RENEW });
  client.defineCommand('bwLimitSettle', { numberOfKeys: 1, lua: SETTLE });
  const scripted = client as unknown as Scripted;
  const replica = randomBytes(6).toString('base64url');
  let counter = 0;
  /** Leases held here, per slots key: renewed every LEASE_MS / 3. */
  const held = new Map<string, Set<string>>();
  /**
   * Slots given back this tick, per slots key: carried by the next decision on that key, or one ZREM for all of
   * them at the end of the tick.
   */
  const releasing = new Map<string, string[]>();
  const flushReleases = () => {
    for (const [slots, leases] of releasing) void client.zrem(slots, ...leases).catch(() => {});
    releasing.clear();
  };
  const renew = setInterval(() => {
    for (const [slots, leases] of held) void scripted.bwLimitRenew(slots, LEASE_MS, ...leases).catch(() => {});
  }, LEASE_MS / 3);
  renew.unref();
  return {
    async decide(keys, rate, burst, maxConcurrent, lease, cost = 1) {
      // At most MAX_CARRIED (Lua's unpack has a stack limit); more go out with the tick's ZREM.
      let released = releasing.get(keys.slots);
      if (released && released.length <= MAX_CARRIED) releasing.delete(keys.slots);
      else released = undefined;
      const [allowed, waitMs, tokens] = await scripted.bwLimitAcquire(
        keys.tokens,
        keys.slots,
        rate ?? 0,
        burst,
        maxConcurrent ?? 0,
        lease,
        LEASE_MS,
        cost,
        ...(released ?? []),
      );
      if (allowed === 1 && maxConcurrent !== null) {
        let leases = held.get(keys.slots);
        if (!leases) held.set(keys.slots, (leases = new Set()));
        leases.add(lease);
      }
      return { allowed: allowed === 1, waitMs: Number(waitMs), tokens: Number(tokens) };
    },
    async settle(tokens, rate, burst, delta) {
      await scripted.bwLimitSettle(tokens, rate, burst, delta);
    },
    leaseId: () => `${replica}.${(counter++).toString(36)}`,
    release(slots, lease) {
      const leases = held.get(slots);
      if (!leases?.delete(lease)) return;
      if (leases.size === 0) held.delete(slots);
      const batch = releasing.get(slots);
      if (batch) batch.push(lease);
      else {
        if (releasing.size === 0) setImmediate(flushReleases);
        releasing.set(slots, [lease]);
      }
    },
    close() {
      clearInterval(renew);
      flushReleases();
      held.clear();
    },
  };
}
