/**
 * Proactive pacing (SPEC §3 `upstreams.*.pacing`): slow down before the
 * provider answers 429, from the quota it announces on every response.
 *
 * One pacer per (upstream, route, key). While the announced remaining share
 * is above `engageBelow`, nothing waits. Below it, requests are released one
 * at a time at `max(minRate, effective remaining / time to reset) /
 * replicas`, where effective remaining = remaining - requests in flight -
 * `reserve` x limit; at zero they wait for the reset (plus jitter). A 429
 * or 503 with Retry-After pauses the whole pacer. Without quota headers,
 * AIMD on 429s: the rate is cut by `aimd.decrease`, then raised by
 * `increaseBy` after each quiet `increaseEvery`. A wait longer than
 * `maxWait` is refused at once with RATE_LIMITED.
 *
 * Releases are scheduled on a virtual clock (each release reserves the next
 * slot), so concurrent requests queue in order without a timer per pacer.
 */
import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { PacingConfig } from '../config/types.js';
import { BreakwaterError } from '../errors/breakwater-error.js';
import { readQuota } from '../errors/quota.js';
import type { Metrics } from '../observe/metrics.js';
import type { Classification } from '../upstream/classify.js';
import type { RequestContext } from './context.js';
import type { Policy, PolicyDeps } from './pipeline.js';
import { parseRetryAfter } from './retry-after.js';

/** Live pacers per upstream: one per route and key value, least recently used dropped first. */
export const MAX_PACERS = 1000;

interface PacerState {
  limit: number | undefined;
  remaining: number | undefined;
  /** When the quota resets, on the deps clock (ms), if announced. */
  resetAt: number | undefined;
  inFlight: number;
  pausedUntil: number;
  /** Next free release slot on the deps clock. */
  nextSlot: number;
  /** AIMD rate (per second) when the provider announces no quota; null: unlimited. */
  aimdRate: number | null;
  lastIncrease: number;
  /** Requests released in the current second, for AIMD's starting point. */
  recent: { second: number; count: number; previous: number };
  scope: string;
  /** Set when a window was assumed over (its reset passed); requests released since. */
  releasedSinceRefill: number | null;
}

export interface PacingSnapshot {
  readonly upstream: string;
  readonly key: string;
  readonly scope: string;
  readonly limit: number | null;
  readonly remaining: number | null;
  readonly resetSeconds: number | null;
  readonly ratePerSecond: number | null;
  readonly inFlight: number;
}

export interface UpstreamPacing {
  /** The policy layer for one route (pacers are per route and key). */
  policy(route: string): Policy;
  snapshot(): PacingSnapshot[];
  close(): void;
}

