/**
 * One proxied HTTP request (SPEC §2, §4): the path normalized (§10), the
 * route matched (origin-form, absolute-form through the target checks, or
 * decrypted from an intercepted CONNECT), the body prepared, the route's
 * pipeline run, and the upstream's answer streamed back. Every failure is
 * caught in one place and answered by the request's Exchange.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { BreakwaterError } from '../errors/breakwater-error.js';
import { ClientClosedError } from '../errors/client-closed.js';
import { normalizeUpstreamError } from '../errors/normalize.js';
import { Cancellation } from '../lib/signal.js';
import type { AttemptResult } from '../policy/context.js';
import type { BufferedAnswer } from '../upstream/error-answer.js';
import type { RouteRuntime } from '../runtime.js';
import { hasBody, prepareRequestBody } from '../upstream/body.js';
import type { Classification } from '../upstream/classify.js';
import { buildResponseHeaderList } from '../upstream/headers.js';
import { headerName, type UpstreamResponse } from '../upstream/response.js';
import { cutSilentBody, watchBody } from './body-timeout.js';
import { watchStream, withoutContentLength } from './stream-idle.js';
import { CLIENT_CLOSED_STATUS, Exchange, type HttpContext, type ServerDeps } from './exchange.js';
import { JOURNAL_CAPTURE_BYTES } from './journal-entry.js';
import { arrivalOf, contextOf, routeOf } from './routing.js';
import { matchedTo } from './matched.js';
import { answerStale, keepAnswer, staleReplaces, staleStatusCode } from './stale.js';
import { answeredFromCache, ownCacheHeaders, visitCache, type CacheVisit } from './cache.js';
import { keepsUpstream, orphanedAnswer, shareOrLead, sharedFailure, shareStream } from './cache-share.js';

function errorFromClassification(classification: Classification): BreakwaterError {
  return new BreakwaterError(
    classification.code ?? 'INTERNAL_ERROR',
    classification.detail ?? 'The attempt failed without a response.',
  );
}

/** `errors.normalize: all`: the upstream's error as the problem body, its own words in `provider`. */
async function sendNormalized(
  ctx: HttpContext,
  exchange: Exchange,
  route: RouteRuntime,
  result: AttemptResult & { response: UpstreamResponse },
  wall: number,
): Promise<void> {
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
function sendResponse(
  ctx: HttpContext,
  exchange: Exchange,
  route: RouteRuntime,
  response: UpstreamResponse,
  deps: ServerDeps,
  buffered?: BufferedAnswer,
  visit?: CacheVisit,
): void {
  const { res } = ctx;
  let headers = buildResponseHeaderList(response.rawHeaders, headerName, {
    requestId: ctx.requestId,
    attempts: ctx.attempts,
    edits: route.responseEdits,
    target: ctx.target,
  });
  if (ctx.cache !== undefined) headers = ownCacheHeaders(ctx, headers);
  const idle = route.config.timeouts.idle;
  if (idle !== null && !response.complete) {
    // An event stream may end with an event of ours (SPEC §16): never sent with a length it would overrun.
    if (response.eventStream) headers = withoutContentLength(headers);
    watchStream(ctx, exchange, response, idle, { now: deps.now, read: buffered?.raw });
  }
  res.writeHead(response.statusCode, response.statusMessage, headers);
  // An event stream whose events are still to come (or any body on a route that times its silence): the
  // status and headers go now, not with the first chunk, so the app sees the answer begin (SPEC §16).
  if (response.received === 0 && !response.complete && (idle !== null || response.eventStream)) res.flushHeaders();
  // Most answers: the body straight from undici into the client's response.
  if (!buffered && !route.store && response.sendTo(res, () => brokenOff(ctx, exchange))) return;
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
  // Identical GETs waiting on this one get the answer too (SPEC §17); one read for a rule, they fetch themselves.
  if (visit?.leader) shareStream(buffered ? undefined : visit.leader, ctx, route, response);
  response.pipe(res);
  if (route.store) keepAnswer(ctx, route, response, deps, visit?.freshness, visit?.since);
  response.on('error', () => {});
  response.once('close', () => {
    // Ended by Breakwater (SPEC §16): stream-idle.ts ends the client's answer.
    if (response.complete || res.destroyed || ctx.flags.has('STREAM_STALLED')) return;
    brokenOff(ctx, exchange);
    res.destroy();
  });
}

/** The upstream broke off mid-body (not because the client left): counted as a reset. */
function brokenOff(ctx: HttpContext, exchange: Exchange): void {
  if (!ctx.signal.aborted) exchange.countError('UPSTREAM_RESET', true);
}

/**
 * An error answer is described in the error journal (SPEC §12) with the start of its body, whichever way it goes
 * on.
 */
function noteAnswer(exchange: Exchange, result: AttemptResult & { response: UpstreamResponse }): void {
  const { response } = result;
  const start = result.buffered ?? response.captureStart(JOURNAL_CAPTURE_BYTES);
  exchange.answer = {
    status: response.statusCode,
    headers: response.headers,
    start,
    decision: result.classification.rule,
  };
}

/** The body as the attempts send it (upstream/body.ts): refused at once when it announces more than maxBodySize. */
function prepareBody(ctx: HttpContext, route: RouteRuntime, maxBodySize: number) {
  const length = ctx.req.headers['content-length'];
  if (length !== undefined && Number(length) > maxBodySize) {
    throw new BreakwaterError(
      'PAYLOAD_TOO_LARGE',
      `The request body (${length} bytes) is larger than limits.maxBodySize (${maxBodySize} bytes).`,
    );
  }
  return prepareRequestBody(ctx.req, { maxBodySize, ...route.bodyReplay });
}

/**
 * The upstream's answer goes to the client: as it came, normalized
 * (`errors.normalize: all`: a promise, the only case that waits), or
 * replaced by a stored one (SPEC §8.2).
 */
function answer(
  ctx: HttpContext,
  exchange: Exchange,
  route: RouteRuntime,
  result: AttemptResult & { response: UpstreamResponse },
  deps: ServerDeps,
  visit?: CacheVisit,
): Promise<void> | undefined {
  const { response } = result;
  if (response.statusCode >= 400 && deps.journal.wants()) noteAnswer(exchange, result);
  // The status a provider rule treats it as (an Anthropic 529 is a 503), else the provider's.
  const staleFor = route.stale
    ? staleStatusCode(
        (result.classification.rule ? result.classification.status : undefined) ?? response.statusCode ?? 0,
      )
    : undefined;
  if (staleFor && answerStale(ctx, route, staleFor, deps)) response.destroy();
  else if (ctx.res.destroyed) response.destroy();
  else if (route.config.errors.normalize === 'all' && (response.statusCode ?? 0) >= 400)
    return sendNormalized(ctx, exchange, route, result, deps.wall());
  else sendResponse(ctx, exchange, route, response, deps, result.buffered, visit);
  return undefined;
}

/** What a request has under way: the upstream's answer once it came, how it stands with its route's cache. */
interface Underway {
  upstreamResponse: UpstreamResponse | undefined;
  /** SPEC §17, on a route with a cache. */
  visit: CacheVisit | undefined;
}

/** The client's response closed: a client that left first cancels what is under way, and the exchange's cleanups run. */
function closed(ctx: HttpContext, state: Underway, cancellation: Cancellation): void {
  // A stream Breakwater cut (SPEC §16) was not closed by the client.
  if (!ctx.res.writableFinished && !ctx.flags.has('STREAM_STALLED')) {
    ctx.flags.add('CLIENT_CLOSED');
    // A shared upstream request goes on while others wait on it (SPEC §17).
    if (!keepsUpstream(state.visit?.leader, state.upstreamResponse)) {
      cancellation.abort(new ClientClosedError());
      state.upstreamResponse?.destroy();
    }
  }
  for (const release of ctx.atExchangeEnd) release();
}

/** Handles one request on the runtime current when it arrived; `draining` once shutdown began. */
export async function handleRequest(
  req: IncomingMessage,
  res: ServerResponse,
  deps: ServerDeps,
  draining: boolean,
): Promise<void> {
  const runtime = deps.runtime();
  const config = runtime.config;
  const cancellation = new Cancellation();
  runtime.enter();
  // Connection: close on whatever answer follows (node writes it, and closes after).
  if (draining) res.shouldKeepAlive = false;
  const arrival = arrivalOf(req);
  const ctx: HttpContext = contextOf(req, res, arrival, runtime, cancellation, deps.now());
  const exchange = new Exchange(deps, runtime, ctx);
  const state: Underway = { upstreamResponse: undefined, visit: undefined };
  /** The route, once matched, when it keeps answers for stale fallback. */
  let staleRoute: RouteRuntime | undefined;
  const stopWatching =
    hasBody(req) && !req.complete
      ? watchBody(req, config.limits.clientBodyTimeout, deps.now, () =>
          cutSilentBody(ctx, exchange, cancellation, config.limits.clientBodyTimeout),
        )
      : undefined;
  res.once('close', () => {
    stopWatching?.();
    closed(ctx, state, cancellation);
    exchange.finish(res.headersSent ? res.statusCode : CLIENT_CLOSED_STATUS);
    runtime.leave();
  });

  try {
    // Awaited only when there is something to wait for: most requests route and prepare synchronously.
    const found = routeOf(runtime, ctx, arrival, draining);
    const route = found instanceof Promise ? await found : found;
    staleRoute = route.stale ? route : undefined;
    matchedTo(ctx, exchange, route, runtime.leakGuard);
    // A fresh stored answer, or an identical GET's, is served before any policy (SPEC §17): it spends nothing.
    const visit = (state.visit = route.cache ? visitCache(ctx, route) : undefined);
    if (route.cache && (!visit || (visit.shares && (await shareOrLead(ctx, exchange, route, visit))))) return;
    const body = prepareBody(ctx, route, config.limits.maxBodySize);
    ctx.body = body instanceof Promise ? await body : body;
    const result = await route.pipeline.run(ctx);
    if (!result.response) throw errorFromClassification(result.classification);
    const upstreamResponse = (state.upstreamResponse = result.response);
    if (visit && answeredFromCache(visit, ctx, route, upstreamResponse, deps)) return;
    if (visit?.leader && res.destroyed && orphanedAnswer(visit, ctx, route, upstreamResponse, deps)) return;
    const sending = answer(ctx, exchange, route, { ...result, response: upstreamResponse }, deps, visit);
    if (sending) await sending;
  } catch (error) {
    state.visit?.leader?.settle(sharedFailure(error));
    // Already answered (a body that went silent, SPEC §20.4): the answer stands.
    if (res.writableEnded) return;
    if (error instanceof ClientClosedError || ctx.signal.aborted) res.destroy();
    else if (
      staleRoute &&
      error instanceof BreakwaterError &&
      staleReplaces(error.code) &&
      answerStale(ctx, staleRoute, error.code, deps)
    )
      return;
    // A refused request whose body was never read (too large, or refused
    // before it was needed): close rather than let node read and discard
    // the rest of an upload to keep the connection.
    // A request that cannot be sent (SPEC §4, §20.2) closes its connection too.
    else
      exchange.refuse(error, res, {
        closeConnection:
          (hasBody(req) && !req.complete) || (error instanceof BreakwaterError && error.code === 'BAD_REQUEST'),
      });
  } finally {
    // Whatever else happened, no identical GET waits on this one any more.
    state.visit?.leader?.settle({ kind: 'alone' });
  }
}
