/**
 * One proxied HTTP request (SPEC §2, §4): the path normalized (§10), the
 * route matched (origin-form, absolute-form through the target checks, or
 * decrypted from an intercepted CONNECT), the body prepared, the route's
 * pipeline run, and the upstream's answer streamed back. Every failure is
 * caught in one place and answered by the request's Exchange.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { BreakwaterError } from '../errors/breakwater-error.js';
import { ClientClosedError } from '../errors/client-closed.js';
import { normalizeUpstreamError } from '../errors/normalize.js';
import { Cancellation } from '../lib/signal.js';
import type { AttemptResult, Destination, RequestContext } from '../policy/context.js';
import type { BufferedAnswer } from '../upstream/error-answer.js';
import { normalizeTarget, rawTargetOf, type NormalizedTarget } from '../router/normalize-path.js';
import type { RouteRuntime, Runtime } from '../runtime.js';
import { authorityOf, checkIdentity, interceptedTarget, type InterceptedTarget } from '../tls/interceptor.js';
import { hasBody, prepareRequestBody } from '../upstream/body.js';
import type { Classification } from '../upstream/classify.js';
import { buildResponseHeaderList, clientRequestId } from '../upstream/headers.js';
import { headerName, type UpstreamResponse } from '../upstream/response.js';
import { cutSilentBody, watchBody } from './body-timeout.js';
import { CLIENT_CLOSED_STATUS, Exchange, type ServerDeps } from './exchange.js';
import { frontDoorRefusal, targetFormOf, unsendableTarget, type TargetForm } from './front-door.js';
import { JOURNAL_CAPTURE_BYTES } from './journal-entry.js';
import { answerStale, keepForStale, staleReplaces, staleStatusCode } from './stale.js';

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
function forwardOf(runtime: Runtime, host: string, port: number, https = false): Destination {
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
  if (route && !route.upstream) ctx.destination = forwardOf(runtime, check.host, check.port);
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
  if (route && !route.upstream) ctx.destination = forwardOf(runtime, target.host, target.port, true);
  return route;
}

/** The route and the upstream (or forward target) it sends to, as the exchange names them. */
const matched = (ctx: RequestContext, route: RouteRuntime) => ({ route: route.name, upstream: route.upstream?.config.name ?? ctx.destination?.target.name ?? null, plainErrors: route.plainErrors });

/** `errors.normalize: all`: the upstream's error as the problem body, its own words in `provider`. */
async function sendNormalized(ctx: RequestContext, exchange: Exchange, route: RouteRuntime, result: AttemptResult & { response: UpstreamResponse }, wall: number): Promise<void> {
  const normalized = await normalizeUpstreamError(result.response, {
    instance: ctx.path,
    route: route.name,
    upstream: route.upstream?.config.name ?? ctx.destination?.target.name ?? '',
    target: ctx.target,
    attempts: ctx.attempts,
    requestId: ctx.requestId,
    method: ctx.method,
    wall,
    preRead: result.buffered,
    decision: result.classification.rule,
  });
  exchange.countError(normalized.code);
  if (ctx.res.destroyed) return;
  ctx.res.writeHead(normalized.status, normalized.headers);
  ctx.res.end(normalized.body);
}

/** Streams the upstream's response; the caller destroys it if the client leaves first. */
function sendResponse(ctx: RequestContext, exchange: Exchange, route: RouteRuntime, response: UpstreamResponse, deps: ServerDeps, buffered?: BufferedAnswer): void {
  const { res } = ctx;
  const headers = buildResponseHeaderList(response.rawHeaders, headerName, { requestId: ctx.requestId, attempts: ctx.attempts, edits: route.responseEdits, target: ctx.target });
  res.writeHead(response.statusCode, response.statusMessage, headers);
  // Most answers: the body straight from undici into the client's response.
  if (!buffered && !route.stale && response.sendTo(res, () => brokenOff(ctx, exchange))) return;
  // The start of an error answer, read for a provider rule: sent first, as received.
  if (buffered) {
    res.write(buffered.raw);
    if (!response.complete && response.destroyed) {
      exchange.countError('UPSTREAM_RESET', true);
      res.destroy();
      return;
    }
  }
  // An upstream that dies mid-body destroys the client's response (never
  // a truncated body that looks complete), and a client that leaves
  // destroys the upstream response and its socket. This is what
  // stream.pipeline does, without its per-call AbortController and
  // DOMException (measured at ~8% of a request's CPU).
  response.pipe(res);
  if (route.stale) keepForStale(ctx, route, response, deps);
  response.on('error', () => {});
  response.once('close', () => {
    if (response.complete || res.destroyed) return;
    brokenOff(ctx, exchange);
    res.destroy();
  });
}

