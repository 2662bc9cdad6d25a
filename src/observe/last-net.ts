/**
 * The last net under every fault handler (SPEC §9): a promise rejection
 * nobody handled is logged at error level with its stack and counted in
 * `breakwater_internal_errors_total`, and the process keeps serving. Every
 * dependency fault (Redis, DNS, TLS, sockets) is meant to be handled where
 * it happens; a count above zero is a bug to report, not a state to run in.
 * Node's default for an unhandled rejection is to end the process, which
 * for a sidecar takes every route of the app down with it.
 */
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';

/** What the net listens on: `process`, or an emitter standing in for it in tests. */
export interface RejectionSource {
  on(event: 'unhandledRejection', listener: (reason: unknown) => void): unknown;
  off(event: 'unhandledRejection', listener: (reason: unknown) => void): unknown;
}

/** Installs the net; returns its removal. */
export function installRejectionNet(source: RejectionSource, logger: Logger, metrics: Metrics): () => void {
  const listener = (reason: unknown) => {
    metrics.internalErrors.inc({});
    const err = reason instanceof Error ? reason : new Error(`non-Error rejection: ${String(reason)}`);
    logger.error(
      { err },
      'internal error: an unhandled promise rejection (the process keeps serving; please report it)',
    );
  };
  source.on('unhandledRejection', listener);
  return () => source.off('unhandledRejection', listener);
}
