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
import type { RouteRuntime } from '../runtime.js';
import { rewritePath } from '../router/match-route.js';
import { normalizeTarget } from '../router/normalize-path.js';
import { classifyError } from '../upstream/classify.js';
import { buildUpstreamHeaders, clientRequestId } from '../upstream/headers.js';
import { Exchange, type ServerDeps } from './exchange.js';
import { authorityOf, checkIdentity, interceptedTarget } from '../tls/interceptor.js';
import type { UpstreamTarget } from '../upstream/forward.js';
import { takeLastRequest } from '../upstream/agents.js';

/** Hooks of one upgrade, found from http-proxy-3's `proxyReqWs` event by the request it carries. */
interface UpgradeAttempt {
  attach(proxyReq: ClientRequest): void;
}

const attempts = new WeakMap<IncomingMessage, UpgradeAttempt>();
const watched = new WeakSet<object>();

export function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, deps: ServerDeps): void {
  const runtime = deps.runtime();
  const { forwarder } = deps;
  const requestId = clientRequestId(req.headers['x-request-id']) ?? randomUUID();
  const target = normalizeTarget(req.url ?? '/');
  const url = target.ok ? target.url : target.path;
  const path = target.path;
  const host = (req.headers.host ?? '').toLowerCase();
  const method = req.method ?? 'GET';
  let route: RouteRuntime | undefined;
  let upstream: UpstreamTarget | null = null;
  let status = 101;
  const record = { requestId, method, path, host, startedAt: deps.now(), attempts: 0, flags: new Set<Flag>() };
  const exchange = new Exchange(deps, runtime, record);
  socket.once('close', () => exchange.finish(status));
  socket.on('error', () => socket.destroy());

  const refuse = (error: BreakwaterError) => {
    status = exchange.refuse(error, socket);
  };

  if (!target.ok) {
    refuse(new BreakwaterError('BAD_REQUEST', `The request path ${target.path} cannot be routed: ${target.reason}.`));
    return;
  }
  // Decrypted from an intercepted CONNECT: matched by the CONNECT host; a
  // route without an upstream goes to that host over verified TLS.
  const intercepted = interceptedTarget(req.socket);
  if (intercepted) {
    try {
      checkIdentity(req, intercepted);
    } catch (error) {
      refuse(error as BreakwaterError);
      return;
    }
    route = runtime.matchForward({ host: authorityOf(intercepted), method, path });
    upstream = route ? (route.upstream ?? runtime.forwardTarget(intercepted.host, intercepted.port, true).target) : null;
  } else {
    route = runtime.match({ host, method, path });
    upstream = route?.upstream ?? null;
  }
  if (!route || !upstream) {
    refuse(new BreakwaterError('NO_ROUTE', `No route matches ${method} ${path}${host ? ` for host ${host}` : ''}.`));
    return;
  }
  // One attempt, once a route matched (the handshake is never retried).
  record.attempts = 1;
  exchange.matched = { route: route.name, target: upstream.name, plainErrors: route.plainErrors };
  if (method !== 'GET' || (req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
    refuse(new BreakwaterError('BAD_REQUEST', `Only WebSocket upgrades are proxied, not "${req.headers.upgrade ?? ''}" with ${method}.`));
    return;
  }
  const config = route.config;
  const describe = `Upstream '${upstream.name}' (${upstream.url.origin})`;

  let outgoing: ClientRequest | undefined;
  let settled = false;
  const fail = (error: BreakwaterError) => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    outgoing?.destroy();
    refuse(error);
  };
  const onConnectTimeout = () => fail(new BreakwaterError('UPSTREAM_CONNECT_FAILED', `${describe} could not be connected to within ${config.timeouts.connect} ms (connect timeout).`));
  const onHandshakeTimeout = () => fail(new BreakwaterError('UPSTREAM_TIMEOUT', `${describe} did not answer the WebSocket handshake within ${config.timeouts.perTry} ms.`));
  let connected = false;
  let timer: NodeJS.Timeout = setTimeout(onConnectTimeout, config.timeouts.connect);
  const onConnected = () => {
    connected = true;
    if (settled) return;
    clearTimeout(timer);
    timer = setTimeout(onHandshakeTimeout, config.timeouts.perTry);
  };
  const onAnswered = () => {
    settled = true;
    clearTimeout(timer);
  };
  attempts.set(req, {
    attach(proxyReq) {
      outgoing = proxyReq;
      proxyReq.once('socket', (upstreamSocket: Socket) => {
        // For TLS the connection is up after the handshake, as for requests.
        if (upstreamSocket instanceof TLSSocket) upstreamSocket.once('secureConnect', onConnected);
        else if (upstreamSocket.connecting) upstreamSocket.once('connect', onConnected);
        else onConnected();
      });
      proxyReq.once('upgrade', onAnswered);
      proxyReq.once('response', (response: IncomingMessage) => {
        // Not upgraded: http-proxy-3 relays the upstream's answer as it is.
        onAnswered();
        status = response.statusCode ?? 502;
      });
    },
  });

  const proxy = forwarder.proxy;
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
  req.url = rewritePath(url, config.match.pathPrefix, config.stripPrefix);

  // A forward target's own agent: it connects only to checked addresses
  // (and verifies TLS against its roots); upgraded sockets leave its pool.
  const agent = route.upstream ? false : upstream.agent;
  proxy.ws(req, socket, head, { target: upstream.url, agent, ca: upstream.ca, secure: upstream.rejectUnauthorized }, (error: Error) => {
    const classification = classifyError(error, { connected });
    fail(new BreakwaterError(classification.code ?? 'UPSTREAM_RESET', `${describe} ${classification.detail ?? ''}`.trim()));
  });
  // The upgrade went through a capturing agent's mailbox: empty it (only forwarded attempts read it).
  if (agent) takeLastRequest();
  socket.once('close', () => clearTimeout(timer));
}
