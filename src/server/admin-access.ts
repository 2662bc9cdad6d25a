/**
 * Who may read the admin port (SPEC §19.1). The port binds 0.0.0.0 so that
 * Prometheus and the kubelet reach `/metrics` and the probes on the pod's
 * address; everything else (`/config`, `/status`, `/stats`, `/errors`, the
 * dashboard, any other path or method) answers only:
 *
 * - a loopback peer (the pod itself, `kubectl port-forward`: the
 *   connection's own source address; no forwarding header counts) whose
 *   Host is an IP address, `localhost` or a name under `.localhost`, so a
 *   page that rebinds its own name to 127.0.0.1 is not local; or
 * - with `admin.token`, a peer sending `Authorization: Bearer <token>`, or
 *   the dashboard's cookie (an HMAC of the token, never the token), which
 *   `GET /?token=` sets and which admits GET and HEAD only.
 *
 * Tokens are compared in constant time, as digests of equal length.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { BreakwaterError } from '../errors/breakwater-error.js';
import { stripPort } from '../router/match-route.js';

/** Paths every client may GET: the scrape and the probes. */
const OPEN_PATHS: ReadonlySet<string> = new Set(['/metrics', '/healthz', '/readyz']);

export const ADMIN_COOKIE = 'breakwater_admin';

/** The token's forms this port compares against; built once per token (a reload may rotate it). */
export interface AdminToken {
  readonly digest: Buffer;
  /** The cookie value: an HMAC of the token, never the token. */
  readonly cookie: string;
}

const tokens = new Map<string, AdminToken>();

export function adminToken(token: string | null): AdminToken | null {
  if (token === null) return null;
  let built = tokens.get(token);
  if (!built) {
    tokens.clear(); // one token at a time: a rotation drops the old one
    built = {
      digest: sha256(token),
      cookie: createHmac('sha256', token).update('breakwater admin cookie v1').digest('base64url'),
    };
    tokens.set(token, built);
  }
  return built;
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

function sameSecret(given: string, expected: Buffer): boolean {
  return timingSafeEqual(sha256(given), expected);
}

/** `127.0.0.0/8`, `::1`, `::ffff:127.0.0.0/104`. */
export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  if (address === '::1') return true;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return isIP(v4) === 4 && v4.startsWith('127.');
}

/**
 * A Host a rebinding page cannot send for this port: an IP literal, localhost, a name under .localhost (no Host:
 * not a browser).
 */
function localHost(host: string | undefined): boolean {
  if (host === undefined) return true;
  const lower = host.toLowerCase();
  if (lower.startsWith('['))
    return /^\[[0-9a-f:.]+\](:\d{1,5})?$/.test(lower) && isIP(lower.slice(1, lower.indexOf(']'))) === 6;
  let name = stripPort(lower);
  if (name.endsWith('.')) name = name.slice(0, -1);
  return name === 'localhost' || name.endsWith('.localhost') || isIP(name) === 4;
}

function bearerOf(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const space = header.indexOf(' ');
  if (space === -1 || header.slice(0, space).toLowerCase() !== 'bearer') return undefined;
  return header.slice(space + 1).trim();
}

function cookieOf(header: string | undefined): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === ADMIN_COOKIE) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export type AdminDecision =
  | { readonly admitted: true }
  | { readonly admitted: false; readonly error: BreakwaterError; readonly headers: Record<string, string> };

const ADMITTED: AdminDecision = { admitted: true };

/** Whether `req` for `path` may be answered; decided before 404 and 405. */
export function decideAdmin(req: IncomingMessage, path: string, token: AdminToken | null): AdminDecision {
  const readOnly = req.method === 'GET' || req.method === 'HEAD';
  if (readOnly && OPEN_PATHS.has(path)) return ADMITTED;
  if (isLoopback(req.socket.remoteAddress) && localHost(req.headers.host)) return ADMITTED;
  if (token === null) {
    return {
      admitted: false,
      error: new BreakwaterError(
        'ADMIN_FORBIDDEN',
        'This admin endpoint answers only the pod or host itself (a loopback peer), and no admin.token is configured.',
      ),
      headers: {},
    };
  }
  const bearer = bearerOf(req.headers.authorization);
  if (bearer !== undefined && sameSecret(bearer, token.digest)) return ADMITTED;
  const cookie = cookieOf(req.headers.cookie);
  if (readOnly && cookie !== undefined && bearer === undefined && timingSafeEqual(sha256(cookie), sha256(token.cookie)))
    return ADMITTED;
  const wrong = bearer !== undefined;
  return {
    admitted: false,
    error: new BreakwaterError(
      'ADMIN_UNAUTHORIZED',
      wrong
        ? 'The admin token sent is not the configured one.'
        : 'This admin endpoint needs the admin token from a peer that is not local.',
    ),
    headers: { 'www-authenticate': `Bearer realm="breakwater"${wrong ? ', error="invalid_token"' : ''}` },
  };
}

/** `GET /?token=`: the cookie to set for a right token, or undefined for a wrong one. */
export function cookieFor(given: string, token: AdminToken | null): string | undefined {
  if (token === null || !sameSecret(given, token.digest)) return undefined;
  return `${ADMIN_COOKIE}=${token.cookie}; Path=/; HttpOnly; SameSite=Strict`;
}
