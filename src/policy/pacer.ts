/**
 * Proactive pacing (SPEC §3 `upstreams.*.pacing`): slow down before the
 * provider answers 429, from the quota it announces on every response.
 *
 * One pacer per (upstream, scope, key). While the announced remaining share
 * is above `engageBelow`, nothing waits. Below it, requests are released one
 * at a time at `max(minRate, effective remaining / time to reset) /
 * replicas`, where effective remaining = remaining - requests in flight -
 * `reserve` x limit; at zero they wait for the reset (plus jitter). Quotas
 * that name no reset (Shopify's leaking bucket, Salesforce's rolling 24
 * hours) are paced at the refill rate measured from successive responses.
 * A 429 or 503 with Retry-After pauses the whole pacer. Without quota
 * headers, AIMD on 429s: the rate is cut by `aimd.decrease`, then raised by
 * `increaseBy` after each quiet `increaseEvery`. A wait longer than
 * `maxWait` is refused at once with RATE_LIMITED.
 *
 * `scope: header:<name>` names the quota a response counted against
 * (GitHub's `x-ratelimit-resource`). A request's scope is only known once
 * it was answered, so the pacer learns it per route and first path segment
 * (`/search/...` -> search) and paces later requests there by their scope's
 * pacer; a path not seen yet goes by the upstream's unscoped pacer.
 *
 * Releases are scheduled on a virtual clock (each release reserves the next
 * slot), so concurrent requests queue in order without a timer per pacer.
 * With `shared: true` that clock and the quota live in Redis (see
 * pacer-store.ts) and every replica reserves from it.
 */
import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { PacingConfig } from '../config/types.js';
import { BreakwaterError } from '../errors/breakwater-error.js';
import { readQuota } from '../errors/quota.js';
import type { Metrics } from '../observe/metrics.js';
import type { Logger } from '../observe/logger.js';
import type { Policy, PolicyDeps, RequestContext } from './context.js';
import { localStore, MAX_PACERS, sharedStore, type PacerState } from './pacer-store.js';
import { parseRetryAfter } from '../lib/retry-after.js';
import type { SharedLimits } from './shared-limits.js';

export { MAX_PACERS } from './pacer-store.js';

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
}

export interface UpstreamPacing {
  /** The policy layer for one route; `pathPrefix` finds the path segment a scope is learned by. */
  policy(route: string, pathPrefix?: string): Policy;
  snapshot(): PacingSnapshot[];
  close(): void;
}

export interface PacingDeps extends PolicyDeps {
  readonly metrics: Metrics;
  readonly logger?: Logger;
  /** The Redis connection, for `shared: true`. */
  readonly shared?: SharedLimits;
}

/** Samples for the measured refill rate are at least this far apart (ms). */
const REFILL_SAMPLE_MS = 1000;

const JITTER_MAX_MS = 150;

/** After a reset: a margin for clock skew and rounding, plus jitter so that waiters do not arrive together. */
function jitter(random: () => number): number {
  return 50 + random() * (JITTER_MAX_MS - 50);
}

