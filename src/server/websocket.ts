/**
 * WebSocket upgrades (SPEC §4): matched like any request, forwarded with
 * http-proxy-3's `ws`, no retries, and timeouts only on the way in: the
 * route's `connect` timeout for the TCP connection and `perTry` for the
 * handshake's answer. Once upgraded, the connection lives as long as both
 * sides keep it. A refused or failed upgrade gets the problem body on the
 * raw socket.
 */
import { randomUUID } from 'node:crypto';
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import { BreakwaterError } from '../errors/breakwater-error.js';
import type { Flag } from '../policy/context.js';
import type { RouteRuntime, Runtime } from '../runtime.js';
import { rewritePath } from '../router/match-route.js';
import { normalizeTarget } from '../router/normalize-path.js';
import { classifyError } from '../upstream/classify.js';
import { buildUpstreamHeaders, clientRequestId } from '../upstream/headers.js';
import { Exchange, type ServerDeps } from './exchange.js';
import { authorityOf, checkIdentity, interceptedTarget } from '../tls/interceptor.js';
import type { UpstreamTarget } from '../upstream/forward.js';
import { upgradeProxy } from '../upstream/upgrade-proxy.js';

/** Hooks of one upgrade, found from http-proxy-3's `proxyReqWs` event by the request it carries. */
interface UpgradeAttempt {
  attach(proxyReq: ClientRequest): void;
}

const attempts = new WeakMap<IncomingMessage, UpgradeAttempt>();
const watched = new WeakSet<object>();

/** What an upgrade goes to: the route it matched and its upstream (or the intercepted host), or why none. */
type UpgradeMatch = { readonly route: RouteRuntime; readonly upstream: UpstreamTarget; readonly intercepted: boolean } | BreakwaterError;

function matchUpgrade(req: IncomingMessage, runtime: Runtime, request: { method: string; path: string; host: string }): UpgradeMatch {
  const { method, path, host } = request;
  let route: RouteRuntime | undefined;
  let upstream: UpstreamTarget | null = null;
  // Decrypted from an intercepted CONNECT: matched by the CONNECT host; a
  // route without an upstream goes to that host over verified TLS.
  const intercepted = interceptedTarget(req.socket);
  if (intercepted) {
    try {
      checkIdentity(req, intercepted);
    } catch (error) {
      return error as BreakwaterError;
    }
    route = runtime.matchForward({ host: authorityOf(intercepted), method, path });
    upstream = route ? (route.upstream ?? runtime.forwardTarget(intercepted.host, intercepted.port, true).target) : null;
  } else {
    route = runtime.match({ host, method, path });
    upstream = route?.upstream ?? null;
  }
  if (!route || !upstream) return new BreakwaterError('NO_ROUTE', `No route matches ${method} ${path}${host ? ` for host ${host}` : ''}.`);
  return { route, upstream, intercepted: intercepted !== undefined };
}

/**
 * The timers of one handshake: `connect` until the upstream connection is
 * up (after TLS for https), then `perTry` until the upstream answers; the
 * first failure wins and ends the attempt.
 */
class Handshake implements UpgradeAttempt {
  /** The upstream connection is up (for classifying an error). */
  connected = false;
  private outgoing: ClientRequest | undefined;
  private settled = false;
  private timer: NodeJS.Timeout;

  constructor(
    private readonly describe: string,
    private readonly timeouts: { readonly connect: number; readonly perTry: number },
    private readonly onFail: (error: BreakwaterError) => void,
    /** The upstream answered without upgrading: its status. */
    private readonly onAnswer: (status: number) => void,
  ) {
    this.timer = setTimeout(
      () => this.fail(new BreakwaterError('UPSTREAM_CONNECT_FAILED', `${describe} could not be connected to within ${timeouts.connect} ms (connect timeout).`)),
      timeouts.connect,
    );
  }

