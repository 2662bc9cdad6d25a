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

/** Where `secret` is in the headers (a name, or a value as sent or percent-decoded), if anywhere. */
function inHeaders(headers: IncomingHttpHeaders, secret: string): string | undefined {
  for (const name in headers) {
    const value = valueOf(headers[name]);
    // A name that holds it is never named.
    if (name.includes(secret.toLowerCase())) return HEADER_NAME;
    if (value.includes(secret)) return name;
    if (value.includes('%') && decoded(value).includes(secret)) return name;
  }
  return undefined;
}

export class LeakGuard {
  constructor(private readonly held: readonly { readonly owner: string; readonly credential: Credential }[]) {}

  /** The first managed secret of another upstream than `destination` (null: not an upstream) the request carries. */
  find(headers: IncomingHttpHeaders, url: string, destination: string | null): Leak | undefined {
    let plain: string | undefined;
    for (const { owner, credential } of this.held) {
      if (owner === destination) continue;
      for (const secret of credential.secrets()) {
        const where = inHeaders(headers, secret);
        if (where !== undefined) return { where, owner, secret };
        plain ??= url.includes('%') ? decoded(url) : url;
        if (url.includes(secret) || plain.includes(secret)) return { where: 'url', owner, secret };
      }
    }
    return undefined;
  }

  /**
   * `text` (a path, a host, an upstream's error body) with every managed secret replaced; percent-decoded first
   * when a secret hides in its escapes, whatever their case.
   */
  mask(text: string): string {
    // A host and header names reach us in lower case: their secrets too.
    const secrets = this.held.flatMap(({ credential }) =>
      credential.secrets().flatMap((secret) => [secret, secret.toLowerCase()]),
    );
    const replace = (from: string) =>
      secrets.reduce((out, secret) => (out.includes(secret) ? out.split(secret).join(REDACTED) : out), from);
    const out = replace(text);
    if (!out.includes('%')) return out;
    const plain = decoded(out);
    const masked = replace(plain);
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
