import { CATALOG, type ErrorCode } from './catalog.js';

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

  constructor(
    code: ErrorCode,
    detail: string,
    options: {
      cause?: unknown;
      retryAfterSeconds?: number;
      headers?: Record<string, string>;
      retryable?: boolean;
    } = {},
  ) {
    super(detail, { cause: options.cause });
    this.name = 'BreakwaterError';
    this.code = code;
    this.detail = detail;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.headers = options.headers;
    this.retryable = options.retryable;
  }

  get status(): number {
    return CATALOG[this.code].status;
  }
}
