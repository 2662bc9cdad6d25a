/**
 * The leak guard (SPEC §18): while any credentials are configured, a
 * request whose header values or URL (raw and percent-decoded) carry a
 * managed secret is refused before any connection unless it goes to that
 * secret's own upstream: an app, a library or an attacker who got hold of
 * one upstream's key cannot send it anywhere else through the sidecar.
 * Bodies are not read. A runtime without credentials has no guard at all.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { BreakwaterError } from '../errors/breakwater-error.js';
import { REDACTED } from '../config/secrets.js';
import type { Credential } from './credential.js';

/** Where a secret was found: a header's name, or `url`. */
export interface Leak {
  readonly where: string;
  /** The upstream the secret belongs to. */
  readonly owner: string;
  readonly secret: string;
}

function decoded(url: string): string {
  try {
    return decodeURIComponent(url);
  } catch {
    // A malformed escape: the raw form is all there is (the router refuses most of these first).
    return url.replace(/%([0-9a-f]{2})/gi, (_match, hex: string) => String.fromCharCode(parseInt(hex, 16)));
  }
}

/** Where a secret in a header's name was found (the name itself is not shown). */
const HEADER_NAME = "a header's name";

/** A header value's text, whatever its repetition. */
const valueOf = (value: string | string[] | undefined): string =>
  typeof value === 'string' ? value : value === undefined ? '' : value.join('\n');

/**
 * A request as the guard reads it, each text built once: the header names, the values as sent and
 * percent-decoded, the URL both ways. Joined with line feeds, which no secret holds (they must be sendable), so
 * no match spans two headers, and each secret costs one scan of each text rather than one per header (a client
 * sending 150 headers full of escapes made the guard decode each of them once per secret: 0.7 ms a request).
 */
interface RequestView {
  readonly names: string;
  readonly values: string;
  readonly decodedValues: string;
  readonly url: string;
  readonly decodedUrl: string;
}

function viewOf(headers: IncomingHttpHeaders, url: string): RequestView {
  const names: string[] = [];
  const values: string[] = [];
  for (const name in headers) {
    names.push(name);
    values.push(valueOf(headers[name]));
  }
  const joined = values.join('\n');
  return {
    names: names.join('\n'),
    values: joined,
    decodedValues: joined.includes('%') ? decoded(joined) : joined,
    url,
    decodedUrl: url.includes('%') ? decoded(url) : url,
  };
}

/** The header whose value holds `secret` (as sent or decoded): looked for only once a leak is known. */
function headerHolding(headers: IncomingHttpHeaders, secret: string): string {
  for (const name in headers) {
    const value = valueOf(headers[name]);
    if (value.includes(secret) || (value.includes('%') && decoded(value).includes(secret))) return name;
  }
  return 'a header';
}

/** Lower-case forms of the secrets (header names and hosts arrive lower-cased), kept rather than made per request. */
const LOWER_KEPT = 256;

export class LeakGuard {
  private readonly lower = new Map<string, string>();

  constructor(private readonly held: readonly { readonly owner: string; readonly credential: Credential }[]) {}

  private lowerOf(secret: string): string {
    let lower = this.lower.get(secret);
    if (lower === undefined) {
      // Rotated secrets and tokens come and go: the map is bounded.
      if (this.lower.size >= LOWER_KEPT) this.lower.clear();
      lower = secret.toLowerCase();
      this.lower.set(secret, lower);
    }
    return lower;
  }

  /** The first managed secret of another upstream than `destination` (null: not an upstream) the request carries. */
  find(headers: IncomingHttpHeaders, url: string, destination: string | null): Leak | undefined {
    let view: RequestView | undefined;
    for (const { owner, credential } of this.held) {
      if (owner === destination) continue;
      for (const secret of credential.secrets()) {
        view ??= viewOf(headers, url);
        // A name that holds it is never named.
        if (view.names.includes(this.lowerOf(secret))) return { where: HEADER_NAME, owner, secret };
        if (view.values.includes(secret) || view.decodedValues.includes(secret))
          return { where: headerHolding(headers, secret), owner, secret };
        if (view.url.includes(secret) || view.decodedUrl.includes(secret)) return { where: 'url', owner, secret };
      }
    }
    return undefined;
  }

  /** `text` with each secret, and its lower-case form, replaced. */
  private replaceAll(text: string): string {
    let out = text;
    for (const { credential } of this.held)
      for (const secret of credential.secrets()) {
        if (out.includes(secret)) out = out.split(secret).join(REDACTED);
        const lower = this.lowerOf(secret);
        if (out.includes(lower)) out = out.split(lower).join(REDACTED);
      }
    return out;
  }

  /**
   * `text` (a path, a host) with every managed secret replaced; percent-decoded first when a secret hides in its
   * escapes, whatever their case. A host and header names reach us in lower case: their secrets too.
   */
  mask(text: string): string {
    const out = this.replaceAll(text);
    if (!out.includes('%')) return out;
    const plain = decoded(out);
    const masked = this.replaceAll(plain);
    return masked === plain ? out : masked;
  }

  /** A JSON value (a journal entry) with every managed secret in its strings replaced; never decoded. */
  maskValue<T>(value: T): T {
    const secrets = this.held.flatMap(({ credential }) => credential.secrets());
    const walk = (node: unknown): unknown => {
      if (typeof node === 'string')
        return secrets.reduce((out, secret) => (out.includes(secret) ? out.split(secret).join(REDACTED) : out), node);
      if (Array.isArray(node)) return node.map(walk);
      if (node && typeof node === 'object')
        return Object.fromEntries(Object.entries(node).map(([key, item]) => [walk(key), walk(item)]));
      return node;
    };
    return walk(value) as T;
  }

  /** The refusal of a leak: where it was found, never the value. */
  static refusal(leak: Leak): BreakwaterError {
    const where =
      leak.where === 'url' ? 'the URL' : leak.where === HEADER_NAME ? HEADER_NAME : `the ${leak.where} header`;
    return new BreakwaterError(
      'CREDENTIAL_LEAK',
      `The request carries a secret of upstream '${leak.owner}' in ${where}, to another destination: refused before any connection.`,
    );
  }
}
