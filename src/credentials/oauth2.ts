/**
 * OAuth2 client credentials (RFC 6749 §4.4, SPEC §18) through oauth4webapi:
 * a token is fetched when a request needs one, one fetch for every request
 * waiting, kept until `refreshBefore` its expiry (at most half its
 * lifetime) and then renewed in the background while it still serves. A
 * failed fetch is not retried: the requests waiting get
 * CREDENTIALS_UNAVAILABLE at once, and so does every request for 1 s after
 * it, so that a token endpoint that is down is not stormed. The endpoint's
 * answer goes into the error's `provider` (the journal shows it).
 */
import type { OutgoingHttpHeaders } from 'node:http';
import * as oauth from 'oauth4webapi';
import { HEADER_SAFE } from '../config/credential-checks.js';
import type { CredentialsConfig } from '../config/types.js';
import { untilAborted, type Signal } from '../lib/signal.js';
import { BreakwaterError, type ProviderNote } from '../errors/breakwater-error.js';
import { guarded, type Credential, type CredentialStatus } from './credential.js';
import type { SecretDeps, SecretSource } from './secret-source.js';

type OAuth2Config = Extract<CredentialsConfig, { type: 'oauth2' }>;

/** After a failed fetch, requests are refused without a new one for this long. */
export const FAILED_FETCH_HOLD_MS = 1000;
/** The most of a token endpoint's answer read (a token answer is a few hundred bytes). */
const ANSWER_CAP_BYTES = 64 * 1024;
const PROVIDER_BODY_BYTES = 4096;
const MAX_LIFETIME_S = 365 * 24 * 3600;
/** How many tokens no longer in use stay masked. */
const RETIRED_KEPT = 4;

interface Token {
  readonly authorization: string;
  readonly value: string;
  /** Monotonic ms; null: no `expires_in` (kept until a 401). */
  readonly expiresAt: number | null;
  readonly refreshAt: number | null;
  readonly fetchedWall: number;
  readonly expiresWall: number | null;
}

export interface OAuth2Deps extends SecretDeps {
  readonly now: () => number;
}

/** The token endpoint's answer as read (capped), kept for the error's `provider`. */
interface Answer {
  status: number;
  text: string;
}

/** What the journal shows of a token endpoint's error answer: its status, `error`, `error_description`, body. */
function providerNote(answer: Answer, withBody: boolean): ProviderNote {
  if (!withBody)
    return { status: answer.status, code: null, message: 'no usable access_token in the answer', body: null };
  const text = answer.text.slice(0, PROVIDER_BODY_BYTES);
  let body: unknown = text === '' ? null : text;
  try {
    body = JSON.parse(answer.text) as unknown;
  } catch {
    // Not JSON: the text.
  }
  const fields = body && typeof body === 'object' ? (body as Record<string, unknown>) : {};
  const field = (name: string) => (typeof fields[name] === 'string' ? (fields[name] as string).slice(0, 500) : null);
  return {
    status: answer.status,
    code: field('error'),
    message: field('error_description'),
    body: typeof body === 'string' || answer.text.length <= PROVIDER_BODY_BYTES ? body : text,
  };
}

export class OAuth2Credential implements Credential {
  readonly type = 'oauth2';
  readonly managed = ['authorization'];
  private token: Token | null = null;
  private fetching: Promise<Token> | null = null;
  private failure: { error: BreakwaterError; until: number } | null = null;
  private lastError: string | null = null;
  private readonly retired: string[] = [];
  /** What secrets() returns, until a token or the client secret changes. */
  private held: readonly string[] | null = null;
  private readonly server: oauth.AuthorizationServer;
  private readonly client: oauth.Client;
  readonly sources: readonly SecretSource[];

  constructor(
    private readonly config: OAuth2Config,
    private readonly clientSecret: SecretSource,
    /** The target's name: the metrics' `upstream`. */
    private readonly owner: string,
    private readonly deps: OAuth2Deps,
  ) {
    const url = new URL(config.tokenUrl);
    this.server = { issuer: url.origin, token_endpoint: config.tokenUrl };
    this.client = { client_id: config.clientId };
    this.sources = [clientSecret];
    clientSecret.onChange(() => (this.held = null));
  }

  apply(headers: OutgoingHttpHeaders, _request: unknown, signal: Signal): void | Promise<void> {
    const token = this.usable();
    if (token) {
      headers.authorization = token.authorization;
      return;
    }
    // The request's own deadline and its client still end its wait; the shared fetch goes on for the others.
    return untilAborted(this.fetchShared(), signal).then((fetched) => {
      headers.authorization = fetched.authorization;
    });
  }

  unauthorized(sent: string | undefined): void {
    // A 401 for a token already replaced fetches nothing: the request goes again with the current one.
    if (this.token && sent === this.token.authorization) {
      this.retire(this.token);
      this.token = null;
    }
  }

  secrets(): readonly string[] {
    // Tokens dropped or replaced stay secret: a 401 body may echo one after it was dropped. Built again only
    // when a token or the client secret changed: the leak guard asks on every request.
    return (this.held ??= guarded([
      this.clientSecret.value,
      ...(this.token ? [this.token.value] : []),
      ...this.retired,
    ]));
  }

  /** A token that is no longer in use, remembered (the last few) for the guard and the journal's masking. */
  private retire(token: Token | null): void {
    this.held = null;
    if (!token || this.retired.includes(token.value)) return;
    this.retired.unshift(token.value);
    this.retired.length = Math.min(this.retired.length, RETIRED_KEPT);
  }

