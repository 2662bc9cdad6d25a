/**
 * The proxy port (SPEC §2, §4). Each request is matched to a route, run
 * through the route's pipeline, and answered either by streaming the
 * upstream's response or by one problem body. Every failure, expected or
 * not, is caught here and answered by the request's Exchange (exchange.ts:
 * the one place problems are rendered and requests observed), as upgrades,
 * CONNECT and parser refusals are.
 */
import { randomUUID } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { BreakwaterError } from '../errors/breakwater-error.js';
import type { ErrorCode } from '../errors/catalog.js';
import { ClientClosedError } from '../errors/client-closed.js';
import { normalizeUpstreamError } from '../errors/normalize.js';
import type { RequestContext } from '../policy/context.js';
import { Cancellation } from '../lib/signal.js';
import type { RouteRuntime, Runtime } from '../runtime.js';
import { hasBody, prepareRequestBody } from '../upstream/body.js';
import type { Classification } from '../upstream/classify.js';
import { buildResponseHeaders, clientRequestId } from '../upstream/headers.js';
import { handleUpgrade } from './websocket.js';
import { handleConnect } from './connect.js';
import { CLIENT_CLOSED_STATUS, Exchange, type ServerDeps } from './exchange.js';
import { authorityOf, checkIdentity, interceptedTarget, type InterceptedTarget } from '../tls/interceptor.js';
import { normalizeTarget, rawTargetOf } from '../router/normalize-path.js';

export type ProxyServerDeps = ServerDeps;

export interface ProxyServer {
  readonly server: http.Server;
  listen(host: string, port: number): Promise<number>;
  /**
   * Drains: stops accepting, closes idle keep-alive connections, answers
   * requests that still arrive PROXY_DRAINING, closes busy connections after
   * their current response, and cuts whatever is left after `graceMs`.
   */
  close(graceMs: number): Promise<void>;
  /** True once close() was called. */
  draining(): boolean;
}

export { CLIENT_CLOSED_STATUS };

function errorFromClassification(classification: Classification): BreakwaterError {
  return new BreakwaterError(classification.code ?? 'INTERNAL_ERROR', classification.detail ?? 'The attempt failed without a response.');
}

/** The body before the route is known (a refusal then never reads it); replaced once a route matched. */
const NO_BODY_YET = { replayable: false, open: () => undefined } as const;

function parseAbsolute(url: string): URL | undefined {
  try {
    return new URL(url);
  } catch {
    return undefined;
  }
}

/** A forward target and its breaker's policy layer, for a route without an upstream. */
function forwardOf(runtime: Runtime, host: string, port: number, https = false): NonNullable<RequestContext['forward']> {
  const { target, breaker } = runtime.forwardTarget(host, port, https);
  return { target, breaker: breaker.policy };
}

/**
 * The route of an absolute-form request, after the target checks; for a
 * route without an upstream, the request's own target becomes its upstream.
 */
async function forwardRoute(runtime: Runtime, ctx: RequestContext, target: URL | undefined): Promise<RouteRuntime | undefined> {
  if (!target) throw new BreakwaterError('BAD_REQUEST', 'The request target is not a valid absolute URL.');
  if (target.protocol !== 'http:') {
    throw new BreakwaterError('BAD_REQUEST', `Absolute-form requests must be http://; send ${target.protocol.slice(0, -1)} through CONNECT (HTTPS_PROXY).`);
  }
  const port = Number(target.port || 80);
  const check = await runtime.targets.check(target.hostname, port);
  if (!check.ok) {
    if (check.dnsFailed) throw new BreakwaterError('UPSTREAM_CONNECT_FAILED', `The target ${target.host} cannot be connected to: ${check.reason}.`);
    throw new BreakwaterError('HOST_NOT_ALLOWED', `The target ${target.host} is not allowed: ${check.reason}.`);
  }
  const route = runtime.matchForward({ host: ctx.host, method: ctx.method, path: ctx.path });
  if (route && !route.upstream) ctx.forward = forwardOf(runtime, check.host, check.port);
  return route;
}

/**
 * The route of a request decrypted from an intercepted CONNECT. The CONNECT
 * host is its identity: a TLS server name or Host header naming another
 * host gets 421. A route without an upstream sends it to that host over
 * verified TLS.
 */
function interceptRoute(runtime: Runtime, ctx: RequestContext, target: InterceptedTarget): RouteRuntime | undefined {
  checkIdentity(ctx.req, target);
  const route = runtime.matchForward({ host: ctx.host, method: ctx.method, path: ctx.path });
  if (route && !route.upstream) ctx.forward = forwardOf(runtime, target.host, target.port, true);
  return route;
}

