/**
 * One undici connection pool per upstream target (SPEC §3 `pool`, `tls`):
 * keep-alive HTTP/1.1 connections to one origin, at most `maxSockets` of
 * them. undici's own header and body timers are off: the attempt's connect
 * timer, per-try timer and total deadline (policy/) decide, and a slow body
 * that keeps arriving is never cut.
 *
 * The pool's connect timeout is a backstop for the socket itself (the
 * longest `timeouts.connect` of the routes that use the upstream); each
 * attempt runs its own route's timer (forward.ts).
 */
import { createRequire } from 'node:module';
import type { LookupFunction } from 'node:net';
import type { SecureContext } from 'node:tls';
import type { Pool as UndiciPool } from 'undici';
import type { UpstreamConfig } from '../config/types.js';

export type UpstreamPool = UndiciPool;

/**
 * undici's Pool from its own file: the package's index loads fetch,
 * WebSocket, the cache and the mocks too (measured: 19.5 MiB of RSS for the
 * index, 11.8 MiB for the pool). undici 7 has no `exports` map, and
 * test/unit/undici-path.test.ts fails if this path moves.
 */
const Pool = createRequire(import.meta.url)('undici/lib/dispatcher/pool.js') as typeof UndiciPool;

const BASE_OPTIONS = { headersTimeout: 0, bodyTimeout: 0 } as const;

/** The pool of an upstream (or failover) target. */
export function createUpstreamPool(origin: string, config: UpstreamConfig, connectTimeoutMs: number): UpstreamPool {
  const https = origin.startsWith('https:');
  return new Pool(origin, {
    ...BASE_OPTIONS,
    connections: config.pool.maxSockets,
    // undici: pipelining 0 closes each connection after its request.
    pipelining: config.pool.keepAlive ? 1 : 0,
    connect: https
      ? {
          timeout: connectTimeoutMs,
          ca: config.tls.ca ?? undefined,
          rejectUnauthorized: !config.tls.insecureSkipVerify,
        }
      : { timeout: connectTimeoutMs },
  });
}

/**
 * The pool of a forward-proxy target: it connects only to addresses the
 * target check allowed (`lookup`). With `tls` (an intercepted CONNECT's
 * re-originated TLS): always verified, against the roots of
 * `secureContext` or the system roots, with the target's name.
 */
export function createForwardPool(
  origin: string,
  lookup: LookupFunction,
  connectTimeoutMs: number,
  connections: number,
  tls?: { readonly secureContext: SecureContext | undefined },
): UpstreamPool {
  return new Pool(origin, {
    ...BASE_OPTIONS,
    connections,
    pipelining: 1,
    connect: tls
      ? { timeout: connectTimeoutMs, lookup, secureContext: tls.secureContext, rejectUnauthorized: true }
      : { timeout: connectTimeoutMs, lookup },
  });
}

/** Nothing running and nothing queued: the pool may be closed without cutting a request. */
export function poolIdle(pool: UpstreamPool): boolean {
  return pool.stats.size === 0;
}

/** Closes the pool's connections (in-flight requests fail); never rejects. */
export function destroyPool(pool: UpstreamPool): void {
  pool.destroy().catch(() => {});
}
