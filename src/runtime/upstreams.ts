/**
 * An upstream's live objects: its targets (the upstream itself, then its
 * `failover` targets, SPEC §8.1), each with its own keep-alive pool,
 * circuit breaker and pacer, all with the upstream's settings. A reload
 * takes over the pools and breakers of an upstream whose settings did not
 * change.
 */
import type { Config, UpstreamConfig } from '../config/types.js';
import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import { createUpstreamBreaker, type UpstreamBreaker } from '../policy/breaker/circuit-breaker.js';
import { TargetSet } from '../policy/failover.js';
import { createUpstreamPacing, type UpstreamPacing } from '../policy/pacing/pacer.js';
import { sleep } from '../lib/clock.js';
import type { Signal } from '../lib/signal.js';
import type { SharedLimits } from '../policy/rate-limit/shared-limits.js';
import type { UpstreamTarget } from '../upstream/forward.js';
import { compileHeaderEdits, type CompiledHeaderEdits } from '../upstream/headers.js';
import { createRetryCounts, type RetryCounts } from '../policy/retry/budget.js';
import { createUpstreamPool } from '../upstream/pools.js';
import { buildCredential, type CredentialDeps } from '../credentials/build.js';
import type { Credential } from '../credentials/credential.js';
import type { SecretFiles } from '../credentials/secret-source.js';

/** One target of an upstream. */
export interface TargetRuntime extends UpstreamTarget {
  readonly breaker: UpstreamBreaker;
  /** Proactive pacing, when `pacing.enabled`. */
  readonly pacing: UpstreamPacing | null;
  /** Request headers for this target only (failover targets), applied after the route's. */
  readonly edits: CompiledHeaderEdits | null;
  /** Its own credentials (SPEC §18), applied on every attempt after the headers; null without. */
  readonly credential: Credential | null;
}

/** An upstream: its first target (named like it), and all of them. */
export interface UpstreamRuntime extends TargetRuntime {
  readonly config: UpstreamConfig;
  /** The upstream itself first, then its failover targets in order. */
  readonly targets: readonly TargetRuntime[];
  /** Which target is available, when there is more than one. */
  readonly failover: TargetSet | null;
  /** Requests and retries of the last 10 s, which every route to it draws its retry budget from. */
  readonly retryCounts: RetryCounts;
  /** The headers any of its targets' credentials write (lower case): the app's own are removed (SPEC §18). */
  readonly managedHeaders: readonly string[];
}

export interface UpstreamDeps {
  readonly metrics: Metrics;
  /** The clock's readings (lib/clock.ts): monotonic ms, epoch ms, and the policies' sleep (the real one by default). */
  readonly now: () => number;
  readonly wall: () => number;
  readonly sleep?: (ms: number, signal: Signal) => Promise<void>;
  /** Backoff jitter source; Math.random by default. */
  readonly random?: () => number;
  readonly logger?: Logger;
  /** The same upstream's runtime in the config this one replaces, when its settings did not change. */
  readonly previous?: UpstreamRuntime;
  /** The secrets read at load (SPEC §18); the runtime's file poller. */
  readonly secrets?: CredentialDeps['secrets'];
  readonly files?: SecretFiles;
}

/** The settings of one target: the upstream's, with the target's URL and TLS. */
function targetConfig(
  config: UpstreamConfig,
  index: number,
): { name: string; config: UpstreamConfig; edits: CompiledHeaderEdits | null } {
  if (index === 0) return { name: config.name, config, edits: null };
  const target = config.failover[index - 1]!;
  return {
    name: target.name,
    // A failover target sends only its own credentials (SPEC §18).
    config: { ...config, url: target.url, tls: target.tls, credentials: target.credentials },
    edits: compileHeaderEdits(target.headers),
  };
}

/**
 * Per upstream, from the routes that use it: the longest Retry-After pause (capped by `retry.retryAfter.max`)
 * and connect timeout.
 */
interface UpstreamCaps {
  readonly pauseMs: number;
  readonly connectMs: number;
}

/**
 * A URL's `user:pass@` as the `Authorization: Basic` value curl would send
 * (percent-decoded), and the URL without it: the credentials go in that
 * header only, never in a name, log line, span or metric label made from
 * the URL.
 */
export function splitCredentials(text: string): { url: URL; authorization: string | undefined } {
  const url = new URL(text);
  if (url.username === '' && url.password === '') return { url, authorization: undefined };
  const decode = (part: string) => {
    try {
      return decodeURIComponent(part);
    } catch {
      return part;
    }
  };
  const authorization = `Basic ${Buffer.from(`${decode(url.username)}:${decode(url.password)}`).toString('base64')}`;
  url.username = '';
  url.password = '';
  return { url, authorization };
}

