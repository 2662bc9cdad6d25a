/**
 * RFC 9111 as SPEC §17 takes it, for a cache private to the app: freshness
 * from `max-age`, else `Expires` minus `Date`, else the route's `ttl` (no
 * heuristics; `s-maxage` is for shared caches), age from the upstream's
 * `Age` plus the time since received; validators for revalidation; a
 * client's conditional GET matched against a stored answer. Freshness and
 * age are http-cache-semantics' (`shared: false`, no heuristic), on the
 * injected wall clock.
 */
import type { IncomingHttpHeaders } from 'node:http';
import CachePolicy from 'http-cache-semantics';

/** What a stored answer says of its freshness (kept with it). */
export interface Freshness {
  readonly policy: CachePolicy;
  /** `max-age` or `Expires`: the answer's own lifetime; otherwise the route's `ttl` applies. */
  readonly explicit: boolean;
  /** `Cache-Control: no-cache` from the upstream: stale at once, whatever else it says. */
  readonly noCache: boolean;
  readonly etag: string | undefined;
  readonly lastModified: string | undefined;
}

const OPTIONS = { shared: false, cacheHeuristic: 0, immutableMinTimeToLive: 0 } as const;

/** http-cache-semantics reading `wall` instead of Date.now() (its constructor reads the clock too). */
export function policyOn(wall: () => number): typeof CachePolicy {
  return class extends CachePolicy {
    now(): number {
      return wall();
    }
  };
}

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

/** Cache-Control directives, lower case, with their values. */
export function directives(value: string | string[] | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (headerText(value) ?? '').split(',')) {
    const [name, arg] = part.split('=', 2);
    const key = name!.trim().toLowerCase();
    if (key) out.set(key, (arg ?? '').trim().replace(/^"|"$/g, ''));
  }
  return out;
}

/** The freshness facts of a 200 answer to a GET of `url`, received now. */
export function freshnessOf(
  Policy: typeof CachePolicy,
  url: string,
  request: IncomingHttpHeaders,
  response: IncomingHttpHeaders,
): Freshness {
  const cc = directives(response['cache-control']);
  return {
    policy: new Policy({ url, method: 'GET', headers: request }, { status: 200, headers: response }, OPTIONS),
    explicit: cc.has('max-age') || response.expires !== undefined,
    noCache: cc.has('no-cache'),
    etag: headerText(response.etag),
    lastModified: headerText(response['last-modified']),
  };
}

/** Seconds since the upstream produced it (its Age, plus the time since received). */
export function ageOf(freshness: Freshness): number {
  return freshness.policy.age();
}

/** Fresh: within its own lifetime, or (when it gives none) within `ttlMs`. */
export function isFresh(freshness: Freshness, ttlMs: number | null): boolean {
  if (freshness.noCache) return false;
  if (freshness.explicit) return freshness.policy.maxAge() > freshness.policy.age();
  return ttlMs !== null && freshness.policy.age() * 1000 < ttlMs;
}

/** Whether it can ever be served: fresh for a while, or revalidated with a validator. */
export function worthStoring(freshness: Freshness, ttlMs: number | null): boolean {
  const freshForAWhile = !freshness.noCache && (freshness.explicit ? freshness.policy.maxAge() > 0 : ttlMs !== null);
  return freshForAWhile || hasValidator(freshness);
}

export function hasValidator(freshness: Freshness): boolean {
  return freshness.etag !== undefined || freshness.lastModified !== undefined;
}

/** The conditional header that revalidates it: If-None-Match with its ETag, else If-Modified-Since. */
export function validatorHeaders(freshness: Freshness): Record<string, string> {
  if (freshness.etag !== undefined) return { 'if-none-match': freshness.etag };
  if (freshness.lastModified !== undefined) return { 'if-modified-since': freshness.lastModified };
  return {};
}

/** A request that carries its own validators. */
export function isConditional(request: IncomingHttpHeaders): boolean {
  return request['if-none-match'] !== undefined || request['if-modified-since'] !== undefined;
}

const opaque = (tag: string) => tag.trim().replace(/^W\//, '');

/** A client's conditional GET against a stored answer (weak comparison, RFC 9110 §13.1): true means 304. */
export function notModified(request: IncomingHttpHeaders, freshness: Freshness): boolean {
  const ifNoneMatch = headerText(request['if-none-match']);
  if (ifNoneMatch !== undefined) {
    if (freshness.etag === undefined) return false;
    const stored = opaque(freshness.etag);
    return ifNoneMatch.split(',').some((tag) => tag.trim() === '*' || opaque(tag) === stored);
  }
  const since = Date.parse(headerText(request['if-modified-since']) ?? '');
  const modified = Date.parse(freshness.lastModified ?? '');
  return Number.isFinite(since) && Number.isFinite(modified) && modified <= since;
}

/** Hop-by-hop and framing headers a 304 never replaces in a stored answer. */
const KEPT = new Set([
  'content-length',
  'transfer-encoding',
  'content-encoding',
  'connection',
  'keep-alive',
  'set-cookie',
]);

/** The stored headers with a 304's replacing those of the same name (RFC 9111 §4.3.4). */
export function mergeNotModified(stored: IncomingHttpHeaders, update: IncomingHttpHeaders): IncomingHttpHeaders {
  const merged: IncomingHttpHeaders = { ...stored };
  // Its age starts again: only the 304's own Age counts. A cookie is never stored (one caller's session).
  delete merged.age;
  for (const [name, value] of Object.entries(update)) if (!KEPT.has(name) && value !== undefined) merged[name] = value;
  return merged;
}
