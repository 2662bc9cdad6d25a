/**
 * The proxy port (SPEC §2, §4). Each request is matched to a route, run
 * through the route's pipeline, and answered either by streaming the
 * upstream's response or by one problem body. This file is the single
 * rescue point: every failure, expected or not, becomes a response here and
 * nowhere else, and every request is observed (metrics, access log) exactly
 * once, when its response closes.
 */
import { randomUUID } from 'node:crypto';
import http, { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { BreakwaterError } from '../errors/breakwater-error.js';
import type { ErrorCode } from '../errors/catalog.js';
import { ClientClosedError } from '../errors/client-closed.js';
import { renderProblem, type RenderedProblem } from '../errors/problem.js';
import { normalizeUpstreamError } from '../errors/normalize.js';
import { logAccess, wantsAccessLog } from '../observe/access-log.js';
import type { Logger } from '../observe/logger.js';
import { methodLabel, type Metrics } from '../observe/metrics.js';
import { flagForCode, type RequestContext } from '../policy/context.js';
import { Cancellation } from '../policy/signal.js';
import type { RouteRuntime, Runtime } from '../runtime.js';
import { hasBody, prepareRequestBody } from '../upstream/body.js';
import type { Classification } from '../upstream/classify.js';
import { buildResponseHeaders, clientRequestId } from '../upstream/headers.js';
import { handleUpgrade } from './websocket.js';
import { handleConnect } from './connect.js';
import type { Forwarder } from '../upstream/forward.js';
import { authorityOf, checkIdentity, interceptedTarget, type InterceptedTarget } from '../tls/interceptor.js';
import { normalizeTarget, rawTargetOf } from '../router/normalize-path.js';

export interface ProxyServerDeps {
  /** The runtime new requests start on (swapped on reload). */
  readonly runtime: () => Runtime;
  readonly forwarder: Forwarder;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly now: () => number;
}

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

/** Status logged and counted for a request whose client left before any response (NGINX's convention). */
export const CLIENT_CLOSED_STATUS = 499;

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
  if (route && !route.upstream) ctx.forward = runtime.forwardTarget(check.host, check.port);
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
  if (route && !route.upstream) ctx.forward = runtime.forwardTarget(target.host, target.port, true);
  return route;
}

/** Writes a complete HTTP/1.1 response on a raw socket (parser errors, refused upgrades), then closes it. */
export function writeRawResponse(socket: Duplex, rendered: RenderedProblem): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  let head = `HTTP/1.1 ${rendered.status} ${STATUS_CODES[rendered.status] ?? ''}\r\n`;
  for (const [name, value] of Object.entries(rendered.headers)) head += `${name}: ${value}\r\n`;
  socket.end(`${head}connection: close\r\n\r\n${rendered.body}`);
}

