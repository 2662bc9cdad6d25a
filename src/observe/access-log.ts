/**
 * The access-log line (SPEC §7): one JSON line per request, `"msg": "access"`.
 * Paths are logged as the client sent them with the query string dropped;
 * header values are never logged.
 */
import type { Logger } from './logger.js';

/** Access-log flags (SPEC §7). */
export type Flag =
  | 'RETRIED'
  | 'UPSTREAM_TIMEOUT'
  | 'CIRCUIT_OPEN'
  | 'RATE_LIMITED'
  | 'RETRY_BUDGET_EXHAUSTED'
  | 'UPSTREAM_RESET'
  | 'UPSTREAM_CONNECT_FAILED'
  | 'RATE_LIMIT_DEGRADED'
  | 'BODY_NOT_REPLAYABLE'
  | 'PACED'
  | 'UPSTREAM_TLS_FAILED'
  | 'UPSTREAM_PROTOCOL_ERROR'
  | 'PAYLOAD_TOO_LARGE'
  | 'CLIENT_CLOSED'
  | 'STALE'
  | 'PROVIDER_RULE'
  | 'PROMOTED'
  | 'REQUEST_BODY_TIMEOUT'
  | 'WOULD_RATE_LIMIT'
  | 'WOULD_CIRCUIT_OPEN'
  | 'WOULD_DENY'
  | 'WOULD_PACE'
  | 'STREAM_STALLED'
  | 'IDEMPOTENCY_KEY_ADDED'
  | 'CREDENTIALS_REFRESHED'
  | 'CREDENTIALS_UNAVAILABLE'
  | 'CREDENTIAL_LEAK';

const CODE_FLAGS: ReadonlySet<string> = new Set<Flag>([
  'UPSTREAM_TIMEOUT',
  'UPSTREAM_RESET',
  'UPSTREAM_CONNECT_FAILED',
  'UPSTREAM_TLS_FAILED',
  'UPSTREAM_PROTOCOL_ERROR',
  'CIRCUIT_OPEN',
  'RATE_LIMITED',
  'PAYLOAD_TOO_LARGE',
  'REQUEST_BODY_TIMEOUT',
  'CREDENTIALS_UNAVAILABLE',
  'CREDENTIAL_LEAK',
]);

/** The access-log flag an error code sets, if any: every server path (requests, upgrades, tunnels) reads it here. */
export function flagForCode(code: string): Flag | undefined {
  if (CODE_FLAGS.has(code)) return code as Flag;
  // A stream cut for its silence (SPEC §16): the flag is named for what happened to the stream.
  return code === 'UPSTREAM_STREAM_STALLED' ? 'STREAM_STALLED' : undefined;
}

export interface AccessEntry {
  readonly requestId: string;
  readonly method: string;
  readonly host: string;
  readonly path: string;
  readonly route: string;
  readonly upstream: string;
  /** The target that answered, or of the last attempt (SPEC §8.1); '' before any. */
  readonly target: string;
  /** The provider rule that decided the answer (SPEC §14), when one did. */
  readonly rule?: string;
  /** The priority class the request was handled in (SPEC §13), when priorities are configured. */
  readonly priority?: string;
  /** How a route's cache answered it (SPEC §17), on a route with a cache. */
  readonly cache?: string;
  readonly status: number;
  readonly durationMs: number;
  readonly attempts: number;
  readonly flags: readonly string[];
}

/**
 * Whether an access line would be written: `logging.accessLog` on and the logger at info or below (check before
 * building the entry).
 */
export function wantsAccessLog(logger: Logger, accessLog: boolean): boolean {
  return accessLog && logger.isLevelEnabled('info');
}

export function logAccess(logger: Logger, entry: AccessEntry): void {
  logger.info(entry, 'access');
}
