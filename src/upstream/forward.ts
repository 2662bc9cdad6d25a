/**
 * One attempt upstream on the target's undici pool, resolved as soon as the
 * response headers arrive (or the attempt fails) and never rejected for an
 * upstream failure: those come back classified, as values. It rejects only
 * when the attempt cannot be made at all for a reason on the client's side
 * (the client left, its body was too large).
 *
 * The attempt is undici's handler itself (`Dispatcher.dispatch` with
 * callbacks, no per-request stream or promise inside undici): the body
 * streams into an UpstreamResponse with backpressure.
 */
import type { Agent, OutgoingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { BreakwaterError } from '../errors/breakwater-error.js';
import { ClientClosedError } from '../errors/client-closed.js';
import type { Signal } from '../lib/signal.js';
import {
  classifyConnectTimeout,
  classifyError,
  classifyStatus,
  classifyAbort,
  refusedByHttpClient,
  type Classification,
} from './classify.js';
import type { UpstreamPool } from './pools.js';
import { UpstreamResponse } from './response.js';

export interface UpstreamTarget {
  readonly name: string;
  /** Base URL; its path and query are joined to every request's. */
  readonly url: URL;
  readonly pool: UpstreamPool;
  /** The pool's connection limit (`pool.maxSockets`). */
  readonly connections: number;
  /** Extra CA (PEM) and verification, for https upstreams (WebSocket upgrades). */
  readonly ca: string | undefined;
  readonly rejectUnauthorized: boolean;
  /**
   * The agent a WebSocket upgrade to this target uses (a forward target's checked lookup), or null for node's
   * default.
   */
  readonly upgradeAgent: (() => Agent) | null;
  /**
   * `Basic …` from the configured URL's `user:pass@` (taken out of `url`), sent unless the route's or target's
   * headers set Authorization.
   */
  readonly authorization?: string;
}

export interface ForwardInput {
  readonly method: string;
  readonly upstream: UpstreamTarget;
  /** Path and query sent upstream (after stripPrefix), before the target's own path is joined. */
  readonly path: string;
  /** The complete header set sent upstream (already rewritten). */
  readonly headers: OutgoingHttpHeaders;
  /**
   * The body for this attempt: bytes held for replay, a stream of its own, or undefined for none
   * (upstream/body.ts).
   */
  readonly body: Readable | Buffer | undefined;
  /** TCP+TLS connect timeout, ms. */
  readonly connectTimeoutMs: number;
  /** Called when the request goes out on its connection (the first byte's clock starts, SPEC §16). */
  readonly onSent?: () => void;
}

export interface ForwardResult {
  readonly classification: Classification;
  readonly response?: UpstreamResponse;
}

export interface Forwarder {
  forward(input: ForwardInput, signal: Signal): Promise<ForwardResult>;
}

/** `Upstream 'name' (origin)`: how a problem's detail names the target. */
export function describeUpstream(target: UpstreamTarget): string {
  return `Upstream '${target.name}' (${target.url.origin})`;
}

/** The target URL's path and query joined with the request's, as http-proxy's `prependPath` did. */
export function joinTargetPath(url: URL, path: string): string {
  if (url.pathname === '/' && url.search === '') return path;
  const q = path.indexOf('?');
  const requestPath = q === -1 ? path : path.slice(0, q);
  const query = [url.search.slice(1), q === -1 ? '' : path.slice(q + 1)].filter(Boolean).join('&');
  const base = url.pathname;
  let joined = base;
  if (requestPath) {
    if (joined.endsWith('/')) joined += requestPath.startsWith('/') ? requestPath.slice(1) : requestPath;
    else joined += requestPath.startsWith('/') ? requestPath : `/${requestPath}`;
  }
  return query ? `${joined}?${query}` : joined;
}

/**
 * One attempt, as an undici handler: settles once, with the response, a
 * classified failure, or an error (the client left).
 */
class ForwardAttempt implements Dispatcher.DispatchHandler {
  private settled = false;
  private connected = false;
  private connectTimer: NodeJS.Timeout | undefined;
  /** undici's abort for this request, from onConnect. */
  private abortUpstream: ((reason?: Error) => void) | undefined;
  /** Why the attempt ended before undici handed over its abort: applied in onConnect. */
  private abortReason: Error | undefined;
  private response: UpstreamResponse | undefined;
  private stopListening: () => void = () => {};
  private body: Readable | Buffer | null = null;

  constructor(
    private readonly input: ForwardInput,
    private readonly signal: Signal,
    private readonly resolve: (result: ForwardResult) => void,
    private readonly reject: (error: Error) => void,
  ) {}

  start(): void {
    const { input, signal } = this;
    const { upstream } = input;
    this.stopListening = signal.onAbort(this.onAbort);
    const body = (this.body = input.body ?? null);
    if (body !== null && !Buffer.isBuffer(body)) body.on('error', this.onBodyError);
    this.connectTimer = setTimeout(this.onConnectTimeout, input.connectTimeoutMs);
    upstream.pool.dispatch(
      {
        method: input.method,
        path: joinTargetPath(upstream.url, input.path),
        headers: input.headers as Record<string, string>,
        body,
      },
      this,
    );
  }

  // undici's handler (the callback form its clients call directly).

  onConnect(abort: (reason?: Error) => void): void {
    if (this.abortReason) {
      abort(this.abortReason);
      return;
    }
    this.abortUpstream = abort;
    this.connected = true;
    clearTimeout(this.connectTimer);
    this.input.onSent?.();
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusMessage: string): boolean {
    // 1xx informational answers are not relayed; the final answer follows.
    if (statusCode < 200 || this.settled) return true;
    const response = new UpstreamResponse(statusCode, statusMessage, rawHeaders, resume, this.abortUpstream!);
    this.response = response;
    this.settle({ classification: classifyStatus(statusCode), response });
    return true;
  }

  onData(chunk: Buffer): boolean {
    return this.response ? this.response.deliver(chunk) : true;
  }

  onComplete(): void {
    this.response?.finish();
  }

  onError(error: Error): void {
    if (this.response) this.response.fail(error);
    // A request the HTTP client will not send is the client's (SPEC §20.2): not an attempt outcome, never
    // retried nor a breaker failure.
    else if (refusedByHttpClient(error, { connected: this.connected })) this.fail(unsendable());
    else if (!this.settled) this.failed(classifyError(error, { connected: this.connected }));
  }

  onUpgrade(): void {
    // Never asked for: upgrades go through server/websocket.ts.
  }

  // The attempt's own ends.

  private cleanup(): void {
    this.settled = true;
    clearTimeout(this.connectTimer);
    this.stopListening();
    const body = this.body;
    if (body !== null && !Buffer.isBuffer(body)) body.off('error', this.onBodyError);
  }

  private settle(result: ForwardResult): void {
    if (this.settled) return;
    this.cleanup();
    this.resolve(result);
  }

  /** Ends a request undici holds: at once when it is on a socket, else as soon as it gets one. */
  private abort(reason: Error): void {
    if (this.abortUpstream) this.abortUpstream(reason);
    else this.abortReason = reason;
  }

  private fail(error: Error): void {
    if (this.settled) return;
    this.cleanup();
    this.abort(error);
    this.reject(error);
  }

  private failed(classification: Classification): void {
    if (this.settled) return;
    this.cleanup();
    this.abort(new Error(classification.detail ?? classification.outcome));
    this.resolve({
      classification: {
        ...classification,
        detail: `${describeUpstream(this.input.upstream)} ${classification.detail ?? ''}`.trim(),
      },
    });
  }

  /**
   * The connection is not up within the route's connect timeout. A request
   * waiting for a connection of a full pool is not connecting: it waits
   * (its per-try timer and deadline still run), as it would for a socket.
   */
  private readonly onConnectTimeout = () => {
    const { pool, connections } = this.input.upstream;
    if (pool.stats.connected >= connections) return;
    const ms = this.input.connectTimeoutMs;
    this.failed(classifyConnectTimeout(`could not be connected to within ${ms} ms (connect timeout)`));
  };

  private readonly onAbort = () => {
    const reason: unknown = this.signal.reason;
    const timedOut = classifyAbort(reason);
    if (timedOut) this.failed(timedOut);
    else this.fail(abortReasonToError(reason));
  };

  private readonly onBodyError = (error: Error) => {
    this.fail(error instanceof BreakwaterError ? error : new ClientClosedError());
  };
}

export function createForwarder(): Forwarder {
  return {
    forward: (input, signal) =>
      new Promise<ForwardResult>((resolve, reject) => {
        if (signal.aborted) reject(abortReasonToError(signal.reason));
        else new ForwardAttempt(input, signal, resolve, reject).start();
      }),
  };
}

/** Never the refused value in the detail: it may be a header the client holds secret. */
function unsendable(): BreakwaterError {
  return new BreakwaterError(
    'BAD_REQUEST',
    'The request cannot be sent upstream: the HTTP client refuses its method, path or a header name or value.',
  );
}

function abortReasonToError(reason: unknown): Error {
  if (reason instanceof Error) return reason;
  return new ClientClosedError();
}