export function createProxyServer(deps: ProxyServerDeps): ProxyServer {
  const { metrics, logger, now } = deps;
  const initialConfig = deps.runtime().config;

  let isDraining = false;
  const server = http.createServer({
    maxHeaderSize: initialConfig.limits.maxHeaderSize,
    // Our deadlines own request timing; node's 5-minute request timeout
    // would cut long uploads. Slow headers are still bounded (headersTimeout).
    requestTimeout: 0,
  });

  function observe(ctx: RequestContext, runtime: Runtime, route: RouteRuntime | undefined, status: number): void {
    const routeName = route?.name ?? '';
    const method = methodLabel(ctx.method);
    const durationMs = now() - ctx.startedAt;
    metrics.requestsTotal.inc({ route: routeName, method, code: String(status) });
    metrics.requestDuration.observe({ route: routeName, method }, durationMs / 1000);
    if (wantsAccessLog(logger, runtime.config.logging.accessLog)) {
      logAccess(logger, {
        requestId: ctx.requestId,
        method: ctx.method,
        host: ctx.host,
        path: ctx.path,
        route: routeName,
        upstream: route?.upstream?.name ?? ctx.forward?.target.name ?? '',
        status,
        durationMs: Math.round(durationMs * 1000) / 1000,
        attempts: ctx.attempts,
        flags: [...ctx.flags],
      });
    }
  }

  function rescue(ctx: RequestContext, route: RouteRuntime | undefined, error: unknown): void {
    const { res } = ctx;
    if (error instanceof ClientClosedError || ctx.signal.aborted) {
      res.destroy();
      return;
    }
    let failure: BreakwaterError;
    if (error instanceof BreakwaterError) {
      failure = error;
    } else {
      failure = new BreakwaterError('INTERNAL_ERROR', 'Breakwater failed while handling this request.', { cause: error });
      logger.error({ err: error, requestId: ctx.requestId, route: route?.name ?? '' }, 'internal error');
    }
    const flag = flagForCode(failure.code);
    if (flag) ctx.flags.add(flag);
    metrics.errors.inc({ route: route?.name ?? '', code: failure.code });
    if (res.headersSent) {
      // Part of a response is out: the only honest signal left is an abort.
      res.destroy();
      return;
    }
    const rendered = renderProblem(
      failure,
      { instance: ctx.path, route: route?.name ?? null, upstream: route?.upstream?.name ?? ctx.forward?.target.name ?? null, attempts: ctx.attempts, requestId: ctx.requestId },
      route?.plainErrors ?? false,
    );
    // A refused request whose body was never read (too large, or refused
    // before it was needed): close rather than let node read and discard
    // the rest of an upload to keep the connection.
    if (hasBody(ctx.req) && !ctx.req.complete) rendered.headers.connection = 'close';
    res.writeHead(rendered.status, rendered.headers);
    res.end(rendered.body);
  }

  /** `errors.normalize: all`: the upstream's error as the problem body, its own words in `provider`. */
  async function sendNormalized(ctx: RequestContext, route: RouteRuntime, response: IncomingMessage): Promise<void> {
    const normalized = await normalizeUpstreamError(response, {
      instance: ctx.path,
      route: route.name,
      upstream: route.upstream?.name ?? ctx.forward?.target.name ?? '',
      attempts: ctx.attempts,
      requestId: ctx.requestId,
      method: ctx.method,
    });
    metrics.errors.inc({ route: route.name, code: normalized.code });
    if (ctx.res.destroyed) return;
    ctx.res.writeHead(normalized.status, normalized.headers);
    ctx.res.end(normalized.body);
  }

  /** Streams the upstream's response; the caller destroys it if the client leaves first. */
  function sendResponse(ctx: RequestContext, route: RouteRuntime, response: IncomingMessage): void {
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
      if (!ctx.signal.aborted) {
        ctx.flags.add('UPSTREAM_RESET');
        metrics.errors.inc({ route: route.name, code: 'UPSTREAM_RESET' });
      }
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
    const host = intercepted
      ? authorityOf(intercepted)
      : absolute
        ? absolute.host
        : (req.headers.host ?? '').toLowerCase();
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
      observe(ctx, runtime, route, res.headersSent ? res.statusCode : CLIENT_CLOSED_STATUS);
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
        else if (route.config.errors.normalize === 'all' && (upstreamResponse.statusCode ?? 0) >= 400) await sendNormalized(ctx, route, upstreamResponse);
        else sendResponse(ctx, route, upstreamResponse);
      }
      else throw errorFromClassification(result.classification);
    } catch (error) {
      rescue(ctx, route, error);
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
    const requestId = randomUUID();
    const detail =
      code === 'HEADERS_TOO_LARGE'
        ? `The request headers are larger than limits.maxHeaderSize (${deps.runtime().config.limits.maxHeaderSize} bytes).`
        : `The request is not valid HTTP: ${error.message.replace(/^Parse Error: /, '')}.`;
    const failure = new BreakwaterError(code, detail);
    writeRawResponse(socket, renderProblem(failure, { instance: '', route: null, upstream: null, attempts: 0, requestId }));
    metrics.errors.inc({ route: '', code });
    metrics.requestsTotal.inc({ route: '', method: 'OTHER', code: String(failure.status) });
    if (wantsAccessLog(logger, deps.runtime().config.logging.accessLog)) {
      const flag = flagForCode(code);
      logAccess(logger, { requestId, method: '', host: '', path: '', route: '', upstream: '', status: failure.status, durationMs: 0, attempts: 0, flags: flag ? [flag] : [] });
    }
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
