/**
 * What the policy layers share about one request. Built by the server for
 * each request, read and updated by the layers; holds node's request and
 * response objects only so that the innermost attempt can forward them.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { RequestBody } from '../upstream/body.js';
import type { Classification } from '../upstream/classify.js';
import type { Signal } from './signal.js';
import type { UpstreamTarget } from '../upstream/forward.js';
import type { Policy } from './pipeline.js';

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
  | 'CLIENT_CLOSED';

const CODE_FLAGS: ReadonlySet<string> = new Set<Flag>([
  'UPSTREAM_TIMEOUT',
  'UPSTREAM_RESET',
  'UPSTREAM_CONNECT_FAILED',
  'UPSTREAM_TLS_FAILED',
  'UPSTREAM_PROTOCOL_ERROR',
  'CIRCUIT_OPEN',
  'RATE_LIMITED',
  'PAYLOAD_TOO_LARGE',
]);

/** The access-log flag an error code sets, if any: every server path (requests, upgrades, tunnels) reads it here. */
export function flagForCode(code: string): Flag | undefined {
  return CODE_FLAGS.has(code) ? (code as Flag) : undefined;
}

export interface RequestContext {
  readonly requestId: string;
  readonly method: string;
  /** The path as the client sent it, query dropped (access log, `instance`). */
  readonly path: string;
  /** The request target as the client sent it (path and query). */
  readonly url: string;
  /** Host header as sent, lower case ('' when absent). */
  readonly host: string;
  /** The client's headers as received; attempts build theirs from these. */
  readonly clientHeaders: IncomingHttpHeaders;
  readonly remoteAddress: string | undefined;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** Set once a route matched and the body was checked. */
  body: RequestBody;
  /** When the request arrived, on the clock of the runtime (ms). */
  readonly startedAt: number;
  /** Absolute deadline on the same clock; set by the deadline layer. */
  deadline: number;
  /** Aborted when the client goes away; its reason is a ClientClosedError. */
  readonly signal: Signal;
  /** Attempts made upstream so far. */
  attempts: number;
  readonly flags: Set<Flag>;
  /**
   * For a forward-proxy request on a route without an upstream: the
   * request's own target (host:port) and its breaker.
   */
  forward?: { readonly target: UpstreamTarget; readonly breaker: Policy };
  /** Run once when the response to the client has ended or broken off (release a rate-limit slot). */
  readonly cleanups: (() => void)[];
}

/** The result of one attempt, or of the whole pipeline. */
export interface AttemptResult {
  readonly classification: Classification;
  /** The upstream's response when its headers arrived; its body not yet read. */
  readonly response?: IncomingMessage;
  /**
   * No retry may follow, whatever the outcome: set by the breaker on a
   * failed probe of an upstream that is down (the retry would only meet
   * the reopened circuit after its backoff).
   */
  readonly final?: boolean;
}
