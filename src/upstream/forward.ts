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

export function createForwarder(): Forwarder {
  // One ProxyServer for the process: it holds no per-upstream state; the
  // target and agent come with each call. Errors always go to the per-call
  // callback, but an 'error' listener must exist or http-proxy throws.
  const proxy = new ProxyServer({ selfHandleResponse: true, changeOrigin: true, xfwd: false, prependPath: true });
  proxy.on('error', () => {});
  proxy.on('econnreset', () => {});

  function forward(input: ForwardInput, signal: Signal): Promise<ForwardResult> {
    const { req, res, upstream } = input;
    return new Promise<ForwardResult>((resolve, reject) => {
      if (signal.aborted) {
        reject(abortReasonToError(signal.reason));
        return;
      }
      let settled = false;
      // eslint-disable-next-line prefer-const -- the cleanups above read it before it is set below
      let outgoing: ClientRequest | undefined;
      let connected = false;
      let connectTimer: NodeJS.Timeout | undefined;
      let stopListening: () => void = () => {};

      const cleanup = () => {
        settled = true;
        if (connectTimer) clearTimeout(connectTimer);
        stopListening();
        input.body?.off('error', onBodyError);
      };
      const settle = (result: ForwardResult) => {
        if (settled) return;
        cleanup();
        resolve(result);
      };
      const fail = (error: Error) => {
        if (settled) return;
        cleanup();
        outgoing?.destroy();
        reject(error);
      };
      const failed = (classification: Classification) => {
        if (settled) return;
        cleanup();
        outgoing?.destroy();
        resolve({ classification: { ...classification, detail: `${describeUpstream(upstream)} ${classification.detail ?? ''}`.trim() } });
      };

      function onAbort() {
        const reason: unknown = signal.reason;
        if (reason instanceof DeadlineExceeded) failed(classifyTimeout(reason.detail));
        else fail(abortReasonToError(reason));
      }
      function onBodyError(error: Error) {
        fail(error instanceof BreakwaterError ? error : new ClientClosedError());
      }
      stopListening = signal.onAbort(onAbort);
      input.body?.on('error', onBodyError);

      // http-proxy-3 builds the outgoing request from req.headers and
      // req.url; the original values are kept by the caller.
      req.headers = input.headers as typeof req.headers;
      req.url = input.path;
      proxy.web(req, res, input.body ? { ...upstream.proxyOptions, buffer: input.body } : upstream.proxyOptions, (error: Error) => failed(classifyError(error, { connected })));

      outgoing = takeLastRequest();
      if (!outgoing) {
        // http-proxy-3 changed how it creates requests: never guess.
        fail(new Error('http-proxy-3 did not create the upstream request synchronously'));
        return;
      }
      const request = outgoing;
      request.on('socket', (socket: Socket) => {
        if (settled) return;
        if (request.reusedSocket) {
          connected = true;
          return;
        }
        const event = socket instanceof TLSSocket ? 'secureConnect' : 'connect';
        socket.once(event, () => {
          connected = true;
          if (connectTimer) clearTimeout(connectTimer);
        });
        connectTimer = setTimeout(() => failed(classifyConnectTimeout(`could not be connected to within ${input.connectTimeoutMs} ms (connect timeout)`)), input.connectTimeoutMs);
      });
      request.on('response', (response: IncomingMessage) => {
        settle({ classification: classifyStatus(response.statusCode ?? 0), response });
      });
    });
  }

  return {
    forward,
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
