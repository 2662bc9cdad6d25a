/**
 * The access-log line (SPEC §7): one JSON line per request, `"msg": "access"`.
 * Paths are logged as the client sent them with the query string dropped;
 * header values are never logged.
 */
import type { Logger } from './logger.js';

export interface AccessEntry {
  readonly requestId: string;
  readonly method: string;
  readonly host: string;
  readonly path: string;
  readonly route: string;
  readonly upstream: string;
  readonly status: number;
  readonly durationMs: number;
  readonly attempts: number;
  readonly flags: readonly string[];
}

export function logAccess(logger: Logger, entry: AccessEntry): void {
  logger.info(entry, 'access');
}
