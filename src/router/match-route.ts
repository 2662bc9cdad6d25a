/**
 * Route matching (SPEC §3): routes are tried in order and the first whose
 * `match` holds wins. `pathPrefix` matches on segment boundaries, `host` on
 * the Host header (port ignored unless the pattern names one) with `*.`
 * wildcards, `methods` on the request method. Compiled once per config.
 */
import type { RouteConfig } from '../config/types.js';

export interface RouteMatcher {
  matches(request: MatchInput): boolean;
}

export interface MatchInput {
  /** Host header, lower case, as sent (may carry a port). */
  readonly host: string;
  readonly method: string;
  /** Path without the query string. */
  readonly path: string;
}

/** `/stripe` holds for `/stripe` and `/stripe/x`, not for `/stripey`; `/api/` holds for `/api/x`. */
export function pathHasPrefix(path: string, prefix: string): boolean {
  if (prefix === '/' || path === prefix) return true;
  if (!path.startsWith(prefix)) return false;
  return prefix.endsWith('/') || path.charCodeAt(prefix.length) === 47; // '/'
}

/** `api.example.com` or `*.example.com` (any depth of subdomain, not the bare domain), optionally with `:port`. */
export function hostMatches(host: string, pattern: string): boolean {
  const patternHasPort = /:\d+$/.test(pattern) || /^\[.*\]:\d+$/.test(pattern);
  const candidate = patternHasPort ? host : stripPort(host);
  if (pattern.startsWith('*.')) return candidate.endsWith(pattern.slice(1)) && candidate.length > pattern.length - 1;
  return candidate === pattern;
}

export function stripPort(host: string): string {
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end === -1 ? host : host.slice(0, end + 1);
  }
  const colon = host.lastIndexOf(':');
  return colon === -1 || host.indexOf(':') !== colon ? host : host.slice(0, colon);
}

export function compileMatcher(route: RouteConfig): RouteMatcher {
  const { pathPrefix, host, methods } = route.match;
  const methodSet: ReadonlySet<string> | null = methods ? new Set<string>(methods) : null;
  return {
    matches(request) {
      if (methodSet && !methodSet.has(request.method)) return false;
      if (host !== null && !hostMatches(request.host, host)) return false;
      return pathHasPrefix(request.path, pathPrefix);
    },
  };
}

/** The path sent upstream: the prefix removed when `stripPrefix`, query kept, never empty. */
export function rewritePath(url: string, prefix: string, strip: boolean): string {
  if (!strip || prefix === '/') return url;
  const rest = url.slice(prefix.endsWith('/') ? prefix.length - 1 : prefix.length);
  if (rest === '' || rest.startsWith('?')) return `/${rest}`;
  return rest;
}

/** First route that holds, in config order. */
export function matchRoute<T extends { readonly matcher: RouteMatcher }>(
  routes: readonly T[],
  request: MatchInput,
): T | undefined {
  for (const route of routes) if (route.matcher.matches(request)) return route;
  return undefined;
}
