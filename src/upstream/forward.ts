/**
 * One attempt upstream through http-proxy-3, resolved as soon as the
 * response headers arrive (or the attempt fails) and never rejected for an
 * upstream failure: those come back classified, as values. It rejects only
 * when the attempt cannot be made at all for a reason on the client's side
 * (the client left, its body was too large).
 *
 * The outgoing request is captured through the upstream's agent (see
 * agents.ts) so that timers can destroy it before it has a socket.
 */
import type { Agent, ClientRequest, IncomingMessage, ServerResponse, IncomingMessage as ServerRequest, OutgoingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { ProxyServer } from 'http-proxy-3';
import { takeLastRequest } from './agents.js';
import { BreakwaterError } from '../errors/breakwater-error.js';
import { ClientClosedError } from '../errors/client-closed.js';
import { DeadlineExceeded } from '../errors/deadline-exceeded.js';
import type { Signal } from '../lib/signal.js';
import { classifyConnectTimeout, classifyError, classifyStatus, classifyTimeout, type Classification } from './classify.js';

export interface UpstreamTarget {
  readonly name: string;
  /** Base URL; its path is prepended to the request path. */
  readonly url: URL;
  readonly agent: Agent;
  /** Extra CA (PEM) and verification, for https upstreams. */
  readonly ca: string | undefined;
  readonly rejectUnauthorized: boolean;
  /**
   * The per-call options of http-proxy-3 for this upstream, built once.
   * `prependPath` only when the base URL has a path or query: otherwise
   * http-proxy-3 would parse the URL again on every attempt for nothing.
   */
  readonly proxyOptions: { readonly target: URL; readonly agent: Agent; readonly ca: string | undefined; readonly secure: boolean; readonly prependPath: boolean };
}

export interface ForwardInput {
  readonly req: ServerRequest;
  readonly res: ServerResponse;
  readonly upstream: UpstreamTarget;
  /** Path and query sent upstream (after stripPrefix). */
  readonly path: string;
  /** The complete header set sent upstream (already rewritten). */
  readonly headers: OutgoingHttpHeaders;
  /** The body for this attempt, or undefined to stream the live request. */
  readonly body: Readable | undefined;
  /** TCP+TLS connect timeout, ms. */
  readonly connectTimeoutMs: number;
}

export interface ForwardResult {
  readonly classification: Classification;
  readonly response?: IncomingMessage;
}

export interface Forwarder {
  forward(input: ForwardInput, signal: Signal): Promise<ForwardResult>;
  readonly proxy: ProxyServer;
  close(): void;
}

function describeUpstream(target: UpstreamTarget): string {
  return `Upstream '${target.name}' (${target.url.origin})`;
}

/** One attempt through http-proxy-3: settles once, with the response, a classified failure, or an error (the client left). */
class ForwardAttempt {
  private settled = false;
  private outgoing: ClientRequest | undefined;
  private connected = false;
  private connectTimer: NodeJS.Timeout | undefined;
  private stopListening: () => void = () => {};

  constructor(
    private readonly input: ForwardInput,
    private readonly signal: Signal,
    private readonly resolve: (result: ForwardResult) => void,
    private readonly reject: (error: Error) => void,
  ) {}

  start(proxy: ProxyServer): void {
    const { input, signal } = this;
    const { req, res, upstream } = input;
    this.stopListening = signal.onAbort(this.onAbort);
    input.body?.on('error', this.onBodyError);
    // http-proxy-3 builds the outgoing request from req.headers and
    // req.url; the original values are kept by the caller.
    req.headers = input.headers as typeof req.headers;
    req.url = input.path;
    proxy.web(req, res, input.body ? { ...upstream.proxyOptions, buffer: input.body } : upstream.proxyOptions, (error: Error) => this.failed(classifyError(error, { connected: this.connected })));
    const request = takeLastRequest();
    if (!request) {
      // http-proxy-3 changed how it creates requests: never guess.
      this.fail(new Error('http-proxy-3 did not create the upstream request synchronously'));
      return;
    }
    this.outgoing = request;
    request.on('socket', (socket: Socket) => this.onSocket(request, socket));
    request.on('response', (response: IncomingMessage) => this.settle({ classification: classifyStatus(response.statusCode ?? 0), response }));
  }

  /** A fresh connection gets the connect timeout until it is up (after TLS for https); a reused one is up. */
  private onSocket(request: ClientRequest, socket: Socket): void {
    if (this.settled) return;
    if (request.reusedSocket) {
      this.connected = true;
      return;
    }
    const event = socket instanceof TLSSocket ? 'secureConnect' : 'connect';
    socket.once(event, () => {
      this.connected = true;
      if (this.connectTimer) clearTimeout(this.connectTimer);
    });
    const ms = this.input.connectTimeoutMs;
    this.connectTimer = setTimeout(() => this.failed(classifyConnectTimeout(`could not be connected to within ${ms} ms (connect timeout)`)), ms);
  }

  private cleanup(): void {
    this.settled = true;
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.stopListening();
    this.input.body?.off('error', this.onBodyError);
  }

  private settle(result: ForwardResult): void {
    if (this.settled) return;
    this.cleanup();
    this.resolve(result);
  }

  private fail(error: Error): void {
    if (this.settled) return;
    this.cleanup();
    this.outgoing?.destroy();
    this.reject(error);
  }

  private failed(classification: Classification): void {
    if (this.settled) return;
    this.cleanup();
    this.outgoing?.destroy();
    this.resolve({ classification: { ...classification, detail: `${describeUpstream(this.input.upstream)} ${classification.detail ?? ''}`.trim() } });
  }

  private readonly onAbort = () => {
    const reason: unknown = this.signal.reason;
    if (reason instanceof DeadlineExceeded) this.failed(classifyTimeout(reason.detail));
    else this.fail(abortReasonToError(reason));
  };

  private readonly onBodyError = (error: Error) => {
    this.fail(error instanceof BreakwaterError ? error : new ClientClosedError());
  };
}

export function createForwarder(): Forwarder {
  // One ProxyServer for the process: it holds no per-upstream state; the
  // target and agent come with each call. Errors always go to the per-call
  // callback, but an 'error' listener must exist or http-proxy throws.
  const proxy = new ProxyServer({ selfHandleResponse: true, changeOrigin: true, xfwd: false, prependPath: true });
  proxy.on('error', () => {});
  proxy.on('econnreset', () => {});
  return {
    forward: (input, signal) =>
      new Promise<ForwardResult>((resolve, reject) => {
        if (signal.aborted) reject(abortReasonToError(signal.reason));
        else new ForwardAttempt(input, signal, resolve, reject).start(proxy);
      }),
    proxy,
    close() {
      proxy.removeAllListeners();
    },
  };
}

function abortReasonToError(reason: unknown): Error {
  if (reason instanceof Error) return reason;
  return new ClientClosedError();
}
