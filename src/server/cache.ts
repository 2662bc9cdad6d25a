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
  /** Identical GETs may share its upstream request (SPEC §17 `coalesce`): a GET without no-cache or validators. */
  readonly shares: boolean;
  /** The shared request it leads, once it went upstream as the one identical GETs wait for. */
  leader?: Shared;
  /** The store's mark when it started: an answer is not stored over a later drop of its path (SPEC §17). */
  readonly since: number;
}

const SAFE = new Set(['GET', 'HEAD']);
/** Request headers that make a GET's answer its own: it neither waits for another's nor is waited for. */
const PERSONAL = [
  'range',
  'if-range',
  'if-match',
  'if-unmodified-since',
  'x-breakwater-timeout',
  'x-breakwater-max-retries',
] as const;
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
 * On a route with a cache, Breakwater's cache headers win over any the upstream sent: its `X-Breakwater-Cache`
 * alone, its member last in `Cache-Status` (RFC 9211), after the upstream's. `headers`: a writeHead name/value list.
 */
export function ownCacheHeaders(ctx: HttpContext, headers: string[]): string[] {
  const out: string[] = [];
  const theirs: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i] === 'cache-status') theirs.push(headers[i + 1]!);
    else if (headers[i] !== 'x-breakwater-cache') out.push(headers[i]!, headers[i + 1]!);
  }
  mergeCacheStatus(ctx, theirs);
  return out;
}

function mergeCacheStatus(ctx: HttpContext, theirs: readonly string[]): void {
  const ours = ctx.res.getHeader('cache-status');
  if (theirs.length > 0 && ours !== undefined) ctx.res.setHeader('cache-status', [...theirs, String(ours)].join(', '));
}

/**
 * Before the pipeline: answers a fresh entry (returns undefined), or says how the request goes upstream (a
 * revalidation adds the entry's validator to the request's headers).
 */
export function visitCache(ctx: HttpContext, route: RouteRuntime): CacheVisit | undefined {
  const cache = route.cache!;
  const key = storeKeyOf(cache.store, ctx, route);
  const request = ctx.clientHeaders;
  const since = cache.store.mark();
  if (!SAFE.has(ctx.method) || directives(request['cache-control']).has('no-store')) {
    mark(ctx, 'bypass', 'fwd=bypass');
    return { key, revalidating: undefined, mayStore: false, shares: false, since };
  }
  // Only a plain GET shares another's upstream request, or has its own shared: no-cache, no-store, validators,
  // ranges, preconditions and the client's own timeout or retry count never do (their answer is theirs).
  const shares =
    cache.config.coalesce &&
    ctx.method === 'GET' &&
    !wantsUpstream(request) &&
    !isConditional(request) &&
    !PERSONAL.some((name) => request[name] !== undefined);
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
    return { key, revalidating: undefined, mayStore, shares, since };
  }
  if (!cache.config.revalidate || !hasValidator(freshness)) {
    // Not revalidated; left for a stale fallback (§8.2) until a new answer replaces it.
    mark(ctx, 'miss', 'fwd=stale');
    return { key, revalidating: undefined, mayStore, shares, since };
  }
  ctx.revalidation = validatorHeaders(freshness);
  mark(ctx, 'miss', 'fwd=stale');
  return { key, revalidating: entry, mayStore, shares, since };
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
  if (UNSAFE.has(ctx.method)) {
    if (status < 400) dropPath(cache, pathOf(ctx, route));
    return false;
  }
  const entry = visit.revalidating;
  if (entry && status === 304) {
    response.destroy();
    const refreshed = refresh(cache, entry, response.headers, ctx, pathOf(ctx, route), deps.now());
    // Not put back over an unsafe method's change of the path meanwhile (the client still gets what it asked for).
    if (!cache.store.droppedSince(visit.key, visit.since)) cache.store.replace(visit.key, refreshed);
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

/** Drops every caller's stored answers of `path`, and lets nobody join a GET of it already upstream. */
function dropPath(cache: RouteCache, path: string): void {
  cache.store.dropPath(path);
  const suffix = ` ${path}`;
  for (const key of [...cache.shared.keys()]) if (key.endsWith(suffix)) cache.shared.delete(key);
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
  // The stored answer's own cache headers give way to Breakwater's (set by mark, which writeHead would override).
  const theirs = headers['cache-status'];
  delete headers['cache-status'];
  delete headers['x-breakwater-cache'];
  if (theirs !== undefined) mergeCacheStatus(ctx, [String(theirs)]);
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
