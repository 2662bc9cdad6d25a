/**
 * Forward-proxy targets (SPEC §3 `forwardProxy`): one per host:port (and
 * scheme), each with its own pool that connects only to the addresses the
 * target check approved, and its own breaker. Kept in a bounded map in
 * least-recently-used order; beyond MAX_FORWARD_TARGETS, idle targets (no
 * socket, no queued request) are closed first, busy ones are never evicted.
 */
import type { BreakerDeps } from '../policy/breaker/circuit-breaker.js';
import { createUpstreamBreaker, type UpstreamBreaker } from '../policy/breaker/circuit-breaker.js';
import type { CircuitBreakerConfig, Config } from '../config/types.js';
import { createTargetChecker, type Lookup, type TargetChecker } from '../router/target-check.js';
import { createInterceptor, type Interceptor } from '../tls/interceptor.js';

type InterceptConfig = NonNullable<Config['forwardProxy']['intercept']>;
import type { UpstreamTarget } from '../upstream/forward.js';
import { createForwardPool, destroyPool, poolIdle } from '../upstream/pools.js';
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import type tls from 'node:tls';
import { BoundedMap } from '../lib/bounded-map.js';

/** Live forward-proxy targets kept (idle ones beyond this are closed). */
export const MAX_FORWARD_TARGETS = 500;

export interface ForwardTarget {
  readonly target: UpstreamTarget;
  readonly breaker: UpstreamBreaker;
}

export interface ForwardTargets {
  /** The target for host:port (https: re-originated TLS, verified against `host`), created on first use. */
  get(host: string, port: number, https?: boolean): ForwardTarget;
  size(): number;
  close(): void;
}

/** Sockets per forward target. */
const FORWARD_CONNECTIONS = 256;

/** A WebSocket upgrade's agent for a forward target: the checked lookup, and verified TLS for an intercepted one. */
function upgradeAgentOf(
  lookup: LookupFunction,
  secureContext: tls.SecureContext | undefined,
  useTls: boolean,
): () => http.Agent {
  return () =>
    useTls ? new https.Agent({ lookup, secureContext, rejectUnauthorized: true }) : new http.Agent({ lookup });
}

/**
 * `connectTimeoutMs`: the socket's own connect timeout (each attempt also runs its route's); `breakerConfig`:
 * every target's breaker (the resolved `forwardProxy.circuitBreaker`).
 */
export function createForwardTargets(
  targets: TargetChecker,
  upstreamContext: () => tls.SecureContext | undefined,
  deps: BreakerDeps,
  connectTimeoutMs: number,
  breakerConfig: CircuitBreakerConfig,
): ForwardTargets {
  const entries = new BoundedMap<string, ForwardTarget>({
    max: MAX_FORWARD_TARGETS,
    busy: (entry) => !poolIdle(entry.target.pool),
    onEvict: (entry) => closeOne(entry),
  });
  function closeOne(entry: ForwardTarget): void {
    entry.breaker.close();
    destroyPool(entry.target.pool);
  }
  return {
    get(host, port, useTls = false) {
      const name = `${host.includes(':') ? `[${host}]` : host}:${port}`;
      const key = useTls ? `https://${name}` : name;
      return entries.getOrCreate(key, () => {
        const url = new URL(`${useTls ? 'https' : 'http'}://${name}`);
        // Re-originated TLS is always verified, against the CONNECT host as server name.
        const lookup = targets.lookup as LookupFunction;
        const secureContext = useTls ? upstreamContext() : undefined;
        const pool = createForwardPool(
          url.origin,
          lookup,
          connectTimeoutMs,
          FORWARD_CONNECTIONS,
          useTls ? { secureContext } : undefined,
        );
        return {
          target: {
            name,
            url,
            pool,
            connections: FORWARD_CONNECTIONS,
            ca: undefined,
            rejectUnauthorized: true,
            upgradeAgent: upgradeAgentOf(lookup, secureContext, useTls),
          },
          breaker: createUpstreamBreaker(name, breakerConfig, deps),
        };
      });
    },
    size: () => entries.size,
    close() {
      for (const entry of entries.values()) closeOne(entry);
      entries.clear();
    },
  };
}

/**
 * The forward proxy's side of a runtime: the target checks, the interceptor
 * (taken over on a reload when `intercept` is unchanged), and the targets,
 * whose pools connect within the longest connect timeout of the routes
 * that serve them.
 */
export function buildForwardProxy(
  config: Config,
  deps: BreakerDeps & {
    readonly lookup?: Lookup;
    readonly wall: () => number;
    readonly inherit?: { interceptor(intercept: InterceptConfig): Interceptor | undefined };
  },
) {
  const targets = createTargetChecker(config.forwardProxy, deps.lookup);
  const intercept = config.forwardProxy.intercept;
  const interceptor = intercept
    ? (deps.inherit?.interceptor(intercept) ?? createInterceptor(intercept, deps.metrics, deps.wall))
    : null;
  const forwardConnectMs = Math.max(
    config.defaults.timeouts.connect,
    ...config.routes.filter((route) => !route.upstream).map((route) => route.timeouts.connect),
  );
  const forwardTargets = createForwardTargets(
    targets,
    () => interceptor?.upstreamContext,
    deps,
    forwardConnectMs,
    config.forwardProxy.circuitBreaker,
  );
  return { targets, interceptor, forwardTargets };
}
