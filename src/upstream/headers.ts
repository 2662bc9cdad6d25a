/**
 * Header rewriting in both directions (SPEC §4): hop-by-hop headers removed,
 * X-Forwarded-* added, X-Request-Id carried, and the route's configured
 * set/remove applied. Edits are compiled once per route at config load.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { HeaderEditsConfig } from '../config/types.js';

/** RFC 9110 §7.6.1 connection-specific headers, plus the Proxy-* family and Expect (answered by the proxy itself). */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authorization',
  'proxy-authenticate',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/**
 * Request headers that address Breakwater itself and never go upstream;
 * `host` names the upstream's own authority instead (a `set` edit may name another).
 */
const BREAKWATER_REQUEST_HEADERS = new Set(['x-breakwater-max-retries', 'x-breakwater-timeout', 'expect', 'host']);

/**
 * Forwarding headers only Breakwater writes (SPEC §4): a client's own value
 * is removed, never passed on, or it could pose to the upstream as another
 * host, scheme or client address. X-Forwarded-For is not here: it keeps
 * the client's value with the peer appended, as SPEC §4 says. A route's
 * `headers.request.set` may still set any of them.
 */
const FORWARDING_HEADERS = new Set(['forwarded', 'x-real-ip', 'x-forwarded-host', 'x-forwarded-proto']);

/**
 * The same names spelled with underscores (`X_Forwarded_For`): CGI-style
 * servers (Rack, PHP-FPM, WSGI) read `X_Forwarded_Host` and
 * `X-Forwarded-Host` as one `HTTP_X_FORWARDED_HOST`, so such a spelling
 * would pose as the real one. Dropped, as nginx drops every underscore
 * name by default; other underscore names (`api_key`) pass.
 */
const UNDERSCORE_SPOOFS = new Set([...FORWARDING_HEADERS, 'x-forwarded-for'].map((name) => name.replaceAll('-', '_')));

export interface CompiledHeaderEdits {
  /** Lower-cased names to remove. */
  readonly remove: ReadonlySet<string>;
  /** Lower-cased name → value. */
  readonly set: readonly (readonly [string, string])[];
}

export function compileHeaderEdits(edits: HeaderEditsConfig): CompiledHeaderEdits {
  return {
    remove: new Set(edits.remove.map((name) => name.toLowerCase())),
    set: Object.entries(edits.set).map(([name, value]) => [name.toLowerCase(), value] as const),
  };
}

/** Header names listed in a Connection header: they are hop-by-hop too. */
function connectionNamed(value: string | string[] | undefined): Set<string> | undefined {
  if (value === undefined) return undefined;
  const text = Array.isArray(value) ? value.join(',') : value;
  if (text === '' || text === 'close' || text === 'keep-alive') return undefined;
  const names = new Set<string>();
  for (const token of text.split(',')) {
    const name = token.trim().toLowerCase();
    if (name) names.add(name);
  }
  return names;
}

function isHopByHop(name: string, named: Set<string> | undefined): boolean {
  return HOP_BY_HOP.has(name) || name.startsWith('proxy-') || (named !== undefined && named.has(name));
}

export interface UpstreamHeaderOptions {
  /** The client's address, appended to X-Forwarded-For. */
  readonly remoteAddress: string | undefined;
  /** The scheme the client used to reach Breakwater. */
  readonly proto: 'http' | 'https';
  readonly requestId: string;
  readonly edits: CompiledHeaderEdits;
  /** Keep `Connection: upgrade` and `Upgrade: websocket`. */
  readonly websocket?: boolean;
  /** A failover target's own edits, applied after the route's (SPEC §8.1). */
  readonly targetEdits?: CompiledHeaderEdits | null;
}