export function createUpstreamPacing(upstream: string, config: PacingConfig, retryAfterMaxMs: number, deps: PolicyDeps & { readonly metrics: Metrics }): UpstreamPacing {
  const pacers = new Map<string, PacerState>();
  const { now, metrics } = deps;

  const pacerFor = (route: string, ctx: RequestContext): PacerState => {
    let keyPart = '';
    if (config.key) {
      const value = ctx.clientHeaders[config.key];
      // The key (a credential, often) is hashed: never kept, never logged.
      keyPart = createHash('sha256').update(Array.isArray(value) ? value.join(',') : (value ?? '')).digest('hex').slice(0, 16);
    }
    const id = `${route}\u0001${keyPart}`;
    let state = pacers.get(id);
    if (state) {
      pacers.delete(id);
    } else {
      if (pacers.size >= MAX_PACERS) {
        for (const [key, candidate] of pacers) {
          if (pacers.size < MAX_PACERS) break;
          if (candidate.inFlight === 0) pacers.delete(key);
        }
      }
      const t = now();
      state = {
        limit: undefined,
        remaining: undefined,
        resetAt: undefined,
        inFlight: 0,
        pausedUntil: 0,
        nextSlot: t,
        aimdRate: null,
        lastIncrease: t,
        recent: { second: Math.floor(t / 1000), count: 0, previous: 0 },
        scope: '',
        releasedSinceRefill: null,
      };
    }
    pacers.set(id, state);
    return state;
  };

  /** After a reset: a margin for clock skew and rounding, plus jitter so that waiters do not arrive together. */
  const jitter = () => 50 + deps.random() * 100;

  /** How long this request must wait before it may go, in ms. Reserves its slot. */
  function reserve(state: PacerState): number {
    const t = now();
    if (state.pausedUntil > t) {
      const at = state.pausedUntil + jitter();
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
    }
    if (haveQuota) {
      const limit = state.limit!;
      const effective = state.remaining! - state.inFlight - config.reserve * limit;
      if (state.remaining! / limit > config.engageBelow && effective > 0) return 0;
      if (effective <= 0) {
        if (state.resetAt === undefined) return 0; // nothing says when: let the provider decide
        const at = state.resetAt + jitter();
        state.nextSlot = Math.max(state.nextSlot, at);
        return at - t;
      }
      const resetIn = state.resetAt !== undefined ? Math.max(0.001, (state.resetAt - t) / 1000) : 1;
      rate = Math.max(config.minRate, effective / resetIn) / config.replicas;
    } else if (state.aimdRate !== null) {
      if (t - state.lastIncrease >= config.aimd.increaseEvery) {
        state.aimdRate += config.aimd.increaseBy;
        state.lastIncrease = t;
      }
      rate = state.aimdRate / config.replicas;
    }
    if (rate === null) return 0;
    let slot = Math.max(t, state.nextSlot);
    // Nobody needs to wait past the reset: the next window has quota again.
    if (haveQuota && state.resetAt !== undefined && slot > state.resetAt) slot = state.resetAt + jitter();
    state.nextSlot = slot + 1000 / rate;
    return slot - t;
  }

  function observe(state: PacerState, classification: Classification, headers: IncomingHttpHeaders | undefined): void {
    const t = now();
    if (headers) {
      const quota = readQuota(headers, Date.now(), { dialect: config.headers, resetFormat: config.resetFormat });
      // After an assumed reset, a late answer from the window that just
      // ended announces a reset that is (nearly) past: it must not undo the
      // refill and make the pacer refill twice.
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
        }
        if (config.scope) {
          const scope = headers[config.scope];
          state.scope = Array.isArray(scope) ? (scope[0] ?? '') : (scope ?? '');
        }
        if (state.remaining !== undefined) metrics.upstreamQuotaRemaining.set({ upstream, scope: state.scope }, state.remaining);
      }
      if (classification.status === 429 || classification.status === 503) {
        const retryAfter = parseRetryAfter(headers['retry-after'], Date.now());
        if (retryAfter !== undefined) {
          const until = t + Math.min(retryAfter, retryAfterMaxMs);
          if (until > state.pausedUntil) {
            state.pausedUntil = until;
            metrics.pacingPauses.inc({ upstream });
          }
        }
        if (classification.status === 429 && !quota) {
          // AIMD: no quota announced, so the 429 is the only signal.
          const current = state.aimdRate ?? Math.max(config.minRate, state.recent.previous || state.recent.count || 1);
          state.aimdRate = Math.max(config.minRate, current * config.aimd.decrease);
          state.lastIncrease = t;
        }
      }
    }
  }

  return {
    policy(route) {
      return {
        async run(ctx: RequestContext, signal, next) {
          const state = pacerFor(route, ctx);
          const wait = reserve(state);
          if (wait > config.maxWait) {
            const seconds = Math.max(1, Math.ceil(wait / 1000));
            throw new BreakwaterError('RATE_LIMITED', `Upstream '${upstream}' is paced: its announced quota would make this request wait ${seconds} s, more than pacing.maxWait.`, {
              retryAfterSeconds: seconds,
            });
          }
          // Counted from the reservation on: a request waiting for its slot
          // will spend quota as surely as one already sent.
          state.inFlight += 1;
          try {
            if (wait > 0) {
              ctx.flags.add('PACED');
              metrics.pacingWait.observe({ upstream }, wait / 1000);
              await deps.sleep(wait, signal);
            }
            const second = Math.floor(now() / 1000);
            if (second !== state.recent.second) state.recent = { second, count: 0, previous: state.recent.second === second - 1 ? state.recent.count : 0 };
            state.recent.count += 1;
            if (state.releasedSinceRefill !== null) state.releasedSinceRefill += 1;
            const result = await next(ctx, signal);
            observe(state, result.classification, result.response?.headers);
            return result;
          } finally {
            state.inFlight -= 1;
          }
        },
        close() {},
      };
    },
    snapshot() {
      const t = now();
      return [...pacers.entries()].map(([id, state]) => ({
        upstream,
        key: id.split('\u0001')[1] ?? '',
        scope: state.scope,
        limit: state.limit ?? null,
        remaining: state.remaining ?? null,
        resetSeconds: state.resetAt !== undefined ? Math.max(0, (state.resetAt - t) / 1000) : null,
        ratePerSecond: state.aimdRate,
        inFlight: state.inFlight,
      }));
    },
    close() {
      pacers.clear();
    },
  };
}