  status(): CredentialStatus {
    const token = this.token;
    return {
      type: 'oauth2',
      source: 'token',
      since: new Date(token?.fetchedWall ?? this.clientSecret.since).toISOString(),
      expiresAt: token?.expiresWall == null ? null : new Date(token.expiresWall).toISOString(),
      error: this.lastError ?? this.clientSecret.error,
    };
  }

  /** The token to send now, renewing it in the background once it is due; null when a request must wait for one. */
  private usable(): Token | null {
    const token = this.token;
    if (!token) return null;
    const now = this.deps.now();
    if (token.expiresAt !== null && now >= token.expiresAt) return null;
    if (token.refreshAt !== null && now >= token.refreshAt && !this.fetching && !this.holding(now))
      this.fetchShared().catch(() => {
        // Counted and logged by the fetch; the current token serves until it expires.
      });
    return token;
  }

  private holding(now: number): boolean {
    return this.failure !== null && now < this.failure.until;
  }

  private fetchShared(): Promise<Token> {
    if (this.failure && this.holding(this.deps.now())) return Promise.reject(this.failure.error);
    this.fetching ??= this.fetch().finally(() => {
      this.fetching = null;
    });
    return this.fetching;
  }

  private async fetch(): Promise<Token> {
    const { config, deps } = this;
    const answer: Answer = { status: 0, text: '' };
    try {
      const response = await this.request(answer);
      const result = await oauth.processClientCredentialsResponse(this.server, this.client, response);
      const token = this.keep(result.access_token, result.expires_in);
      deps.metrics.credentialTokenFetches.inc({ upstream: this.owner, result: 'success' });
      this.lastError = null;
      this.failure = null;
      return token;
    } catch (cause) {
      const why =
        answer.status === 0
          ? `could not be reached (${config.timeout} ms timeout): ${(cause as Error).message}`
          : `answered ${answer.status}${answer.status < 300 ? ' without a usable access_token' : ''}`;
      const detail = `The token endpoint ${new URL(config.tokenUrl).origin} of '${this.owner}' ${why}; the request was not sent.`;
      const error = new BreakwaterError('CREDENTIALS_UNAVAILABLE', detail, {
        cause,
        // A 4xx from the token endpoint is a configuration matter: asking again will not help.
        retryable: answer.status >= 400 && answer.status < 500 ? false : undefined,
        // A 2xx the grant refused may hold a token: its body is never kept.
        provider: answer.status === 0 ? undefined : providerNote(answer, answer.status >= 300),
      });
      this.failure = { error, until: deps.now() + FAILED_FETCH_HOLD_MS };
      this.lastError = detail;
      deps.metrics.credentialTokenFetches.inc({ upstream: this.owner, result: 'failure' });
      deps.logger?.warn({ upstream: this.owner, status: answer.status || null }, 'oauth2 token fetch failed');
      throw error;
    }
  }

  /** One token request; the answer's status and (capped) text are kept in `answer`. */
  private async request(answer: Answer): Promise<Response> {
    const { config } = this;
    const parameters = new URLSearchParams();
    if (config.scope !== null) parameters.set('scope', config.scope);
    if (config.audience !== null) parameters.set('audience', config.audience);
    const auth =
      config.clientAuth === 'basic'
        ? oauth.ClientSecretBasic(this.clientSecret.value)
        : oauth.ClientSecretPost(this.clientSecret.value);
    return oauth.clientCredentialsGrantRequest(this.server, this.client, auth, parameters, {
      signal: AbortSignal.timeout(config.timeout),
      // An internal token service may be plain http, as upstreams may.
      [oauth.allowInsecureRequests]: true,
      [oauth.customFetch]: async (url, init) => {
        const response = await fetch(url, { ...init, redirect: 'manual' });
        answer.status = response.status;
        answer.text = await capped(response, ANSWER_CAP_BYTES);
        return new Response(answer.text, { status: response.status, headers: response.headers });
      },
    });
  }

  private keep(value: string, expiresIn: number | undefined): Token {
    // A token goes into a header: a value that cannot be sent is no token (every request would fail in undici).
    if (!HEADER_SAFE.test(value)) throw new Error('the access_token holds characters a header cannot carry');
    const now = this.deps.now();
    const wall = this.deps.wall();
    // A lifetime past a year is taken as a year (an absurd expires_in must not overflow a date in /status).
    const lifetime =
      typeof expiresIn === 'number' && Number.isFinite(expiresIn) && expiresIn > 0
        ? Math.min(expiresIn, MAX_LIFETIME_S) * 1000
        : null;
    const early = lifetime === null ? 0 : Math.min(this.config.refreshBefore, lifetime / 2);
    this.retire(this.token);
    this.token = {
      authorization: `Bearer ${value}`,
      value,
      expiresAt: lifetime === null ? null : now + lifetime,
      refreshAt: lifetime === null ? null : now + lifetime - early,
      fetchedWall: wall,
      expiresWall: lifetime === null ? null : wall + lifetime,
    };
    return this.token;
  }
}

/** A response's text, at most `cap` bytes read (the rest is cancelled). */
async function capped(response: Response, cap: number): Promise<string> {
  if (!response.body) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of response.body) {
    chunks.push(chunk);
    size += chunk.length;
    if (size >= cap) break;
  }
  return Buffer.concat(chunks).subarray(0, cap).toString('utf8');
}