/** The upstream broke off mid-body (not because the client left): counted as a reset. */
function brokenOff(ctx: RequestContext, exchange: Exchange): void {
  if (!ctx.signal.aborted) exchange.countError('UPSTREAM_RESET', true);
}

/** An error answer is described in the error journal (SPEC §12) with the start of its body, whichever way it goes on. */
function noteAnswer(exchange: Exchange, result: AttemptResult & { response: UpstreamResponse }): void {
  const { response } = result;
  const start = result.buffered ?? response.captureStart(JOURNAL_CAPTURE_BYTES);
  exchange.answer = { status: response.statusCode, headers: response.headers, start, decision: result.classification.rule };
}

/** What the request line and the connection say about where a request goes. */
interface Arrival {
  readonly target: NormalizedTarget;
  /** The request line's target form (SPEC §20.2): origin, absolute, or one that cannot be sent. */
  readonly form: TargetForm;
  /** Absolute-form (`GET http://host/path`): a forward-proxy request whose target, not Host, names where it goes. */
  readonly absoluteForm: boolean;
  readonly absolute: URL | undefined;
  /** Decrypted from an intercepted CONNECT: its target names the host. */
  readonly intercepted: InterceptedTarget | undefined;
  readonly host: string;
}

function arrivalOf(req: IncomingMessage): Arrival {
  const rawUrl = req.url ?? '/';
  const form = targetFormOf(rawUrl);
  const absoluteForm = form === 'absolute';
  const absolute = absoluteForm ? parseAbsolute(rawUrl) : undefined;
  // The path is normalized before anything matches it (SPEC §10).
  const target = normalizeTarget(absolute ? rawTargetOf(rawUrl) : rawUrl);
  const intercepted = interceptedTarget(req.socket);
  const host = intercepted ? authorityOf(intercepted) : absolute ? absolute.host : (req.headers.host ?? '').toLowerCase();
  return { target, form, absoluteForm, absolute, intercepted, host };
}

/** The route for a request that may be proxied at all; throws the refusal otherwise. A promise only for absolute-form requests (the target check may resolve a name). */
function routeOf(runtime: Runtime, ctx: RequestContext, arrival: Arrival, draining: boolean): RouteRuntime | Promise<RouteRuntime> {
  if (draining) throw new BreakwaterError('PROXY_DRAINING', 'This Breakwater instance is shutting down and takes no new requests.');
  // node's parser reads a request line without a version as HTTP/0.9 (no headers, no Host): never forwarded.
  if (ctx.req.httpVersionMajor < 1) throw new BreakwaterError('BAD_REQUEST', 'The request line has no HTTP version (HTTP/0.9 is not proxied).');
  const { target, host } = arrival;
  if (arrival.form === 'other') throw unsendableTarget();
  // Who may call the proxy port (SPEC §20.1): origin-form requests only, before anything is matched or set.
  if (arrival.form === 'origin' && !arrival.intercepted) {
    const refusal = frontDoorRefusal(runtime.config, ctx.req.headers, host);
    if (refusal) throw refusal;
  }
  if (!target.ok) throw new BreakwaterError('BAD_REQUEST', `The request path ${target.path} cannot be routed: ${target.reason}.`);
  if (arrival.absoluteForm) return forwardRoute(runtime, ctx, arrival.absolute).then((route) => routed(route, ctx, host));
  return routed(arrival.intercepted ? interceptRoute(runtime, ctx, arrival.intercepted) : runtime.match({ host, method: ctx.method, path: ctx.path }), ctx, host);
}

function routed(route: RouteRuntime | undefined, ctx: RequestContext, host: string): RouteRuntime {
  if (!route) throw new BreakwaterError('NO_ROUTE', `No route matches ${ctx.method} ${ctx.path}${host ? ` for host ${host}` : ''}.`);
  return route;
}

/** The request's context, before any route: what every policy layer and the exchange read. */
function contextOf(req: IncomingMessage, res: ServerResponse, arrival: Arrival, runtime: Runtime, cancellation: Cancellation, startedAt: number): RequestContext {
  return {
    requestId: clientRequestId(req.headers['x-request-id']) ?? randomUUID(),
    method: req.method ?? 'GET',
    path: arrival.target.path,
    url: arrival.target.ok ? arrival.target.url : arrival.target.path,
    host: arrival.host,
    clientHeaders: req.headers,
    remoteAddress: req.socket.remoteAddress,
    req,
    res,
    body: NO_BODY_YET,
    startedAt,
    deadline: Infinity,
    signal: cancellation,
    attempts: 0,
    target: null,
    flags: new Set(),
    trace: runtime.tracing?.request(req.method ?? 'GET', arrival.target.path, req.headers, arrival.host) ?? null,
    destination: null,
    cleanups: [],
  };
}

