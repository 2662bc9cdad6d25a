/**
 * What a target's credentials do for an attempt (SPEC §18): write their
 * headers when it is sent (after the route's and target's `headers`), tell
 * the leak guard which values are secret, and say how they stand for
 * `/status`. Bearer, named header and Basic are here; OAuth2 and SigV4 in
 * their own files.
 */
import type { OutgoingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { CredentialsConfig } from '../config/types.js';
import type { Signal } from '../lib/signal.js';
import type { SecretSource } from './secret-source.js';

/** The request of one attempt as it goes out: SigV4 signs it. */
export interface SendingRequest {
  readonly method: string;
  /** The target's base URL (its host is signed). */
  readonly url: URL;
  /** The path and query as sent, the target's own joined. */
  readonly path: string;
  readonly body: Readable | Buffer | undefined;
}

/** `/status`'s view of a target's credentials (SPEC §18); never a value. */
export interface CredentialStatus {
  readonly type: CredentialsConfig['type'];
  readonly source: 'file' | 'env' | 'token';
  /** When the value in use was read or fetched (RFC 3339). */
  readonly since: string;
  /** oauth2: when the token in use expires (null: unknown, or none yet). */
  readonly expiresAt?: string | null;
  /** The last failure (a file unreadable, a token fetch), or null. */
  readonly error: string | null;
}

export interface Credential {
  readonly type: CredentialsConfig['type'];
  /** Lower-case names of the headers it writes: the app's own are never sent. */
  readonly managed: readonly string[];
  /** Writes this attempt's headers; a promise only when it must wait (an OAuth2 token being fetched). */
  apply(headers: OutgoingHttpHeaders, request: SendingRequest, signal: Signal): void | Promise<void>;
  /** The values the leak guard looks for: every secret of 8 characters or more it sends or holds. */
  secrets(): readonly string[];
  /**
   * OAuth2: the upstream answered 401 to `sent` (the Authorization it carried): the token is dropped when it is
   * still the current one.
   */
  unauthorized?(sent: string | undefined): void;
  status(): CredentialStatus;
  /** The secrets it reads: a reload's runtime that keeps the credential takes over polling their files. */
  readonly sources: readonly SecretSource[];
}

/** The leak guard ignores shorter values: they would match by chance. */
export const MIN_GUARDED_LENGTH = 8;

export const guarded = (values: readonly string[]): string[] =>
  values.filter((value) => value.length >= MIN_GUARDED_LENGTH);

function statusOf(type: CredentialsConfig['type'], sources: readonly SecretSource[]): CredentialStatus {
  return {
    type,
    source: sources[0]!.source,
    since: new Date(Math.max(...sources.map((source) => source.since))).toISOString(),
    error: sources.find((source) => source.error !== null)?.error ?? null,
  };
}

/** Bearer, a named header, or Basic: one header from file or env secrets, rebuilt when one changes. */
export class StaticCredential implements Credential {
  readonly managed: readonly string[];
  private value = '';
  private held: string[] = [];

  constructor(
    readonly type: 'bearer' | 'header' | 'basic',
    private readonly header: string,
    readonly sources: readonly SecretSource[],
    private readonly build: (values: readonly string[]) => string,
  ) {
    this.managed = [header];
    this.rebuild();
    for (const source of sources) source.onChange(() => this.rebuild());
  }

  private rebuild(): void {
    const values = this.sources.map((source) => source.value);
    this.value = this.build(values);
    // Basic: the encoded pair is as secret as the password in it.
    this.held = guarded(this.type === 'basic' ? [...values, this.value.slice('Basic '.length)] : values);
  }

  apply(headers: OutgoingHttpHeaders): void {
    headers[this.header] = this.value;
  }

  secrets(): readonly string[] {
    return this.held;
  }

  status(): CredentialStatus {
    return statusOf(this.type, this.sources);
  }
}

export { statusOf };
