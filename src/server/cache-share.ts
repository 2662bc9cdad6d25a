/**
 * Coalescing at the server edge (SPEC §17, server/coalesce.ts for the
 * sharing itself): a GET that may share either waits for the identical GET
 * already upstream and answers with what it gets, or leads (its upstream
 * request is the one later identical GETs wait for). The leader hands its
 * outcome over where it answers (request.ts, cache.ts).
 */
import { formatDuration } from '../config/units.js';
import { BreakwaterError } from '../errors/breakwater-error.js';
import { Cancellation } from '../lib/signal.js';
import type { RouteRuntime } from '../runtime/routes.js';
import { buildResponseHeaderList } from '../upstream/headers.js';
import { headerName, type UpstreamResponse } from '../upstream/response.js';
import { mark, ownCacheHeaders, serveStored, type CacheVisit } from './cache.js';
import { keepAnswer } from './stale.js';
import { BodyTap, lead, sameVariant, sharedFor, type Shared, type SharedAnswer } from './coalesce.js';
import type { Exchange, HttpContext, ServerDeps } from './exchange.js';

/**
 * Joins the identical GET already upstream (and answers from it: true), or makes this one its leader (false: go
 * upstream). Rejects with the leader's problem, or UPSTREAM_TIMEOUT past the waiter's own `total`.
 */
export async function shareOrLead(
  ctx: HttpContext,
  exchange: Exchange,
  route: RouteRuntime,
  visit: CacheVisit,
): Promise<boolean> {
  const cache = route.cache!;
  const shared = sharedFor(cache, visit.key);
  if (!shared) {
    visit.leader = lead(cache, visit.key, ctx.clientHeaders);
    return false;
  }
  const total = route.config.timeouts.total;
  const waiting = Cancellation.linked(ctx.signal);
  const timer = setTimeout(() => waiting.abort(new Error('deadline')), total);
  let answer: SharedAnswer | undefined;
  try {
    answer = await shared.wait(waiting);
  } finally {
    clearTimeout(timer);
    waiting.release();
  }
  if (ctx.signal.aborted) return true;
  if (!answer)
    throw new BreakwaterError(
      'UPSTREAM_TIMEOUT',
      `The identical request this one waited for got no response within the total deadline of ${formatDuration(total)}.`,
    );
  return answerShared(ctx, exchange, route, shared, answer);
}

function answerShared(
  ctx: HttpContext,
  exchange: Exchange,
  route: RouteRuntime,
  shared: Shared,
  answer: SharedAnswer,
): boolean {
  switch (answer.kind) {
    case 'error':
      mark(ctx, 'coalesced', 'fwd=miss; collapsed');
      throw answer.error;
    case 'stored':
      // Its own variant only: a waiter whose Vary'd headers differ goes upstream itself.
      if (!route.cache!.store.fits(answer.entry, ctx.clientHeaders)) return false;
      serveStored(ctx, route, answer.entry, 'coalesced');
      return true;
    case 'stream':
      if (!sameVariant(answer.response, shared.leaderHeaders, ctx.clientHeaders)) return false;
      return streamShared(ctx, exchange, route, answer.response, answer.tap, answer.target);
    case 'alone':
      return false;
  }
}

/** The leader's answer to this waiter, with its own request id, as the body arrives; false if it can no longer join. */
function streamShared(
  ctx: HttpContext,
  exchange: Exchange,
  route: RouteRuntime,
  response: UpstreamResponse,
  tap: BodyTap,
  target: string | null,
): boolean {
  const { res } = ctx;
  const limit = 2 * route.cache!.config.maxEntryBytes;
  const sink = (chunk: Buffer | null, broken: boolean) => {
    if (res.destroyed) return;
    if (chunk) {
      res.write(chunk);
      // A waiter too slow to take a shared body is let go rather than buffered without bound.
      if (res.writableLength > limit) res.destroy();
    } else if (broken) {
      exchange.countError('UPSTREAM_RESET', true);
      res.destroy();
    } else res.end();
  };
  if (tap.overflowed) return false;
  mark(ctx, 'coalesced', 'fwd=miss; collapsed');
  ctx.target = target;
  const headers = ownCacheHeaders(
    ctx,
    buildResponseHeaderList(response.rawHeaders, headerName, {
      requestId: ctx.requestId,
      attempts: 0,
      edits: route.responseEdits,
      target,
    }),
  );
  res.writeHead(response.statusCode, response.statusMessage, headers);
  res.once('close', () => tap.leave(sink));
  tap.join(sink);
  return true;
}

/** The leader's answer streams to its client: waiters get it too (its body tapped before it flows). */
export function shareStream(
  leader: Shared | undefined,
  ctx: HttpContext,
  route: RouteRuntime,
  response: UpstreamResponse,
) {
  // Never shared: one caller's cookie (a session for everyone), an event stream (a late joiner would get old events
  // as new). The waiters fetch their own.
  const own = response.headers['set-cookie'] !== undefined || response.eventStream;
  if (!leader || leader.waiting() === 0 || own) {
    leader?.settle({ kind: 'alone' });
    return;
  }
  const tap = new BodyTap(response, route.cache!.config.maxEntryBytes);
  leader.settle({ kind: 'stream', response, tap, target: ctx.target });
}

/**
 * A leader whose client left while others wait on it keeps its upstream request (SPEC §17): true when it does
 * (its answer, if it came, flows on to the waiters and the store).
 */
export function keepsUpstream(leader: Shared | undefined, response: UpstreamResponse | undefined): boolean {
  if (!leader || leader.listening() === 0) return false;
  // After the leader's pipe lets go of the response (which pauses it): it flows on to the waiters.
  if (response) setImmediate(() => response.resume());
  return true;
}

/**
 * The answer of a leader whose client left while others waited (SPEC §17): it flows on to them and to the
 * store. True when it does (the caller stops there).
 */
export function orphanedAnswer(
  visit: CacheVisit,
  ctx: HttpContext,
  route: RouteRuntime,
  response: UpstreamResponse,
  deps: Pick<ServerDeps, 'now'>,
): boolean {
  if (!visit.leader || visit.leader.listening() === 0) return false;
  shareStream(visit.leader, ctx, route, response);
  if (route.store) keepAnswer(ctx, route, response, deps, visit.freshness, visit.since);
  response.resume();
  return true;
}

/** Failures of the upstream's side, which every identical GET would meet: shared. Anything else is the leader's own. */
const SHARED_FAILURES: ReadonlySet<string> = new Set([
  'UPSTREAM_TIMEOUT',
  'UPSTREAM_CONNECT_FAILED',
  'UPSTREAM_RESET',
  'UPSTREAM_PROTOCOL_ERROR',
  'UPSTREAM_TLS_FAILED',
  'CIRCUIT_OPEN',
]);

/** What the leader's failure gives its waiters: the problem when it is the upstream's, else their own way. */
export function sharedFailure(error: unknown): SharedAnswer {
  return error instanceof BreakwaterError && SHARED_FAILURES.has(error.code)
    ? { kind: 'error', error }
    : { kind: 'alone' };
}
