/**
 * What an upstream's 4xx/5xx means, by status (SPEC §5 `errors.normalize:
 * all`), as data: the code, whose side the problem is on, whether sending
 * the same request again can help, and the first step to take. Hints follow
 * what API troubleshooting guides agree on, one per status.
 * `test/contract/catalog-docs.test.ts` keeps this table and docs/errors.md
 * equal in both directions.
 */
import type { Responsibility } from './catalog.js';

export interface UpstreamStatusEntry {
  readonly code: string;
  readonly title: string;
  readonly responsibility: Responsibility;
  readonly retryable: boolean;
  readonly hint: string;
}

export const UPSTREAM_STATUSES: Readonly<Record<number, UpstreamStatusEntry>> = {
  400: {
    code: 'BAD_REQUEST',
    title: 'Bad request',
    responsibility: 'client',
    retryable: false,
    hint: "Check the payload against the API's docs: JSON syntax, required fields, field types and the Content-Type header.",
  },
  401: {
    code: 'UNAUTHORIZED',
    title: 'Unauthorized',
    responsibility: 'client',
    retryable: false,
    hint: "Credentials are missing, invalid or expired: check the Authorization header's format and that the key belongs to this environment; refresh the token.",
  },
  403: {
    code: 'FORBIDDEN',
    title: 'Forbidden',
    responsibility: 'client',
    retryable: false,
    hint: 'Authenticated but not permitted: check the scopes, role, plan and IP allow-list of the credentials; retrying will not help.',
  },
  404: {
    code: 'NOT_FOUND',
    title: 'Not found',
    responsibility: 'client',
    retryable: false,
    hint: 'Verify the path, the API version prefix and the resource id.',
  },
  405: {
    code: 'METHOD_NOT_ALLOWED',
    title: 'Method not allowed',
    responsibility: 'client',
    retryable: false,
    hint: "Use one of the methods the response's Allow header lists.",
  },
  409: {
    code: 'CONFLICT',
    title: 'Conflict',
    responsibility: 'client',
    retryable: false,
    hint: 'Resolve the conflict first (the resource exists already, or changed concurrently), then send again.',
  },
  422: {
    code: 'UNPROCESSABLE',
    title: 'Unprocessable request',
    responsibility: 'client',
    retryable: false,
    hint: "Read the provider's field-level validation errors and fix the data.",
  },
  429: {
    code: 'UPSTREAM_RATE_LIMITED',
    title: 'Rate limited by the upstream',
    responsibility: 'client',
    retryable: true,
    hint: 'Slow down: wait for Retry-After, back off, and check the quota the provider announced.',
  },
  500: {
    code: 'UPSTREAM_INTERNAL_ERROR',
    title: 'Upstream internal error',
    responsibility: 'upstream',
    retryable: true,
    hint: 'A transient provider fault: retry with backoff; if one input always fails, report it to the provider.',
  },
  501: {
    code: 'NOT_IMPLEMENTED',
    title: 'Not implemented',
    responsibility: 'upstream',
    retryable: false,
    hint: 'This endpoint does not support the method or feature; check the API reference for the supported calls.',
  },
  502: {
    code: 'UPSTREAM_BAD_GATEWAY',
    title: 'Upstream bad gateway',
    responsibility: 'upstream',
    retryable: true,
    hint: "The provider's gateway failed (often during a deploy): retry, and check its status page.",
  },
  503: {
    code: 'UPSTREAM_UNAVAILABLE',
    title: 'Upstream unavailable',
    responsibility: 'upstream',
    retryable: true,
    hint: 'The provider is overloaded or in maintenance: honour Retry-After before trying again.',
  },
  504: {
    code: 'UPSTREAM_GATEWAY_TIMEOUT',
    title: 'Upstream gateway timeout',
    responsibility: 'upstream',
    retryable: true,
    hint: 'The provider was too slow to answer: retry; send smaller requests or use its asynchronous pattern.',
  },
};

export const OTHER_CLIENT_ERROR: UpstreamStatusEntry = {
  code: 'UPSTREAM_CLIENT_ERROR',
  title: 'Upstream client error',
  responsibility: 'client',
  retryable: false,
  hint: "Read the provider's message and its docs for this status code before changing the request.",
};

export const OTHER_SERVER_ERROR: UpstreamStatusEntry = {
  code: 'UPSTREAM_SERVER_ERROR',
  title: 'Upstream server error',
  responsibility: 'upstream',
  retryable: true,
  hint: 'Retry with backoff and check the provider’s status page.',
};

export function upstreamStatusEntry(status: number): UpstreamStatusEntry {
  return UPSTREAM_STATUSES[status] ?? (status >= 500 ? OTHER_SERVER_ERROR : OTHER_CLIENT_ERROR);
}

/**
 * Codes only a provider rule gives (SPEC §14): the status stays the
 * provider's. Kept equal to docs/errors.md's "Provider rules" codes table.
 */
export const RULE_CODES: Readonly<Record<string, UpstreamStatusEntry>> = {
  UPSTREAM_QUOTA_EXHAUSTED: {
    code: 'UPSTREAM_QUOTA_EXHAUSTED',
    title: 'Upstream quota exhausted',
    responsibility: 'client',
    retryable: false,
    hint: 'The account is out of quota or credit: check its plan and billing with the provider. Retrying will not help.',
  },
};

/** The entry of a code a rule names: a rule-only code, or the status entry that carries it. */
export function entryForCode(code: string, status: number): UpstreamStatusEntry {
  const fromStatus = Object.values(UPSTREAM_STATUSES).find((entry) => entry.code === code);
  return (
    RULE_CODES[code] ??
    fromStatus ??
    (code === OTHER_CLIENT_ERROR.code
      ? OTHER_CLIENT_ERROR
      : code === OTHER_SERVER_ERROR.code
        ? OTHER_SERVER_ERROR
        : upstreamStatusEntry(status))
  );
}