/** How long a request must wait before it may go, in ms; reserves its slot. `inFlight` counts the others (all replicas). */
function reserve(state: PacerState, t: number, inFlight: number, config: PacingConfig, random: () => number): number {
  if (state.pausedUntil > t) {
    const at = state.pausedUntil + jitter(random);
    state.nextSlot = Math.max(state.nextSlot, at);
    return at - t;
  }
  let rate: number | null = null;
  const haveQuota = state.remaining !== undefined && state.limit !== undefined && state.limit > 0;
  if (haveQuota && state.resetAt !== undefined && state.resetAt <= t) {
    // The window the quota described is over: assume it refilled.
    state.remaining = state.limit;
    state.resetAt = undefined;
    state.releasedSinceRefill = 0;
    state.resetWaiters = 0;
  }
  if (haveQuota) {
    const limit = state.limit!;
    const effective = state.remaining! - inFlight - config.reserve * limit;
    if (state.remaining! / limit > config.engageBelow && effective > 0) return 0;
    const share = config.shared ? 1 : config.replicas;
    if (state.windowMs !== undefined) {
      // A quota that resets. After an assumed refill, a fresh window.
      const resetAt = state.resetAt ?? t + state.windowMs;
      if (effective <= 0) {
        // Nothing left in this window: wait for the reset. Each window's
        // quota goes to the requests that waited for it, in order; those
        // beyond it wait for the window after.
        const perWindow = Math.max(1, Math.floor((limit * (1 - config.reserve)) / share));
        const waiting = state.resetWaiters ?? 0;
        state.resetWaiters = waiting + 1;
        // A window after a reset starts with its first request, up to one jitter late: later windows are counted from there.
        const at = resetAt + Math.floor(waiting / perWindow) * (state.windowMs + JITTER_MAX_MS) + jitter(random);
        state.nextSlot = Math.max(state.nextSlot, at);
        return at - t;
      }
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
    rate /= share;
  } else if (state.aimdRate !== null) {
    if (t - state.lastIncrease >= config.aimd.increaseEvery) {
      state.aimdRate += config.aimd.increaseBy;
      state.lastIncrease = t;
    }
    rate = state.aimdRate / (config.shared ? 1 : config.replicas);
  }
  if (rate === null) return 0;
  // Slots reserved at an older, lower rate (or by requests that never went)
  // do not hold back the queue: at the current rate, at most the requests
  // in flight are ahead of this one.
  let slot = Math.max(t, Math.min(state.nextSlot, t + ((inFlight + 1) * 1000) / rate));
  // Nobody needs to wait past the reset: the next window has quota again.
  if (haveQuota && state.resetAt !== undefined && slot > state.resetAt) slot = state.resetAt + jitter(random);
  state.nextSlot = slot + 1000 / rate;
  return slot - t;
}

/**
 * `reserve`, but a wait beyond `limitMs` (maxWait, or what is left of the
 * request's deadline) is refused without taking a slot or a place among the
 * reset's waiters: refused requests must not push later ones back.
 */
function reserveWithin(state: PacerState, t: number, inFlight: number, config: PacingConfig, random: () => number, limitMs: number): number {
  const { nextSlot, resetWaiters } = state;
  const wait = reserve(state, t, inFlight, config, random);
  if (wait > limitMs) {
    state.nextSlot = nextSlot;
    state.resetWaiters = resetWaiters;
  }
  return wait;
}

/** A request is released: counters for AIMD's starting point and the refill guard. */
function released(state: PacerState, t: number): void {
  const second = Math.floor(t / 1000);
  if (second !== state.recent.second) state.recent = { second, count: 0, previous: state.recent.second === second - 1 ? state.recent.count : 0 };
  state.recent.count += 1;
  if (state.releasedSinceRefill !== null) state.releasedSinceRefill += 1;
}

interface Observed {
  /** The pacer was paused by this response (count it). */
  paused: boolean;
}

/** What a response says about the quota, read into the pacer (no side effect outside the state: a shared update may run twice). */
function observe(state: PacerState, t: number, status: number | undefined, headers: IncomingHttpHeaders, config: PacingConfig, retryAfterMaxMs: number): Observed {
  let paused = false;
  const quota = readQuota(headers, Date.now(), { dialect: config.headers, resetFormat: config.resetFormat });
  state.answered += 1;
  // After an assumed reset, a late answer from the window that just ended
  // announces a reset that is (nearly) past: it must not undo the refill
  // and make the pacer refill twice.
  const stale = state.releasedSinceRefill !== null && quota?.resetSeconds !== undefined && quota.resetSeconds * 1000 < 150;
  if (!stale && quota?.resetSeconds !== undefined && state.releasedSinceRefill !== null) state.releasedSinceRefill = null;
  if (quota && !stale && (quota.limit !== undefined || quota.remaining !== undefined)) {
    const sameWindow = state.resetAt !== undefined && state.resetAt > t && quota.remaining !== undefined && state.remaining !== undefined && quota.remaining <= state.remaining;
    state.limit = quota.limit ?? state.limit;
    state.remaining = quota.remaining ?? state.remaining;
    if (quota.resetSeconds !== undefined) {
      // Resets in whole seconds are rounded up by providers: within one
      // window, the earliest estimate seen is the closest to the truth.
      const estimate = t + quota.resetSeconds * 1000;
      state.resetAt = sameWindow ? Math.min(state.resetAt!, estimate) : estimate;
      if (!sameWindow) state.resetWaiters = 0;
      // The longest time to a reset seen is the window's length (close to it).
      state.windowMs = Math.max(state.windowMs ?? 0, quota.resetSeconds * 1000);
    } else if (quota.remaining !== undefined) {
      // No reset named: measure the refill. Between two samples the
      // provider answered (answered - sample.answered) requests, so it
      // refilled remaining - sample.remaining + those.
      const sample = state.sample;
      if (!sample) state.sample = { at: t, remaining: quota.remaining, answered: state.answered };
      else if (t - sample.at >= REFILL_SAMPLE_MS) {
        const refill = Math.max(0, ((quota.remaining - sample.remaining + state.answered - sample.answered) * 1000) / (t - sample.at));
        state.refillRate = state.refillRate === undefined ? refill : (state.refillRate + refill) / 2;
        state.sample = { at: t, remaining: quota.remaining, answered: state.answered };
      }
    }
  }
  if (status === 429 || status === 503) {
    const retryAfter = parseRetryAfter(headers['retry-after'], Date.now());
    if (retryAfter !== undefined) {
      const until = t + Math.min(retryAfter, retryAfterMaxMs);
      if (until > state.pausedUntil) {
        state.pausedUntil = until;
        paused = true;
      }
    }
    if (status === 429 && !quota) {
      // AIMD: no quota announced, so the 429 is the only signal.
      const current = state.aimdRate ?? Math.max(config.minRate, state.recent.previous || state.recent.count || 1);
      state.aimdRate = Math.max(config.minRate, current * config.aimd.decrease);
      state.lastIncrease = t;
    }
  }
  return { paused };
}

function headerValue(headers: IncomingHttpHeaders, name: string): string {
  const value = headers[name];
  return Array.isArray(value) ? (value[0] ?? '') : (value ?? '');
}

export function createUpstreamPacing(upstream: string, config: PacingConfig, retryAfterMaxMs: number, deps: PacingDeps): UpstreamPacing {
  const { now, metrics, random } = deps;
  /** This process's requests in flight (waiting for a slot included) per pacer id. */
  const inFlight = new Map<string, number>();
  const countOf = (id: string) => inFlight.get(id) ?? 0;
  const local = localStore(now, countOf);
  const shared = config.shared && deps.shared ? sharedStore(deps.shared.client, `breakwater:pacing:${upstream}:`, countOf) : null;
  /** Scope learned per route and first path segment; bounded like the pacers. */
  const scopes = new Map<string, string>();
  let warnedAt = -Infinity;

  /** Runs a state update in Redis when shared, here otherwise, or here / not at all while Redis fails (redis.onError). */
  /** `degraded`: called when a shared update is decided without Redis. */
  function update<T>(id: string, fn: (state: PacerState, t: number, inFlight: number) => T, skipped: T, degraded?: () => void): T | Promise<T> {
    // Local state: synchronous, no promise on the request path.
    return shared ? sharedUpdate(id, fn, skipped, degraded) : (local.update(id, fn) as T);
  }
  async function sharedUpdate<T>(id: string, fn: (state: PacerState, t: number, inFlight: number) => T, skipped: T, degraded?: () => void): Promise<T> {
    // redis.onError: here (local) or not at all (allow).
    const withoutRedis = () => {
      degraded?.();
      return deps.shared!.onError === 'local' ? (local.update(id, fn) as T) : skipped;
    };
    // While Redis fails, no request waits for it: decided here until the probe answers.
    if (!deps.shared!.healthy()) return withoutRedis();
    try {
      return await shared!.update(id, fn);
    } catch (error) {
      deps.shared!.reportFailure(error);
      if (Date.now() - warnedAt > 10_000) {
        warnedAt = Date.now();
        deps.logger?.warn({ upstream, err: (error as Error).message }, `shared pacing unavailable: pacing per redis.onError=${deps.shared!.onError}`);
      }
      return withoutRedis();
    }
  }

  const learn = (learnKey: string, scope: string) => {
    if (scopes.get(learnKey) === scope) return;
    scopes.delete(learnKey);
    if (scopes.size >= MAX_PACERS) scopes.delete(scopes.keys().next().value!);
    scopes.set(learnKey, scope);
  };

  return {
    policy(route, pathPrefix = '/') {
      const prefixLength = pathPrefix === '/' ? 0 : pathPrefix.length;
      return {
        async run(ctx: RequestContext, signal, next) {
          let keyPart = '';
          if (config.key) {
            // The key (a credential, often) is hashed: never kept, never logged.
            const value = ctx.clientHeaders[config.key];
            // All values, as rate-limit keys read them: two requests share a quota only when they carry the same credential.
            keyPart = createHash('sha256')
              .update(Array.isArray(value) ? value.join(',') : (value ?? ''))
              .digest('hex')
              .slice(0, 16);
          }
          let learnKey = '';
          let scope = '';
          if (config.scope) {
            const rest = ctx.path.slice(prefixLength);
            const start = rest.startsWith('/') ? 1 : 0;
            const end = rest.indexOf('/', start);
            learnKey = `${route}\u0001${rest.slice(start, end === -1 ? undefined : end)}`;
            scope = scopes.get(learnKey) ?? '';
          }
          const id = scope === '' && keyPart === '' ? ':' : `${encodeURIComponent(scope)}:${keyPart}`;
          // Counted from the reservation on (before it: concurrent requests
          // reserve while this one awaits): a request waiting for its slot
          // will spend quota as surely as one already sent.
          inFlight.set(id, countOf(id) + 1);
          let done = false;
          let published = false;
          const finish = () => {
            if (done) return;
            done = true;
            const left = countOf(id) - 1;
            if (left > 0) inFlight.set(id, left);
            else inFlight.delete(id);
          };
          try {
            // Like a rate-limit queue, a pacing wait never runs past the request's deadline.
            const deadlineLeft = ctx.deadline - now();
            const limitMs = Math.min(config.maxWait, deadlineLeft);
            // A reservation made without Redis is flagged and counted like a rate-limit decision (SPEC §9).
            const reserved = update(
              id,
              (state, t, counted) => reserveWithin(state, t, counted - 1, config, random, limitMs),
              0,
              () => {
                ctx.flags.add('RATE_LIMIT_DEGRADED');
                metrics.rateLimitDegraded.inc({ route });
              },
            );
            const wait = typeof reserved === 'number' ? reserved : await reserved;
            if (wait > limitMs) {
              const seconds = Math.max(1, Math.ceil(wait / 1000));
              const beyond = wait > config.maxWait ? 'more than pacing.maxWait' : "longer than what is left of the request's total timeout";
              throw new BreakwaterError('RATE_LIMITED', `Upstream '${upstream}' is paced: its announced quota would make this request wait ${seconds} s, ${beyond}.`, {
                retryAfterSeconds: seconds,
              });
            }
            if (wait > 0) {
              ctx.flags.add('PACED');
              metrics.pacingWait.observe({ upstream }, wait / 1000);
              await deps.sleep(wait, signal);
            }
            // The release counters live in the state; locally they are
            // bumped at once, shared ones with the response's update.
            if (!shared) local.update(id, (state, t) => released(state, t));
            const result = await next(ctx, signal);
            finish();
            const headers = result.response?.headers;
            if (headers) {
              let answeredId = id;
              if (config.scope) {
                const answeredScope = headerValue(headers, config.scope);
                if (answeredScope) {
                  learn(learnKey, answeredScope);
                  answeredId = `${encodeURIComponent(answeredScope)}:${keyPart}`;
                }
              }
              published = answeredId === id;
              const status = result.classification.status;
              const pending = update(
                answeredId,
                (state, t) => {
                  if (shared) released(state, t);
                  if (config.scope) state.scope = headerValue(headers, config.scope);
                  return observe(state, t, status, headers, config, retryAfterMaxMs);
                },
                undefined,
              );
              const seen = pending instanceof Promise ? await pending : pending;
              if (seen?.paused) metrics.pacingPauses.inc({ upstream });
            }
            return result;
          } finally {
            finish();
            // Shared: this replica's in-flight count for the pacer is
            // rewritten with every update; a request that ended without one
            // (refused, aborted, no answer) publishes it now, best effort.
            if (shared && !published) void update(id, () => undefined, undefined);
          }
        },
        close() {},
      };
    },
    snapshot() {
      const out: PacingSnapshot[] = [];
      for (const store of shared ? [shared, local] : [local]) {
        for (const [id, state, t] of store.entries()) {
          out.push({
            upstream,
            key: id.slice(id.indexOf(':') + 1),
            scope: state.scope,
            limit: state.limit ?? null,
            remaining: state.remaining ?? null,
            resetSeconds: state.resetAt !== undefined ? Math.max(0, (state.resetAt - t) / 1000) : null,
            ratePerSecond: state.aimdRate ?? state.refillRate ?? null,
            inFlight: countOf(id),
            shared: store === shared,
          });
        }
      }
      return out;
    },
    close() {
      local.close();
      shared?.close();
      scopes.clear();
    },
  };
}
