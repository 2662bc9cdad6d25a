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
import { BoundedMap } from '../lib/bounded-map.js';
import { createHash } from 'node:crypto';
import type { PacingConfig } from '../config/types.js';
import { BreakwaterError } from '../errors/breakwater-error.js';
import type { Metrics } from '../observe/metrics.js';
import type { Logger } from '../observe/logger.js';
import type { Policy, PolicyDeps, RequestContext } from './context.js';
import { localStore, MAX_PACERS, sharedStore, type PacerState } from './pacer-store.js';
import { headerValue, observe, released, reserveWithin } from './pacer-quota.js';
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

export function createUpstreamPacing(upstream: string, config: PacingConfig, retryAfterMaxMs: number, deps: PacingDeps): UpstreamPacing {
  const { now, metrics, random } = deps;
  /** This process's requests in flight (waiting for a slot included) per pacer id. */
  const inFlight = new Map<string, number>();
  const countOf = (id: string) => inFlight.get(id) ?? 0;
  const local = localStore(now, countOf);
  const shared = config.shared && deps.shared ? sharedStore(deps.shared.client, `breakwater:pacing:${upstream}:`, countOf) : null;
  /** Scope learned per route and first path segment; bounded like the pacers. */
  const scopes = new BoundedMap<string, string>({ max: MAX_PACERS });
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

  /** A shared reservation decided without Redis: flagged and counted like a rate-limit decision (SPEC §9). */
  const degradedFor = (route: string) => (ctx: RequestContext) => {
    ctx.flags.add('RATE_LIMIT_DEGRADED');
    metrics.rateLimitDegraded.inc({ route });
  };

  const learn = (learnKey: string, scope: string) => {
    if (scopes.get(learnKey) !== scope) scopes.set(learnKey, scope);
  };

  return {
    policy(route, pathPrefix = '/') {
      const prefixLength = pathPrefix === '/' ? 0 : pathPrefix.length;
      const degraded = degradedFor(route);
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
              // A closure per request only where Redis can fail: local pacing allocates none.
              shared ? () => degraded(ctx) : undefined,
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
