/**
 * WebSocket upgrades (SPEC §4, §20.3): routed and decided like any request.
 * The front door, the route's rate limit (a `maxConcurrent` slot is held
 * until the tunnel closes), pacing, the breaker (a failed handshake is a
 * failure per `failOn`), the deadline, the route's and the target's
 * headers: the route's pipeline runs, and its attempt is the handshake,
 * through http-proxy-3's `ws`, never retried. Timeouts apply on the way in
 * only: `connect` to the TCP (and TLS) connection, `perTry` to the answer.
 * Only a 101 becomes a tunnel, which lives as long as both sides keep it;
 * another answer goes back as it came. A refusal is the §5 body on the raw
 * socket, with Connection: close.
 *
 * Another `Upgrade` value is not an upgrade Breakwater makes (§4 removes
 * the header): the request is served as a plain one on the same socket.
 */
import { ServerResponse, type ClientRequest, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { BreakwaterError } from '../errors/breakwater-error.js';
import { ClientClosedError } from '../errors/client-closed.js';
import { Cancellation, type Signal } from '../lib/signal.js';
import type { AttemptResult, Handshake, HandshakeInput } from '../policy/context.js';
import type { Runtime } from '../runtime.js';
import { hasBody } from '../upstream/body.js';
import {
  classifyConnectTimeout,
  classifyError,
  classifyStatus,
  classifyAbort,
  refusedByHttpClient,
  type Classification,
} from '../upstream/classify.js';
import { upgradeProxy } from '../upstream/upgrade-proxy.js';
import { CLIENT_CLOSED_STATUS, Exchange, type ServerContext, type ServerDeps } from './exchange.js';
import { handleRequest } from './request.js';
import { arrivalOf, contextOf, routeOf } from './routing.js';
import { matchedTo } from './matched.js';

/** Hooks of one handshake, found from http-proxy-3's `proxyReqWs` event by the request it carries. */
const handshakes = new WeakMap<IncomingMessage, HandshakeWatch>();
const watched = new WeakSet<object>();

/**
 * One handshake attempt: its connect timer, the upstream's answer, the
 * signal (per-try deadline, client gone); settles its promise once.
 */
class HandshakeWatch {
  /** The upstream connection is up (for classifying an error). */
  connected = false;
  private outgoing: ClientRequest | undefined;
  private settled = false;
  private readonly timer: NodeJS.Timeout;
  private readonly stopListening: () => void;

  constructor(
    private readonly describe: string,
    connectTimeoutMs: number,
    private readonly signal: Signal,
    private readonly resolve: (result: AttemptResult) => void,
    private readonly reject: (error: Error) => void,
    /** The upstream's status, as soon as it answers (before the pipeline returns: the socket may close first). */
    private readonly answered: (status: number) => void,
  ) {
    this.timer = setTimeout(
      () =>
        this.fail(classifyConnectTimeout(`could not be connected to within ${connectTimeoutMs} ms (connect timeout)`)),
      connectTimeoutMs,
    );
    this.stopListening = signal.onAbort(this.onAbort);
  }

  attach(proxyReq: ClientRequest): void {
    this.outgoing = proxyReq;
    proxyReq.once('socket', (upstreamSocket: Socket) => {
      // For TLS the connection is up after the handshake, as for requests.
      if (upstreamSocket instanceof TLSSocket) upstreamSocket.once('secureConnect', this.onConnected);
      else if (upstreamSocket.connecting) upstreamSocket.once('connect', this.onConnected);
      else this.onConnected();
    });
    // 101: http-proxy-3 joins the two sockets. Anything else: it relays the answer as it is.
    proxyReq.once('upgrade', () => this.answer(101));
    proxyReq.once('response', (response: IncomingMessage) => this.answer(response.statusCode ?? 502));
  }

  /** An error of the upstream connection before any answer. */
  error(error: Error): void {
    if (refusedByHttpClient(error, { connected: this.connected })) {
      this.end();
      this.reject(
        new BreakwaterError(
          'BAD_REQUEST',
          'The upgrade cannot be sent upstream: the HTTP client refuses its method, path or a header name or value.',
        ),
      );
      return;
    }
    this.fail(classifyError(error, { connected: this.connected }));
  }

  private fail(classification: Classification): void {
    if (this.settled) return;
    this.outgoing?.destroy();
    this.settle({
      classification: { ...classification, detail: `${this.describe} ${classification.detail ?? ''}`.trim() },
    });
  }

  private answer(status: number): void {
    if (this.settled) return;
    this.answered(status);
    this.settle({ classification: classifyStatus(status) });
  }

  private settle(result: AttemptResult): void {
    if (this.settled) return;
    this.end();
    this.resolve(result);
  }

  private end(): void {
    this.settled = true;
    clearTimeout(this.timer);
    this.stopListening();
  }

  private readonly onConnected = () => {
    this.connected = true;
    clearTimeout(this.timer);
  };

  private readonly onAbort = () => {
    const reason: unknown = this.signal.reason;
    const timedOut = classifyAbort(reason);
    if (timedOut) {
      this.fail(timedOut);
      return;
    }
    if (this.settled) return;
    this.end();
    this.outgoing?.destroy();
    this.reject(reason instanceof Error ? reason : new ClientClosedError());
  };
}

/** The handshake of `req` on `socket`: what each attempt of the route's pipeline does for an upgrade. */
function handshakeOf(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  answered: (status: number) => void,
): Handshake {
  return (input: HandshakeInput, signal: Signal) =>
    new Promise<AttemptResult>((resolve, reject) => {
      const { upstream } = input;
      const watch = new HandshakeWatch(
        `Upstream '${upstream.name}' (${upstream.url.origin})`,
        input.connectTimeoutMs,
        signal,
        resolve,
        reject,
        answered,
      );
      handshakes.set(req, watch);
      const proxy = upgradeProxy();
      if (!watched.has(proxy)) {
        watched.add(proxy);
        proxy.on('proxyReqWs', (proxyReq: ClientRequest, wsReq: IncomingMessage) =>
          handshakes.get(wsReq)?.attach(proxyReq),
        );
      }
      req.headers = input.headers as typeof req.headers;
      req.url = input.path;
      // A forward target's own agent: it connects only to checked addresses (and verifies TLS against its roots).
      const agent = upstream.upgradeAgent?.() ?? false;
      proxy.ws(
        req,
        socket,
        head,
        { target: upstream.url, agent, ca: upstream.ca, secure: upstream.rejectUnauthorized },
        (error: Error) => watch.error(error),
      );
    });
}

function isWebSocket(req: IncomingMessage): boolean {
  return (req.headers.upgrade ?? '').toLowerCase() === 'websocket';
}

/** Routes the upgrade and runs the route's pipeline with the handshake as its attempt; throws the refusal. */
async function upgrade(
  runtime: Runtime,
  ctx: ServerContext,
  exchange: Exchange,
  socket: Duplex,
  head: Buffer,
  draining: boolean,
  answered: (status: number) => void,
): Promise<void> {
  const found = routeOf(runtime, ctx, arrivalOf(ctx.req), draining);
  const route = found instanceof Promise ? await found : found;
  matchedTo(ctx, exchange, route, runtime.leakGuard);
  if (ctx.method !== 'GET')
    throw new BreakwaterError('BAD_REQUEST', `Only GET can upgrade to a WebSocket, not ${ctx.method}.`);
  ctx.handshake = handshakeOf(ctx.req, socket, head, answered);
  const { classification } = await route.pipeline.run(ctx);
  // The upstream answered: a tunnel (101), or its answer relayed as it came.
  if (classification.status !== undefined) return;
  throw new BreakwaterError(
    classification.code ?? 'INTERNAL_ERROR',
    classification.detail ?? 'The handshake failed without an answer.',
  );
}

/**
 * Another `Upgrade` value (h2c, …): served as a plain request on the same
 * socket, the header removed (SPEC §4); one with a body is refused, since
 * node stopped reading at the headers.
 */
function servePlain(req: IncomingMessage, socket: Duplex, deps: ServerDeps, draining: boolean): void {
  // node took its own error listener off an upgraded socket: without one, a client's reset is an uncaught
  // 'error' (a crash).
  socket.on('error', () => socket.destroy());
  if (hasBody(req)) {
    const runtime = deps.runtime();
    const ctx = contextOf(req, undefined, arrivalOf(req), runtime, new Cancellation(), deps.now());
    const exchange = new Exchange(deps, runtime, ctx);
    exchange.finish(
      exchange.refuse(
        new BreakwaterError(
          'BAD_REQUEST',
          'A request with a body cannot ask for a protocol upgrade other than websocket.',
        ),
        socket,
      ),
    );
    return;
  }
  delete req.headers.upgrade;
  const res = new ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket as Socket);
  res.once('finish', () => (socket as Socket).destroySoon());
  // node no longer reads an upgraded socket: reading it (and dropping what comes, a body-less request has
  // nothing more) is how a client that leaves is seen.
  socket.resume();
  void handleRequest(req, res, deps, draining);
}

/** Handles one upgrade request on the runtime current when it arrived; `draining` once shutdown began. */
export function handleUpgrade(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  deps: ServerDeps,
  draining: boolean,
): void {
  if (!isWebSocket(req)) return servePlain(req, socket, deps, draining);
  const runtime = deps.runtime();
  const cancellation = new Cancellation();
  const ctx = contextOf(req, undefined, arrivalOf(req), runtime, cancellation, deps.now());
  const exchange = new Exchange(deps, runtime, ctx);
  let status = CLIENT_CLOSED_STATUS;
  socket.on('error', () => socket.destroy());
  socket.once('close', () => {
    cancellation.abort(new ClientClosedError());
    // The rate limit's slot (maxConcurrent) is held until the tunnel closes.
    for (const release of ctx.atExchangeEnd) release();
    if (status === CLIENT_CLOSED_STATUS) ctx.flags.add('CLIENT_CLOSED');
    exchange.finish(status);
  });
  upgrade(runtime, ctx, exchange, socket, head, draining, (answered) => (status = answered)).then(
    () => {},
    (error: unknown) => {
      if (socket.destroyed || error instanceof ClientClosedError) return;
      status = exchange.refuse(error, socket);
    },
  );
}