/** The headers of the request sent upstream, built from the client's; a fresh object per attempt. */
export function buildUpstreamHeaders(
  incoming: IncomingHttpHeaders,
  options: UpstreamHeaderOptions,
): OutgoingHttpHeaders {
  const named = connectionNamed(incoming.connection);
  const out: OutgoingHttpHeaders = {};
  for (const name in incoming) {
    if (
      isHopByHop(name, named) ||
      BREAKWATER_REQUEST_HEADERS.has(name) ||
      FORWARDING_HEADERS.has(name) ||
      options.edits.remove.has(name)
    )
      continue;
    if (name.includes('_') && UNDERSCORE_SPOOFS.has(name.replaceAll('-', '_'))) continue;
    out[name] = incoming[name];
  }
  const forwardedFor = incoming['x-forwarded-for'];
  const peer = options.remoteAddress ?? '';
  out['x-forwarded-for'] = forwardedFor
    ? `${Array.isArray(forwardedFor) ? forwardedFor.join(', ') : forwardedFor}, ${peer}`
    : peer;
  out['x-forwarded-proto'] = options.proto;
  // The Host the client sent, port included; none without a Host (HTTP/1.0).
  if (incoming.host !== undefined) out['x-forwarded-host'] = incoming.host;
  out['x-request-id'] = options.requestId;
  if (options.websocket) {
    out.connection = 'Upgrade';
    out.upgrade = incoming.upgrade;
  }
  for (const [name, value] of options.edits.set) out[name] = value;
  if (options.targetEdits) {
    for (const name of options.targetEdits.remove) delete out[name];
    for (const [name, value] of options.targetEdits.set) out[name] = value;
  }
  return out;
}

export interface ResponseHeaderOptions {
  readonly requestId: string;
  readonly attempts: number;
  readonly edits: CompiledHeaderEdits;
  /** The target that answered (SPEC §8.1). */
  readonly target: string | null;
}

/** The headers of the response sent to the client, built from the upstream's. */
export function buildResponseHeaders(
  upstream: IncomingHttpHeaders,
  options: ResponseHeaderOptions,
): OutgoingHttpHeaders {
  const named = connectionNamed(upstream.connection);
  const out: OutgoingHttpHeaders = {};
  for (const name in upstream) {
    if (isHopByHop(name, named) || options.edits.remove.has(name)) continue;
    out[name] = upstream[name];
  }
  for (const [name, value] of options.edits.set) out[name] = value;
  out['x-request-id'] = options.requestId;
  out['x-breakwater-attempts'] = String(options.attempts);
  if (options.target !== null) out['x-breakwater-target'] = options.target;
  return out;
}

/** Response headers Breakwater writes itself (after the edits), never copied from upstream. */
const OWN_RESPONSE_HEADERS = new Set(['x-request-id', 'x-breakwater-attempts', 'x-breakwater-target']);

/**
 * {@link buildResponseHeaders} from the upstream's raw header lines, as the
 * flat name/value list `writeHead` takes: no intermediate objects, and
 * repeated lines stay separate lines, as received. `name` lower-cases a
 * raw name.
 */
export function buildResponseHeaderList(
  raw: readonly Buffer[],
  name: (raw: Buffer) => string,
  options: ResponseHeaderOptions,
): string[] {
  const names: string[] = new Array<string>(raw.length >> 1);
  let connection: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const lower = name(raw[i]!);
    names[i >> 1] = lower;
    if (lower === 'connection')
      connection =
        connection === undefined ? raw[i + 1]!.toString('latin1') : `${connection},${raw[i + 1]!.toString('latin1')}`;
  }
  const named = connectionNamed(connection);
  const { remove, set } = options.edits;
  const out: string[] = [];
  for (let i = 0; i < names.length; i++) {
    const lower = names[i]!;
    if (
      isHopByHop(lower, named) ||
      remove.has(lower) ||
      OWN_RESPONSE_HEADERS.has(lower) ||
      (set.length > 0 && set.some(([edited]) => edited === lower))
    )
      continue;
    out.push(lower, raw[2 * i + 1]!.toString('latin1'));
  }
  for (const [edited, value] of set) out.push(edited, value);
  out.push('x-request-id', options.requestId, 'x-breakwater-attempts', String(options.attempts));
  if (options.target !== null) out.push('x-breakwater-target', options.target);
  return out;
}

const REQUEST_ID = /^[\x21-\x7e]{1,200}$/;

/** The client's X-Request-Id when it is a sane token, else undefined (one is generated). */
export function clientRequestId(value: string | string[] | undefined): string | undefined {
  const id = Array.isArray(value) ? value[0] : value;
  return id !== undefined && REQUEST_ID.test(id) ? id : undefined;
}
