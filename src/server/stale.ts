/**
 * Stale answers at the server edge (SPEC §8.2): a good answer is kept as
 * it streams to the client (no added latency, dropped if incomplete or
 * too large), and a GET or HEAD that would get one of the upstream-side
 * failures below is answered with it instead, when it is young enough.
 */
import type { UpstreamResponse } from '../upstream/response.js';
import { upstreamStatusEntry } from '../errors/upstream-catalog.js';
import { flagForCode } from '../observe/access-log.js';
import { rewritePath } from '../router/match-route.js';
import type { RouteRuntime } from '../runtime.js';
import { buildResponseHeaders } from '../upstream/headers.js';
import { refusesStale, type StaleStore } from '../upstream/stale-store.js';
import type { Freshness } from '../upstream/cache-rules.js';
import type { ServerDeps, HttpContext } from './exchange.js';

/** The failures a stale answer replaces; an upstream 4xx never is one. */
const STALE_CODES: ReadonlySet<string> = new Set([
  'CIRCUIT_OPEN',
  'UPSTREAM_TIMEOUT',
  'UPSTREAM_CONNECT_FAILED',
  'UPSTREAM_RESET',
  'UPSTREAM_PROTOCOL_ERROR',
  'RETRY_BUDGET_EXHAUSTED',
]);
const STALE_STATUSES: ReadonlySet<number> = new Set([500, 502, 503, 504]);

function readable(ctx: HttpContext): boolean {
  return ctx.method === 'GET' || ctx.method === 'HEAD';
}

/**
 * A forward-proxy route sends each request to its own host: the host is part of the key (a route with an
 * upstream sends all to it).
 */
export function storeKeyOf(store: StaleStore, ctx: HttpContext, route: RouteRuntime): string {
  const host = route.upstream ? '' : `${ctx.destination?.target.url.origin ?? ''}`;
  return store.keyOf(
    host + rewritePath(ctx.url, route.config.match.pathPrefix, route.config.stripPrefix),
    ctx.clientHeaders,
    route.config.keyHeaders,
  );
}

/** Whether a failure with this code may be answered stale. */
export function staleReplaces(code: string): boolean {
  return STALE_CODES.has(code);
}

/** The code an upstream status is answered with when stale may replace it (errors.normalize: all's), else undefined. */
export function staleStatusCode(status: number): string | undefined {
  return STALE_STATUSES.has(status) ? upstreamStatusEntry(status).code : undefined;
}

/**
 * Keeps a 200 to a GET as it streams to the client, when the route stores answers and this one may be stored;
 * on a route with a cache, only with `freshness` (server/cache.ts decided it is worth storing, SPEC §17).
 */
export function keepAnswer(
  ctx: HttpContext,
  route: RouteRuntime,
  response: UpstreamResponse,
  deps: Pick<ServerDeps, 'now'>,
  freshness: Freshness | undefined,
  since?: number,
): void {
  const store = route.store;
  if (!store || ctx.method !== 'GET' || ctx.flags.has('STALE') || (route.cache && !freshness)) return;
  const vary = store.storable(response.statusCode ?? 0, response.headers, ctx.clientHeaders);
  if (!vary) return;
  const limit = store.config.maxEntryBytes;
  const chunks: Buffer[] = [];
  let size = 0;
  const onData = (chunk: Buffer) => {
    size += chunk.length;
    if (size > limit) {
      // Too large: streams on, never stored.
      response.off('data', onData);
      chunks.length = 0;
      return;
    }
    chunks.push(chunk);
  };
  response.on('data', onData);
  response.once('end', () => {
    if (size > limit || !response.complete) return;
    const target = ctx.target ?? '';
    store.store(
      storeKeyOf(store, ctx, route),
      {
        status: 200,
        headers: response.headers,
        body: Buffer.concat(chunks, size),
        storedAt: deps.now(),
        target,
        vary,
        ...(freshness && { freshness }),
      },
      ctx.clientHeaders,
      since,
    );
  });
}

/**
 * Answers with the stored answer instead of failing with `code` (one that
 * {@link staleReplaces}, or {@link staleStatusCode}'s), when the route keeps answers, the request may have one
 * and one is young enough.
 * Returns whether it answered.
 */
export function answerStale(
  ctx: HttpContext,
  route: RouteRuntime,
  code: string,
  deps: Pick<ServerDeps, 'now' | 'metrics'>,
): boolean {
  const store = route.stale;
  if (!store || !readable(ctx) || refusesStale(ctx.clientHeaders)) return false;
  const at = deps.now();
  const entry = store.lookup(storeKeyOf(store, ctx, route), ctx.clientHeaders, at);
  if (!entry || ctx.res.headersSent || ctx.res.destroyed) return false;
  ctx.flags.add('STALE');
  ctx.staleFor = code;
  const flag = flagForCode(code);
  if (flag) ctx.flags.add(flag);
  ctx.target = entry.target;
  deps.metrics.fallbacks.inc({ route: route.name, reason: code });
  const headers = buildResponseHeaders(entry.headers, {
    requestId: ctx.requestId,
    attempts: ctx.attempts,
    edits: route.responseEdits,
    target: entry.target,
  });
  headers['content-length'] = String(entry.body.length);
  headers['age'] = String(Math.max(0, Math.floor((at - entry.storedAt) / 1000)));
  headers['x-breakwater-fallback'] = 'stale';
  headers['cache-status'] = `breakwater; hit; detail=stale-${code.toLowerCase()}`;
  ctx.res.writeHead(entry.status, headers);
  ctx.res.end(ctx.method === 'HEAD' ? undefined : entry.body);
  return true;
}
