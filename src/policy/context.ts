/**
 * What the policy layers share about one request. Built by the server for
 * each request, read and updated by the layers. It holds no socket, request
 * or response object: only server/ reads the client and writes the answer
 * (server/exchange.ts HttpContext adds them); the attempt forwards the body
 * the server prepared (`body`).
 */
import type { Credential } from '../credentials/credential.js';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { UpstreamResponse } from '../upstream/response.js';
import type { RequestTrace } from '../observe/tracing.js';
import type { RequestBody } from '../upstream/body.js';
import type { Classification } from '../upstream/classify.js';
import type { Signal } from '../lib/signal.js';
import type { UpstreamTarget } from '../upstream/forward.js';
import type { Metrics } from '../observe/metrics.js';
import type { CompiledHeaderEdits } from '../upstream/headers.js';
import type { BufferedAnswer } from '../upstream/error-answer.js';
import type { JournalAttempt } from '../observe/error-journal.js';
import type { Flag } from '../observe/access-log.js';
import type { PriorityClass } from './priorities.js';

/** What a WebSocket handshake attempt is given (SPEC §20.3): where it goes, and the headers the attempt built. */
export interface HandshakeInput {
  readonly upstream: UpstreamTarget;
  /** Path and query as sent upstream (the route's prefix stripped). */
  readonly path: string;
  readonly headers: OutgoingHttpHeaders;
  readonly connectTimeoutMs: number;
}

/**
 * One handshake upstream: a 101 is a success; another answer is passed back to the client as it is (its status
 * classified).
 */
export type Handshake = (input: HandshakeInput, signal: Signal) => Promise<AttemptResult>;

/**
 * One request as the layers see it. The fields above `url` are also what
 * its exchange logs (server/exchange-record.ts picks them): the layers
 * record attempts, flags and the rule that decided as they run.
 */
export interface RequestContext {
  readonly requestId: string;
  readonly method: string;
  /** The path as normalized (SPEC §10), query dropped (access log, `instance`). */
  readonly path: string;
  /** Attempts made upstream so far. */
  attempts: number;
  /** The target of the last attempt (a failover target's name, `host:port` for a forward target); null before any. */
  target: string | null;
  /**
   * The provider rule that decided an answer of this request (SPEC §14),
   * the last one if several did; like the other flags, `PROVIDER_RULE`
   * records that it happened (a rule-decided 403 retried into a 200 keeps it).
   */
  rule?: string;
  readonly flags: Set<Flag>;
  /**
   * The attempts for the error journal (SPEC §12): created by the first
   * attempt that fails, so a request whose first attempt succeeds never
   * allocates it; every later attempt is listed.
   */
  attemptLog?: JournalAttempt[];
  /** The priority class it is handled in (SPEC §13), once a route matched and priorities are configured. */
  priority?: PriorityClass;
  /** The request's SERVER span (SPEC §11), when tracing is on and it is sampled or recording. */
  trace?: RequestTrace | null;
  /** The request target as the client sent it (path and query). */
  readonly url: string;
  /** The client's headers as received; attempts build theirs from these. */
  readonly clientHeaders: IncomingHttpHeaders;
  readonly remoteAddress: string | undefined;
  /** How the client reached us (X-Forwarded-Proto): https on an intercepted TLS connection. */
  readonly proto: 'http' | 'https';
  /** Set once a route matched and the body was checked. */
  body: RequestBody;
  /** Absolute deadline on the same clock; set by the deadline layer. */
  deadline: number;
  /** Aborted when the client goes away; its reason is a ClientClosedError. */
  readonly signal: Signal;
  /**
   * Where its attempts go, set once a route matched: the route's upstream,
   * or, on a forward-proxy route without one, the request's own target
   * (host:port); with the breaker of that destination.
   */
  destination: Destination | null;
  /**
   * Run once by the server when the exchange has ended: the answer to the
   * client ended or broke off, or its tunnel closed. Only the server sees
   * that end; a rate limit's concurrency slot (`maxConcurrent`, held until
   * the response has ended) is released here.
   */
  readonly atExchangeEnd: (() => void)[];
  /** A WebSocket upgrade (SPEC §20.3): each attempt is this handshake instead of a request; never retried. */
  handshake?: Handshake;
  /** The matched route's name ('' before one matched): what report-mode counters are labelled with (SPEC §19.2). */
  route: string;
  /**
   * The attempt's per-try timer, on a route with `timeouts.firstByte` (SPEC §16): the attempt stops it when the
   * response headers arrive, and the first-byte timer takes over.
   */
  perTryTimer?: NodeJS.Timeout;
  /**
   * The validator a route's cache revalidates its stale entry with (If-None-Match or If-Modified-Since, SPEC §17),
   * sent on every attempt besides the client's own headers.
   */
  revalidation?: Readonly<Record<string, string>>;
  /** The Authorization the last attempt's credentials wrote (SPEC §18): an OAuth2 401 names the token it refused. */
  sentCredential?: string;
}

/** An upstream or forward target, with its breaker's and (when paced) its pacer's policy layer for the route. */
export interface Destination {
  readonly target: UpstreamTarget;
  /** `failedLate`: an answer that failed after it began (a stream cut, SPEC §16) counts for the breaker. */
  readonly breaker: Policy & { failedLate?(classification: Classification): void };
  readonly pacing?: Policy;
  /** Request headers for this target only (a failover target's credentials), applied after the route's. */
  readonly edits?: CompiledHeaderEdits;
  /** The target's own credentials (SPEC §18), applied on every attempt after the headers. */
  readonly credential?: Credential;
}

/** The result of one attempt, or of the whole pipeline. */
export interface AttemptResult {
  readonly classification: Classification;
  /** A 401 to an OAuth2 token (SPEC §18): the token's matter, never a breaker failure whatever failOn lists. */
  readonly tokenRefused?: boolean;
  /** The upstream's response when its headers arrived; its body not yet read. */
  readonly response?: UpstreamResponse;
  /**
   * No retry may follow, whatever the outcome: set by the breaker on a
   * failed probe of an upstream that is down (the retry would only meet
   * the reopened circuit after its backoff).
   */
  readonly final?: boolean;
  /**
   * A retry would go to another available target (failover.ts): it does
   * not wait for backoff or Retry-After, and retryAfter.max does not stop it.
   */
  readonly elsewhere?: boolean;
  /** The start of an error answer's body, read for a provider rule (SPEC §14): sent before the rest. */
  readonly buffered?: BufferedAnswer;
}

/** The rest of a route's stack, below the policy that calls it. */
export type Next = (ctx: RequestContext, signal: Signal) => Promise<AttemptResult>;

/**
 * One layer of a route's stack (pipeline.ts orders them): built once per
 * route from its config, it sees each request as `run(ctx, signal, next)`.
 */
export interface Policy {
  run(ctx: RequestContext, signal: Signal, next: Next): Promise<AttemptResult>;
  close(): void;
}

export interface PolicyDeps {
  /** Milliseconds on a monotonic clock; injectable for tests. */
  readonly now: () => number;
  /** Uniform in [0, 1); injectable for tests. */
  readonly random: () => number;
  /** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
  readonly sleep: (ms: number, signal: Signal) => Promise<void>;
  /** Milliseconds since the epoch, for the HTTP-dates a response names (lib/clock.ts). */
  readonly wall: () => number;
  readonly metrics: Metrics;
}