/**
 * The target's credentials: an unchanged upstream's (kept across a reload, its OAuth2 token too; this runtime's
 * poller takes over its files), else built from the config.
 */
function credentialOf(config: UpstreamConfig, name: string, previous: TargetRuntime | undefined, deps: UpstreamDeps) {
  if (!deps.files) return null;
  const kept = previous?.credential;
  if (kept) {
    for (const source of kept.sources) deps.files.add(source);
    return kept;
  }
  return buildCredential(config.credentials, name, deps.files, deps);
}

function buildTarget(
  upstream: UpstreamConfig,
  index: number,
  deps: UpstreamDeps,
  shared: SharedLimits | undefined,
  caps: UpstreamCaps,
  inherited: Set<object>,
): TargetRuntime {
  const { name, config, edits } = targetConfig(upstream, index);
  const { url, authorization } = splitCredentials(config.url);
  const previous = deps.previous?.targets[index];
  if (previous) {
    inherited.add(previous.pool);
    inherited.add(previous.breaker);
  }
  // Pacing state is rebuilt on reload from the next responses' headers.
  const pool = previous?.pool ?? createUpstreamPool(url.origin, config, caps.connectMs);
  const ca = config.tls.ca ?? undefined;
  const rejectUnauthorized = !config.tls.insecureSkipVerify;
  const breaker = previous?.breaker ?? createUpstreamBreaker(name, config.circuitBreaker, deps);
  const pacing = config.pacing.enabled
    ? createUpstreamPacing(name, config.pacing, caps.pauseMs, {
        now: deps.now,
        wall: deps.wall,
        random: deps.random ?? Math.random,
        sleep: deps.sleep ?? sleep,
        metrics: deps.metrics,
        logger: deps.logger,
        shared,
      })
    : null;
  return {
    name,
    url,
    pool,
    connections: config.pool.maxSockets,
    ca,
    rejectUnauthorized,
    upgradeAgent: null,
    ...(authorization !== undefined && { authorization }),
    breaker,
    pacing,
    edits,
    credential: credentialOf(config, name, previous, deps),
  };
}

export function buildUpstream(
  config: UpstreamConfig,
  deps: UpstreamDeps,
  shared: SharedLimits | undefined,
  caps: UpstreamCaps,
  inherited: Set<object>,
): UpstreamRuntime {
  const targets = [config, ...config.failover].map((_, index) =>
    buildTarget(config, index, deps, shared, caps, inherited),
  );
  const failover =
    targets.length > 1
      ? new TargetSet(
          targets.map((target) => ({
            name: target.name,
            breaker: target.breaker,
            pacing: config.pacing.enabled ? config.pacing : null,
          })),
          config.cooldownMax,
          deps,
        )
      : null;
  // Kept across a reload with the upstream's other state, when its settings did not change.
  const retryCounts = deps.previous?.retryCounts ?? createRetryCounts(deps.now);
  const managedHeaders = [...new Set(targets.flatMap((target) => target.credential?.managed ?? []))];
  return { ...targets[0]!, config, targets, failover, retryCounts, managedHeaders };
}

/** Every upstream of a config; `previous` finds an unchanged upstream of the config this one replaces. */
export function buildUpstreams(
  config: Config,
  deps: UpstreamDeps,
  inherited: Set<object>,
  shared: SharedLimits | undefined,
  previous?: (config: UpstreamConfig) => UpstreamRuntime | undefined,
): Map<string, UpstreamRuntime> {
  const upstreams = new Map<string, UpstreamRuntime>();
  for (const upstream of Object.values(config.upstreams)) {
    // A Retry-After pause holds the whole upstream: capped by the longest
    // retry.retryAfter.max of the routes that use it.
    const routes = config.routes.filter((route) => route.upstream === upstream.name);
    const caps = {
      pauseMs: Math.max(
        ...routes.map((route) => route.retry.retryAfter.max),
        routes.length > 0 ? 0 : config.defaults.retry.retryAfter.max,
      ),
      connectMs: Math.max(...routes.map((route) => route.timeouts.connect), config.defaults.timeouts.connect),
    };
    upstreams.set(
      upstream.name,
      buildUpstream(upstream, { ...deps, previous: previous?.(upstream) }, shared, caps, inherited),
    );
  }
  return upstreams;
}