/** Handles one request on the runtime current when it arrived; `draining` once shutdown began. */
export async function handleRequest(req: IncomingMessage, res: ServerResponse, deps: ServerDeps, draining: boolean): Promise<void> {
  const runtime = deps.runtime();
  const config = runtime.config;
  const cancellation = new Cancellation();
  runtime.enter();
  // Connection: close on whatever answer follows (node writes it, and closes after).
  if (draining) res.shouldKeepAlive = false;
  const arrival = arrivalOf(req);
  const ctx = contextOf(req, res, arrival, runtime, cancellation, deps.now());
  const exchange = new Exchange(deps, runtime, ctx);
  let upstreamResponse: UpstreamResponse | undefined;
  /** The route, once matched, when it keeps answers for stale fallback. */
  let staleRoute: RouteRuntime | undefined;
  const stopWatching =
    hasBody(req) && !req.complete ? watchBody(req, config.limits.clientBodyTimeout, deps.now, () => cutSilentBody(ctx, exchange, cancellation, config.limits.clientBodyTimeout)) : undefined;
  res.once('close', () => {
    stopWatching?.();
    if (!res.writableFinished) {
      ctx.flags.add('CLIENT_CLOSED');
      cancellation.abort(new ClientClosedError());
      upstreamResponse?.destroy();
    }
    for (const cleanup of ctx.cleanups) cleanup();
    exchange.finish(res.headersSent ? res.statusCode : CLIENT_CLOSED_STATUS);
    runtime.leave();
  });

  try {
    // Awaited only when there is something to wait for: most requests route and prepare synchronously.
    const found = routeOf(runtime, ctx, arrival, draining);
    const route = found instanceof Promise ? await found : found;
    staleRoute = route.stale ? route : undefined;
    ctx.destination ??= route.destination;
    exchange.matched = matched(ctx, route);
    if (route.classify) ctx.priority = route.classify(req.headers);
    ctx.trace?.route(ctx.method, route.name);
    const length = req.headers['content-length'];
    if (length !== undefined && Number(length) > config.limits.maxBodySize) {
      throw new BreakwaterError('PAYLOAD_TOO_LARGE', `The request body (${length} bytes) is larger than limits.maxBodySize (${config.limits.maxBodySize} bytes).`);
    }
    const retry = route.config.retry;
    const body = prepareRequestBody(req, { maxBodySize: config.limits.maxBodySize, bufferLimit: retry.bufferLimit, replay: retry.maxRetries > 0 });
    ctx.body = body instanceof Promise ? await body : body;
    const result = await route.pipeline.run(ctx);
    if (!result.response) throw errorFromClassification(result.classification);
    upstreamResponse = result.response;
    if (upstreamResponse.statusCode >= 400 && deps.journal.wants()) noteAnswer(exchange, { ...result, response: upstreamResponse });
    // The status a provider rule treats it as (an Anthropic 529 is a 503), else the provider's.
    const staleFor = route.stale ? staleStatusCode((result.classification.rule ? result.classification.status : undefined) ?? upstreamResponse.statusCode ?? 0) : undefined;
    if (staleFor && answerStale(ctx, route, staleFor, deps)) upstreamResponse.destroy();
    else if (res.destroyed) upstreamResponse.destroy();
    else if (route.config.errors.normalize === 'all' && (upstreamResponse.statusCode ?? 0) >= 400) await sendNormalized(ctx, exchange, route, { ...result, response: upstreamResponse }, deps.wall());
    else sendResponse(ctx, exchange, route, upstreamResponse, deps, result.buffered);
  } catch (error) {
    // Already answered (a body that went silent, SPEC §20.4): the answer stands.
    if (res.writableEnded) return;
    if (error instanceof ClientClosedError || ctx.signal.aborted) res.destroy();
    else if (staleRoute && error instanceof BreakwaterError && staleReplaces(error.code) && answerStale(ctx, staleRoute, error.code, deps)) return;
    // A refused request whose body was never read (too large, or refused
    // before it was needed): close rather than let node read and discard
    // the rest of an upload to keep the connection.
    // A request that cannot be sent (SPEC §4, §20.2) closes its connection too.
    else exchange.refuse(error, res, { closeConnection: (hasBody(req) && !req.complete) || (error instanceof BreakwaterError && error.code === 'BAD_REQUEST') });
  }
}
