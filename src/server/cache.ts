/**
 * A route's cache at the server edge (SPEC §17): before the route's
 * pipeline, a fresh stored answer is served with no upstream call (no
 * rate-limit token, pacing slot, retry budget or breaker call spent); a
 * stale one with a validator is revalidated (the GET goes upstream with
 * If-None-Match or If-Modified-Since, and a 304 refreshes the entry); after
 * it, a 200 is stored as it streams to the client, and an unsafe method's
 * success drops the path's entries. Every answer on the route says how it
 * was answered (`X-Breakwater-Cache`, `Cache-Status`), and the exchange
 * counts it once.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { CacheResult } from '../observe/metrics.js';
import { rewritePath } from '../router/match-route.js';
import type { RouteCache, RouteRuntime } from '../runtime/routes.js';
import {
  directives,
  freshnessOf,
  hasValidator,
  isConditional,
  isFresh,
  mergeNotModified,
  notModified,
  validatorHeaders,
  worthStoring,
  type Freshness,
} from '../upstream/cache-rules.js';
import { buildResponseHeaders } from '../upstream/headers.js';
import type { UpstreamResponse } from '../upstream/response.js';
import type { StaleEntry } from '../upstream/stale-store.js';
import type { HttpContext, ServerDeps } from './exchange.js';
import type { Shared } from './coalesce.js';
import { storeKeyOf } from './stale.js';

/** How a request that goes upstream stands with the cache. */
export interface CacheVisit {
  readonly key: string;
  /** The stale entry this request revalidates (it went upstream with the entry's validator). */
  readonly revalidating: StaleEntry | undefined;
  /** A GET whose answer may be stored. */
  readonly mayStore: boolean;
  /** The answer's freshness, once a 200 that will be stored arrived: kept with it (server/stale.ts). */
  freshness?: Freshness;
  /** The validator headers added for a revalidation, taken off again once it is answered (the client sent none). */
  readonly added?: readonly string[];
  /** Identical GETs may share its upstream request (SPEC §17 `coalesce`): a GET without no-cache or validators. */
  readonly shares: boolean;
  /** The shared request it leads, once it went upstream as the one identical GETs wait for. */
  leader?: Shared;
}

const SAFE = new Set(['GET', 'HEAD']);
const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** The client asked not to be answered from the store without the upstream (RFC 9111 §5.2.1.4). */
function wantsUpstream(request: IncomingHttpHeaders): boolean {
  const pragma = request.pragma;
  return (
    directives(request['cache-control']).has('no-cache') ||
    (Array.isArray(pragma) ? pragma.join(',') : (pragma ?? '')).toLowerCase().includes('no-cache')
  );
}

/** Names how the request was answered: the header every answer on the route carries, the access log's, the metric's. */
export function mark(ctx: HttpContext, result: CacheResult, status: string): void {
  ctx.cache = result;
  if (ctx.res.headersSent) return;
  ctx.res.setHeader('x-breakwater-cache', result);
  ctx.res.setHeader('cache-status', `Breakwater; ${status}`);
}

/**
 * Before the pipeline: answers a fresh entry (returns undefined), or says how the request goes upstream (a
 * revalidation adds the entry's validator to the request's headers).
 */
export function visitCache(ctx: HttpContext, route: RouteRuntime): CacheVisit | undefined {
  const cache = route.cache!;
  const key = storeKeyOf(cache.store, ctx, route);
  const request = ctx.clientHeaders;
  if (!SAFE.has(ctx.method) || directives(request['cache-control']).has('no-store')) {
    mark(ctx, 'bypass', 'fwd=bypass');
    return { key, revalidating: undefined, mayStore: false, shares: false };
  }
  // Only a plain GET waits for another's upstream request; no-cache, no-store and validators never wait.
  const shares = cache.config.coalesce && ctx.method === 'GET' && !wantsUpstream(request) && !isConditional(request);
  const entry = cache.store.match(key, request);
  const freshness = entry?.freshness;
  const mayStore = ctx.method === 'GET';
  if (entry && freshness && !wantsUpstream(request) && isFresh(freshness, cache.config.ttl)) {
    serveStored(ctx, route, entry, 'hit');
    return undefined;
  }
  // The client's own validators, or a HEAD: forwarded as sent.
  if (!entry || !freshness || isConditional(request) || ctx.method === 'HEAD') {
    mark(ctx, 'miss', 'fwd=miss');
    return { key, revalidating: undefined, mayStore, shares };
  }
  if (!cache.config.revalidate || !hasValidator(freshness)) {
    if (!cache.config.revalidate) cache.store.drop(key);
    mark(ctx, 'miss', 'fwd=stale');
    return { key, revalidating: undefined, mayStore, shares };
  }
  const validators = validatorHeaders(freshness);
  Object.assign(request, validators);
  mark(ctx, 'miss', 'fwd=stale');
  return { key, revalidating: entry, mayStore, added: Object.keys(validators), shares };
}

