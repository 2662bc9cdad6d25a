/**
 * What every inbound exchange (request, upgrade, CONNECT, parser refusal)
 * records for its problem body and its access-log line; the server's
 * Exchange writes them. A request's policy layers fill the part they share
 * with it (policy/context.ts RequestContext): attempts, flags, the rule.
 */
import type { CacheResult } from '../observe/metrics.js';
import type { RequestContext } from '../policy/context.js';

export interface ExchangeRecord extends Pick<
  RequestContext,
  'requestId' | 'method' | 'attempts' | 'target' | 'rule' | 'flags' | 'attemptLog' | 'priority' | 'trace'
> {
  /** The path as normalized (SPEC §10), query dropped (access log, `instance`); the authority for CONNECT. */
  readonly path: string;
  /** The path as logs, the journal and the problem show it, when it carried a leaked secret (SPEC §18). */
  shownPath?: string;
  /** Host header as sent, lower case ('' when absent). */
  readonly host: string;
  /** The host as logs show it, when it carried a leaked secret (SPEC §18). */
  shownHost?: string;
  /** When it arrived, on the runtime's clock (ms). */
  readonly startedAt: number;
  /** Answered stale (SPEC §8.2): the failure code the stored answer replaced. */
  staleFor?: string;
  /**
   * A forward-proxy request's caller (SPEC §19.3: a name, or null when none
   * matched) and its allow-list's decision; undefined for other requests.
   */
  caller?: string | null;
  egress?: 'allowed' | 'denied' | 'would_deny';
  /** On a route with a cache (SPEC §17): how it was answered (the access log's `cache`, the metric's `result`). */
  cache?: CacheResult;
}
