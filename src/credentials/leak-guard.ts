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

export class LeakGuard {
  constructor(private readonly held: readonly { readonly owner: string; readonly credential: Credential }[]) {}

  /** The first managed secret of another upstream than `destination` (null: not an upstream) the request carries. */
  find(headers: IncomingHttpHeaders, url: string, destination: string | null): Leak | undefined {
    let plain: string | undefined;
    for (const { owner, credential } of this.held) {
      if (owner === destination) continue;
      for (const secret of credential.secrets()) {
        for (const name in headers) {
          const value = headers[name];
          if (typeof value === 'string' ? value.includes(secret) : value?.some((one) => one.includes(secret)))
            return { where: name, owner, secret };
        }
        plain ??= url.includes('%') ? decoded(url) : url;
        if (url.includes(secret) || plain.includes(secret)) return { where: 'url', owner, secret };
      }
    }
    return undefined;
  }

  /** The refusal of a leak: where it was found, never the value. */
  static refusal(leak: Leak): BreakwaterError {
    const where = leak.where === 'url' ? 'the URL' : `the ${leak.where} header`;
    return new BreakwaterError(
      'CREDENTIAL_LEAK',
      `The request carries a secret of upstream '${leak.owner}' in ${where}, to another destination: refused before any connection.`,
    );
  }
}

/** `text` with every form of the leaked secret (raw, percent-encoded) replaced. */
export function masked(text: string, secret: string): string {
  let out = text;
  for (const form of [secret, encodeURIComponent(secret)]) out = out.split(form).join(REDACTED);
  return out;
}