/**
 * After the pipeline, with the upstream's answer: a 304 to a revalidation refreshes the entry and the client
 * gets it (returns true: answered); a 4xx drops it; a 200 is marked stored when it will be; an unsafe method's
 * success drops every caller's entries of its path.
 */
export function answeredFromCache(
  visit: CacheVisit,
  ctx: HttpContext,
  route: RouteRuntime,
  response: UpstreamResponse,
  deps: Pick<ServerDeps, 'now'>,
): boolean {
  const cache = route.cache!;
  const status = response.statusCode;
  for (const name of visit.added ?? []) delete ctx.clientHeaders[name];
  if (UNSAFE.has(ctx.method)) {
    if (status < 400) cache.store.dropPath(pathOf(ctx, route));
    return false;
  }
  const entry = visit.revalidating;
  if (entry && status === 304) {
    response.destroy();
    const refreshed = refresh(cache, entry, response.headers, ctx, pathOf(ctx, route), deps.now());
    cache.store.replace(visit.key, refreshed);
    visit.leader?.settle({ kind: 'stored', entry: refreshed });
    serveStored(ctx, route, refreshed, 'revalidated');
    return true;
  }
  if (entry && status >= 400 && status < 500) cache.store.drop(visit.key);
  if (status !== 200 || !visit.mayStore || !cache.store.storable(status, response.headers, ctx.clientHeaders))
    return false;
  // Stored as it streams to the client (server/stale.ts), when it can ever be served: fresh a while, or revalidated.
  const freshness = freshnessOf(cache.policy, pathOf(ctx, route), ctx.clientHeaders, response.headers);
  if (worthStoring(freshness, cache.config.ttl) || route.stale) {
    visit.freshness = freshness;
    mark(ctx, 'miss', `${entry ? 'fwd=stale; fwd-status=200' : 'fwd=miss'}; stored`);
  }
  return false;
}

/** The entry a 304 refreshed: its headers replace the stored ones of the same name; its age starts again. */
function refresh(
  cache: RouteCache,
  entry: StaleEntry,
  update: IncomingHttpHeaders,
  ctx: HttpContext,
  url: string,
  at: number,
): StaleEntry {
  const headers = mergeNotModified(entry.headers, update);
  return { ...entry, headers, storedAt: at, freshness: freshnessOf(cache.policy, url, ctx.clientHeaders, headers) };
}

function pathOf(ctx: HttpContext, route: RouteRuntime): string {
  const host = route.upstream ? '' : `${ctx.destination?.target.url.origin ?? ''}`;
  return host + rewritePath(ctx.url, route.config.match.pathPrefix, route.config.stripPrefix);
}

/** Answers from a stored entry: 304 to a client's matching validators, else the stored 200 (no body to a HEAD). */
export function serveStored(
  ctx: HttpContext,
  route: RouteRuntime,
  entry: StaleEntry,
  result: 'hit' | 'revalidated' | 'coalesced',
): void {
  const freshness = entry.freshness!;
  mark(
    ctx,
    result,
    result === 'hit' ? 'hit' : result === 'revalidated' ? 'fwd=stale; fwd-status=304' : 'fwd=miss; collapsed',
  );
  ctx.target = entry.target;
  const headers = buildResponseHeaders(entry.headers, {
    requestId: ctx.requestId,
    attempts: ctx.attempts,
    edits: route.responseEdits,
    target: entry.target,
  });
  headers['age'] = String(Math.max(0, Math.floor(freshness.policy.age())));
  if (isConditional(ctx.clientHeaders) && notModified(ctx.clientHeaders, freshness)) {
    delete headers['content-length'];
    ctx.res.writeHead(304, headers);
    ctx.res.end();
    return;
  }
  headers['content-length'] = String(entry.body.length);
  ctx.res.writeHead(entry.status, headers);
  ctx.res.end(ctx.method === 'HEAD' ? undefined : entry.body);
}
