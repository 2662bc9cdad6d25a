import { CATALOG, type ErrorCode } from './catalog.js';

/** What another service said, for the error journal's `provider` (an OAuth2 token endpoint's answer, SPEC §18). */
export interface ProviderNote {
  readonly status: number;
  readonly code: string | null;
  readonly message: string | null;
  readonly body: unknown;
}

/**
 * The one error class of the project (STYLE: undici's model): a stable
 * `code` from the catalogue that callers match on, a `detail` for the
 * person reading the body, an optional delay, and the `cause` kept.
 */
export class BreakwaterError extends Error {
  readonly code: ErrorCode;
  readonly detail: string;
  readonly retryAfterSeconds: number | undefined;
  /** Extra response headers that describe the error (RateLimit fields of a 429). */
  readonly headers: Readonly<Record<string, string>> | undefined;
  /** Overrides the catalogue's `retryable` (a request that can never fit its quota, SPEC §15). */
  readonly retryable: boolean | undefined;
  /** The answer of the service that failed us, when it was not the upstream (a token endpoint). */
  readonly provider: ProviderNote | undefined;

  constructor(
    code: ErrorCode,
    detail: string,
    options: {
      cause?: unknown;
      retryAfterSeconds?: number;
      headers?: Record<string, string>;
      retryable?: boolean;
      provider?: ProviderNote;
    } = {},
  ) {
    super(detail, { cause: options.cause });
    this.name = 'BreakwaterError';
    this.code = code;
    this.detail = detail;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.headers = options.headers;
    this.retryable = options.retryable;
    this.provider = options.provider;
  }

  get status(): number {
    return CATALOG[this.code].status;
  }
}