export function createProxyServer(deps: ProxyServerDeps): ProxyServer {
  const { now } = deps;
  const initialConfig = deps.runtime().config;

  let isDraining = false;
  const server = http.createServer({
    maxHeaderSize: initialConfig.limits.maxHeaderSize,
    // Our deadlines own request timing; node's 5-minute request timeout
    // would cut long uploads. Slow headers are still bounded (headersTimeout).
    requestTimeout: 0,
  });

  /** The route and the upstream (or forward target) it sends to, as the exchange names them. */
  const matched = (ctx: RequestContext, route: RouteRuntime) => ({ route: route.name, target: route.upstream?.name ?? ctx.forward?.target.name ?? null, plainErrors: route.plainErrors });

  /** `errors.normalize: all`: the upstream's error as the problem body, its own words in `provider`. */
  async function sendNormalized(ctx: RequestContext, exchange: Exchange, route: RouteRuntime, response: IncomingMessage): Promise<void> {
    const normalized = await normalizeUpstreamError(response, {
      instance: ctx.path,
      route: route.name,
      upstream: route.upstream?.name ?? ctx.forward?.target.name ?? '',
      attempts: ctx.attempts,
      requestId: ctx.requestId,
      method: ctx.method,
    });
    exchange.countError(normalized.code);
    if (ctx.res.destroyed) return;
    ctx.res.writeHead(normalized.status, normalized.headers);
    ctx.res.end(normalized.body);
  }

  /** Streams the upstream's response; the caller destroys it if the client leaves first. */
  function sendResponse(ctx: RequestContext, exchange: Exchange, route: RouteRuntime, response: IncomingMessage): void {
    const { res } = ctx;
    const headers = buildResponseHeaders(response.headers, { requestId: ctx.requestId, attempts: ctx.attempts, edits: route.responseEdits });
    res.writeHead(response.statusCode ?? 502, response.statusMessage, headers);
    // An upstream that dies mid-body destroys the client's response (never
    // a truncated body that looks complete), and a client that leaves
    // destroys the upstream response and its socket. This is what
    // stream.pipeline does, without its per-call AbortController and
    // DOMException (measured at ~8% of a request's CPU).
    response.pipe(res);
    response.on('error', () => {});
    response.once('close', () => {
      if (response.complete || res.destroyed) return;
      if (!ctx.signal.aborted) exchange.countError('UPSTREAM_RESET', true);
      res.destroy();
    });
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const runtime = deps.runtime();
    const config = runtime.config;
    const cancellation = new Cancellation();
    runtime.enter();
    if (isDraining) res.setHeader('connection', 'close');
    const rawUrl = req.url ?? '/';
    // Absolute-form (`GET http://host/path`): a forward-proxy request. Its
    // target, not the Host header, names where it goes.
    const absoluteForm = /^https?:\/\//i.test(rawUrl);
    const absolute = absoluteForm ? parseAbsolute(rawUrl) : undefined;
    // The path is normalized before anything matches it (SPEC §10).
    const target = normalizeTarget(absolute ? rawTargetOf(rawUrl) : rawUrl);
    const url = target.ok ? target.url : target.path;
    // Decrypted from an intercepted CONNECT: its target names the host.
    const intercepted = interceptedTarget(req.socket);
    const host = intercepted ? authorityOf(intercepted) : absolute ? absolute.host : (req.headers.host ?? '').toLowerCase();
    const ctx: RequestContext = {
      requestId: clientRequestId(req.headers['x-request-id']) ?? randomUUID(),
      method: req.method ?? 'GET',
      path: target.path,
      url,
      host,
      clientHeaders: req.headers,
      remoteAddress: req.socket.remoteAddress,
      req,
      res,
      body: NO_BODY_YET,
      startedAt: now(),
      deadline: Infinity,
      signal: cancellation,
      attempts: 0,
      flags: new Set(),
      cleanups: [],
    };
    const exchange = new Exchange(deps, runtime, ctx);
    let route: RouteRuntime | undefined;
    let upstreamResponse: IncomingMessage | undefined;
    res.once('close', () => {
      const finished = res.writableFinished;
      if (!finished) {
        ctx.flags.add('CLIENT_CLOSED');
        cancellation.abort(new ClientClosedError());
        upstreamResponse?.destroy();
      }
      for (const cleanup of ctx.cleanups) cleanup();
      exchange.finish(res.headersSent ? res.statusCode : CLIENT_CLOSED_STATUS);
      runtime.leave();
    });

    try {
      if (isDraining) throw new BreakwaterError('PROXY_DRAINING', 'This Breakwater instance is shutting down and takes no new requests.');
      // node's parser reads a request line without a version as HTTP/0.9 (no headers, no Host): never forwarded.
      if (req.httpVersionMajor < 1) throw new BreakwaterError('BAD_REQUEST', 'The request line has no HTTP version (HTTP/0.9 is not proxied).');
      if (!target.ok) throw new BreakwaterError('BAD_REQUEST', `The request path ${target.path} cannot be routed: ${target.reason}.`);
      if (intercepted) {
        route = interceptRoute(runtime, ctx, intercepted);
      } else if (absoluteForm) {
        route = await forwardRoute(runtime, ctx, absolute);
      } else {
        route = runtime.match({ host, method: ctx.method, path: ctx.path });
      }
      if (!route) throw new BreakwaterError('NO_ROUTE', `No route matches ${ctx.method} ${ctx.path}${host ? ` for host ${host}` : ''}.`);
      exchange.matched = matched(ctx, route);
      const length = req.headers['content-length'];
      if (length !== undefined && Number(length) > config.limits.maxBodySize) {
        throw new BreakwaterError('PAYLOAD_TOO_LARGE', `The request body (${length} bytes) is larger than limits.maxBodySize (${config.limits.maxBodySize} bytes).`);
      }
      const retry = route.config.retry;
      ctx.body = await prepareRequestBody(req, { maxBodySize: config.limits.maxBodySize, bufferLimit: retry.bufferLimit, replay: retry.maxRetries > 0 });
      const result = await route.pipeline.run(ctx);
      if (result.response) {
        upstreamResponse = result.response;
        if (res.destroyed) upstreamResponse.destroy();
        else if (route.config.errors.normalize === 'all' && (upstreamResponse.statusCode ?? 0) >= 400) await sendNormalized(ctx, exchange, route, upstreamResponse);
        else sendResponse(ctx, exchange, route, upstreamResponse);
      } else throw errorFromClassification(result.classification);
    } catch (error) {
      if (error instanceof ClientClosedError || ctx.signal.aborted) res.destroy();
      // A refused request whose body was never read (too large, or refused
      // before it was needed): close rather than let node read and discard
      // the rest of an upload to keep the connection.
      else exchange.refuse(error, res, { closeConnection: hasBody(req) && !req.complete });
    }
  }

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    void handle(req, res);
  });

  // Requests node's parser refuses never reach 'request': answer them here
  // with the same body, count them under route "", and close.
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    if (error.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const code: ErrorCode = error.code === 'HPE_HEADER_OVERFLOW' ? 'HEADERS_TOO_LARGE' : 'BAD_REQUEST';
    const runtime = deps.runtime();
    const detail =
      code === 'HEADERS_TOO_LARGE'
        ? `The request headers are larger than limits.maxHeaderSize (${runtime.config.limits.maxHeaderSize} bytes).`
        : `The request is not valid HTTP: ${error.message.replace(/^Parse Error: /, '')}.`;
    const exchange = new Exchange(deps, runtime, { requestId: randomUUID(), method: '', path: '', host: '', startedAt: now(), attempts: 0, flags: new Set() });
    exchange.finish(exchange.refuse(new BreakwaterError(code, detail), socket));
  });

  // Upgraded connections leave node's connection tracking: keep them so
  // that close() can end them after the grace period.
  // They count as in flight on their runtime until they close.
  const upgraded = new Set<Duplex>();
  const track = (handle: typeof handleConnect) => (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    upgraded.add(socket);
    const runtime = deps.runtime();
    runtime.enter();
    socket.once('close', () => {
      upgraded.delete(socket);
      runtime.leave();
    });
    handle(req, socket, head, deps, server);
  };
  server.on('upgrade', track(handleUpgrade));
  server.on('connect', track(handleConnect));

  return {
    server,
    listen: (host, port) =>
      new Promise<number>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve((server.address() as { port: number }).port);
        });
      }),
    draining: () => isDraining,
    close: (graceMs) =>
      new Promise<void>((resolve) => {
        isDraining = true;
        const timer = setTimeout(() => {
          server.closeAllConnections();
          for (const socket of upgraded) socket.destroy();
        }, graceMs);
        server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        server.closeIdleConnections();
      }),
  };
}
