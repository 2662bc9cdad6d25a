/**
 * `/status` on the admin port (SPEC §7): routes and upstreams with their
 * breakers' state, failure rate, limiter tokens, queue depth, pacing and
 * failover targets, in-flight requests, the Redis connection, the last
 * reload, all read from the runtime that serves (admin-server.ts).
 */

import type { LoadedConfig } from '../config/index.js';
import { formatDuration } from '../config/units.js';

import { redactedConfig } from '../observe/redact.js';
import type { UpstreamPacing } from '../policy/pacing/pacer.js';
import { countsByClass } from '../policy/priorities.js';
import type { Runtime, UpstreamRuntime } from '../runtime.js';

export interface AdminStatusSource {
  readonly runtime: Runtime;
  readonly loaded: LoadedConfig;
  readonly version: string;
  readonly lastReload:
    { readonly result: string; readonly at: string; readonly problems: readonly string[] } | undefined;
  /** The runtime's monotonic clock (cooldowns). */
  readonly now: () => number;
}

/** A target's pacers as /status shows them: with priority classes, who waits by class (SPEC §13). */
function pacingOf(
  pacing: UpstreamPacing | null | undefined,
  classes: readonly { readonly name: string }[] | undefined,
  mode: string,
): Record<string, unknown>[] | null {
  if (!pacing) return null;
  return pacing
    .snapshot()
    .map(({ waitingByRank, ...snapshot }) =>
      classes ? { ...snapshot, mode, waitingByClass: countsByClass(classes, waitingByRank) } : { ...snapshot, mode },
    );
}

/** One quota dimension of a target, at its lowest across the target's pacing keys (`breakwater stat`, SPEC §15). */
export interface QuotaRow {
  readonly target: string;
  readonly dimension: string;
  readonly remaining: number;
  readonly limit: number | null;
  readonly resetSeconds: number | null;
}

/** Every paced target's quota per dimension. */
export function quotaRows(source: AdminStatusSource): QuotaRow[] {
  const rows: QuotaRow[] = [];
  for (const upstream of source.runtime.upstreams.values()) {
    for (const target of upstream.targets) {
      const lowest = new Map<string, QuotaRow>();
      for (const pacer of target.pacing?.snapshot() ?? []) {
        for (const [dimension, quota] of Object.entries(pacer.dimensions)) {
          if (quota.remaining === null) continue;
          const seen = lowest.get(dimension);
          if (!seen || quota.remaining < seen.remaining)
            lowest.set(dimension, { target: target.name, dimension, ...quota, remaining: quota.remaining });
        }
      }
      rows.push(...lowest.values());
    }
  }
  return rows;
}

/** One upstream in `/status`: its breaker, pacing and credentials, and each of its targets'. */
function upstreamStatus(
  upstream: UpstreamRuntime,
  redacted: { upstreams: Record<string, { url: string; failover: { url: string }[] }> },
  classes: Parameters<typeof pacingOf>[1],
  now: number,
) {
  const cooling = upstream.failover?.status(now);
  const urls = [
    redacted.upstreams[upstream.name]?.url ?? '',
    ...(redacted.upstreams[upstream.name]?.failover ?? []).map((target) => target.url),
  ];
  return {
    name: upstream.name,
    url: urls[0],
    breaker: upstream.breaker.status(),
    pacing: pacingOf(upstream.pacing, classes, upstream.config.pacing.mode),
    // SPEC §18: how its credentials stand; never a value.
    credentials: upstream.credential?.status() ?? null,
    // Every target, the upstream itself first (SPEC §8.1).
    targets: upstream.targets.map((target, i) => ({
      name: target.name,
      url: urls[i] ?? '',
      breaker: target.breaker.status(),
      coolingForMs: cooling?.[i]?.coolingForMs ?? 0,
      pacing: pacingOf(target.pacing, classes, upstream.config.pacing.mode),
      credentials: target.credential?.status() ?? null,
    })),
  };
}

/** `/status` (SPEC §7): routes and upstreams with breaker state, failure rate, limiter tokens and queue depth, in-flight requests. */
export function statusOf(source: AdminStatusSource, draining: boolean): Record<string, unknown> {
  const { runtime, loaded } = source;
  const classes = runtime.config.priorities?.classes;
  const redacted = redactedConfig(loaded) as {
    upstreams: Record<string, { url: string; failover: { url: string }[] }>;
  };
  return {
    version: source.version,
    file: loaded.file,
    lastReload: source.lastReload ?? null,
    draining,
    inFlight: runtime.inFlight(),
    redis: runtime.redisStatus(),
    upstreams: [...runtime.upstreams.values()].map((upstream) =>
      upstreamStatus(upstream, redacted, classes, source.now()),
    ),
    forwardTargets: runtime.forwardTargetCount(),
    // SPEC §19.2, §19.3: the allow-lists' modes.
    forwardProxy: {
      mode: runtime.config.forwardProxy.mode,
      callers: runtime.config.forwardProxy.callers.map(({ name, mode }) => ({ name, mode })),
    },
    routes: runtime.routes.map((route) => {
      const { match, rateLimit } = route.config;
      return {
        name: route.name,
        match: [
          match.host ? `host ${match.host}` : '',
          `path ${match.pathPrefix}`,
          match.methods ? match.methods.join(',') : '',
        ]
          .filter(Boolean)
          .join(' '),
        upstream: route.upstream?.name ?? null,
        stale: route.stale ? { entries: route.stale.size(), bytes: route.stale.bytes() } : null,
        cache: route.cache
          ? { entries: route.cache.store.size(), bytes: route.cache.store.bytes(), inFlight: route.cache.shared.size }
          : null,
        rateLimit:
          rateLimit && route.rateLimit
            ? {
                describe: [
                  rateLimit.rate !== null ? `${+rateLimit.rate.toFixed(3)}/s burst ${rateLimit.burst}` : '',
                  rateLimit.maxConcurrent !== null ? `max ${rateLimit.maxConcurrent} in flight` : '',
                  `queue ${rateLimit.queue.size}/${formatDuration(rateLimit.queue.timeout)}`,
                  rateLimit.shared ? 'shared' : '',
                  rateLimit.key !== 'route' ? `per ${rateLimit.key}` : '',
                ]
                  .filter(Boolean)
                  .join(', '),
                mode: rateLimit.mode,
                tokens: route.rateLimit.tokens(),
                queued: route.rateLimit.queueDepth(),
                // With priority classes (SPEC §13): who waits, by class.
                ...(classes && { queuedByClass: countsByClass(classes, route.rateLimit.queueDepthByRank()) }),
                keys: route.rateLimit.size(),
              }
            : null,
      };
    }),
  };
}
