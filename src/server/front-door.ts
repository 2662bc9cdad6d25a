/**
 * Who may call the proxy port, and with what (SPEC §20.1, §20.2): checked
 * before route matching, any policy or any header set, so that a refusal
 * is never forwarded and never spends a credential.
 *
 * - The request target must be origin-form (`/…`) or absolute-form
 *   (`http(s)://…`); CONNECT's authority-form never comes here. Anything
 *   else (`x://../a`, `a/b`, `*`) cannot be forwarded: 400.
 * - Origin-form only (a client set up to use a proxy names its target in
 *   the request line, and its `Origin` is the target's site):
 *   - Host (DNS rebinding): a page on evil.example whose name now resolves
 *     to 127.0.0.1 sends `Host: evil.example`. Served: no Host, localhost
 *     and names under .localhost, IP literals, single-label names (compose
 *     services), what some route's `match.host` matches, `serverNames`.
 *   - Browsers: a cross-site page's request carries `Origin` or
 *     `Sec-Fetch-Site: cross-site | same-site`; refused unless its origin is
 *     listed, or is the proxy's own. No CORS header is ever added.
 */
import { isIP } from 'node:net';
import type { IncomingHttpHeaders } from 'node:http';
import type { Config } from '../config/types.js';
import { BreakwaterError } from '../errors/breakwater-error.js';
import { hostMatches, stripPort } from '../router/match-route.js';

/** The request target's form (RFC 9112 §3.2), as the request line wrote it. */
export type TargetForm = 'origin' | 'absolute' | 'other';

const ABSOLUTE = /^https?:\/\//i;

export function targetFormOf(rawUrl: string): TargetForm {
  if (rawUrl.charCodeAt(0) === 47) return 'origin'; // '/'
  return ABSOLUTE.test(rawUrl) ? 'absolute' : 'other';
}

/** 400 for a target that is neither origin-form nor absolute http(s) (§20.2); never echoes more than its form. */
export function unsendableTarget(): BreakwaterError {
  return new BreakwaterError(
    'BAD_REQUEST',
    'The request target must be a path (/…) or an absolute http:// URL; this one is neither, and cannot be forwarded.',
  );
}

/** A config's compiled Host and Origin rules; built once per config (reloads build a new one). */
interface Door {
  readonly anyHost: boolean;
  /**
   * Route `match.host` patterns and `serverNames`, lower-cased; `withPort`: matched against the Host as sent,
   * not its name.
   */
  readonly hostPatterns: readonly { readonly pattern: string; readonly withPort: boolean }[];
  readonly anyOrigin: boolean;
  readonly origins: ReadonlySet<string>;
}

const doors = new WeakMap<Config, Door>();

function doorOf(config: Config): Door {
  let door = doors.get(config);
  if (door) return door;
  const { serverNames, allowOrigins } = config.listen;
  const routeHosts = config.routes.flatMap((route) =>
    route.match.host === null ? [] : [route.match.host.toLowerCase()],
  );
  door = {
    anyHost: serverNames.includes('*'),
    hostPatterns: [...routeHosts, ...serverNames].map((pattern) => ({ pattern, withPort: /:\d+$/.test(pattern) })),
    anyOrigin: allowOrigins.includes('*'),
    origins: new Set(allowOrigins),
  };
  doors.set(config, door);
  return door;
}

/** An IPv6 literal with nothing after it but a port. */
const BRACKETED = /^\[[0-9a-f:.]+\](:\d{1,5})?$/;

/**
 * The Host's name: port dropped, lower case, no trailing dot; IPv6 literals keep their brackets. Null for a Host
 * no client names a server with (`[::1]evil`).
 */
function hostName(host: string): string | null {
  if (host.startsWith('[') && !BRACKETED.test(host)) return null;
  const name = stripPort(host);
  return name.endsWith('.') ? name.slice(0, -1) : name;
}

/** Names that only this host, or a browser asking for it by address, can use. */
function alwaysServed(name: string): boolean {
  if (name === 'localhost' || name.endsWith('.localhost')) return true;
  if (name.startsWith('[') && name.endsWith(']')) return isIP(name.slice(1, -1)) === 6;
  if (isIP(name) !== 0) return true;
  return !name.includes('.');
}

function hostServed(door: Door, host: string): boolean {
  if (door.anyHost) return true;
  const name = hostName(host);
  if (name === null) return false;
  if (alwaysServed(name)) return true;
  return door.hostPatterns.some(({ pattern, withPort }) => hostMatches(withPort ? host : name, pattern));
}

/** §20.1's browser rule. `origin` undefined: no Origin header. */
function browserAllowed(door: Door, headers: IncomingHttpHeaders, host: string): boolean {
  if (door.anyOrigin) return true;
  const site = headers['sec-fetch-site']?.toLowerCase();
  const origin = headers.origin;
  const crossSite = site === 'cross-site' || site === 'same-site';
  if (!crossSite && origin === undefined) return true;
  if (origin === undefined) return false;
  const lower = origin.toLowerCase();
  if (door.origins.has(lower)) return true;
  return !crossSite && host !== '' && lower === `http://${host}`;
}

/**
 * The refusal an origin-form request gets from §20.1, or undefined when it
 * is served. `host` is the Host header as sent, lower-cased ('' when absent).
 */
export function frontDoorRefusal(
  config: Config,
  headers: IncomingHttpHeaders,
  host: string,
): BreakwaterError | undefined {
  const door = doorOf(config);
  // HTTP/1.0 without Host is served: nothing in it can name another site.
  if (host !== '' && !hostServed(door, host)) {
    return new BreakwaterError(
      'MISDIRECTED_REQUEST',
      `The Host header names a server this proxy does not serve; call it as localhost or by address, or list the name in listen.serverNames.`,
    );
  }
  if (!browserAllowed(door, headers, host)) {
    return new BreakwaterError(
      'CROSS_ORIGIN_REFUSED',
      'A browser page from another origin may not call this proxy; the request was not forwarded.',
    );
  }
  return undefined;
}