  attach(proxyReq: ClientRequest): void {
    this.outgoing = proxyReq;
    proxyReq.once('socket', (upstreamSocket: Socket) => {
      // For TLS the connection is up after the handshake, as for requests.
      if (upstreamSocket instanceof TLSSocket) upstreamSocket.once('secureConnect', this.onConnected);
      else if (upstreamSocket.connecting) upstreamSocket.once('connect', this.onConnected);
      else this.onConnected();
    });
    proxyReq.once('upgrade', this.onAnswered);
    proxyReq.once('response', (response: IncomingMessage) => {
      // Not upgraded: http-proxy-3 relays the upstream's answer as it is.
      this.onAnswered();
      this.onAnswer(response.statusCode ?? 502);
    });
  }

  fail(error: BreakwaterError): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.timer);
    this.outgoing?.destroy();
    this.onFail(error);
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  private readonly onConnected = () => {
    this.connected = true;
    if (this.settled) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(
      () => this.fail(new BreakwaterError('UPSTREAM_TIMEOUT', `${this.describe} did not answer the WebSocket handshake within ${this.timeouts.perTry} ms.`)),
      this.timeouts.perTry,
    );
  };

  private readonly onAnswered = () => {
    this.settled = true;
    clearTimeout(this.timer);
  };
}

export function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, deps: ServerDeps): void {
  const runtime = deps.runtime();
  const requestId = clientRequestId(req.headers['x-request-id']) ?? randomUUID();
  const target = normalizeTarget(req.url ?? '/');
  const path = target.path;
  const host = (req.headers.host ?? '').toLowerCase();
  const method = req.method ?? 'GET';
  let status = 101;
  const record = { requestId, method, path, host, startedAt: deps.now(), attempts: 0, target: null as string | null, flags: new Set<Flag>() };
  const exchange = new Exchange(deps, runtime, record);
  socket.once('close', () => exchange.finish(status));
  socket.on('error', () => socket.destroy());

  const refuse = (error: BreakwaterError) => {
    status = exchange.refuse(error, socket);
  };

  if (!target.ok) return refuse(new BreakwaterError('BAD_REQUEST', `The request path ${target.path} cannot be routed: ${target.reason}.`));
  const match = matchUpgrade(req, runtime, { method, path, host });
  if (match instanceof BreakwaterError) return refuse(match);
  const { route, upstream, intercepted } = match;
  // One attempt, once a route matched (the handshake is never retried).
  record.attempts = 1;
  record.target = upstream.name;
  exchange.matched = { route: route.name, upstream: route.upstream?.config.name ?? upstream.name, plainErrors: route.plainErrors };
  if (method !== 'GET' || (req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
    return refuse(new BreakwaterError('BAD_REQUEST', `Only WebSocket upgrades are proxied, not "${req.headers.upgrade ?? ''}" with ${method}.`));
  }
  const config = route.config;
  const describe = `Upstream '${upstream.name}' (${upstream.url.origin})`;
  const watch = new Handshake(describe, config.timeouts, refuse, (answered) => (status = answered));
  attempts.set(req, watch);

  const proxy = upgradeProxy();
  if (!watched.has(proxy)) {
    watched.add(proxy);
    proxy.on('proxyReqWs', (proxyReq: ClientRequest, wsReq: IncomingMessage) => attempts.get(wsReq)?.attach(proxyReq));
  }

  req.headers = buildUpstreamHeaders(req.headers, {
    remoteAddress: req.socket.remoteAddress,
    proto: intercepted ? 'https' : 'http',
    requestId,
    edits: route.requestEdits,
    websocket: true,
  }) as typeof req.headers;
  req.url = rewritePath(target.url, config.match.pathPrefix, config.stripPrefix);

  // A forward target's own agent: it connects only to checked addresses
  // (and verifies TLS against its roots).
  const agent = upstream.upgradeAgent?.() ?? false;
  proxy.ws(req, socket, head, { target: upstream.url, agent, ca: upstream.ca, secure: upstream.rejectUnauthorized }, (error: Error) => {
    const classification = classifyError(error, { connected: watch.connected });
    watch.fail(new BreakwaterError(classification.code ?? 'UPSTREAM_RESET', `${describe} ${classification.detail ?? ''}`.trim()));
  });
  socket.once('close', () => watch.stop());
}
