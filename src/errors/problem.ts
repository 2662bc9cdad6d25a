/**
 * Rendering of Breakwater's own errors (SPEC §5): one RFC 9457
 * problem+json body, or plain text when `errors.normalize: off`.
 */
import type { BreakwaterError } from './breakwater-error.js';
import { CATALOG, typeUrn } from './catalog.js';

export interface ProblemContext {
  /** The request path as the client sent it (query dropped). */
  readonly instance: string;
  readonly route: string | null;
  readonly upstream: string | null;
  readonly attempts: number;
  readonly requestId: string;
}

export interface RenderedProblem {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

export interface ProblemBody {
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly detail: string;
  readonly instance: string;
  readonly code: string;
  readonly source: 'proxy';
  readonly responsibility: string;
  readonly retryable: boolean;
  readonly retryAfterSeconds?: number;
  readonly hint: string;
  readonly route: string | null;
  readonly upstream: string | null;
  readonly attempts: number;
  readonly requestId: string;
}

export function problemBody(error: BreakwaterError, context: ProblemContext): ProblemBody {
  const entry = CATALOG[error.code];
  return {
    type: typeUrn(error.code),
    title: entry.title,
    status: entry.status,
    detail: error.detail,
    instance: context.instance,
    code: error.code,
    source: 'proxy',
    responsibility: entry.responsibility,
    retryable: entry.retryable,
    ...(error.retryAfterSeconds !== undefined ? { retryAfterSeconds: error.retryAfterSeconds } : {}),
    hint: entry.hint,
    route: context.route,
    upstream: context.upstream,
    attempts: context.attempts,
    requestId: context.requestId,
  };
}

/** The status, headers and body for an error; `plain` for `errors.normalize: off`. */
export function renderProblem(error: BreakwaterError, context: ProblemContext, plain = false): RenderedProblem {
  const entry = CATALOG[error.code];
  const body = plain ? `${entry.title}: ${error.detail}\n` : JSON.stringify(problemBody(error, context));
  const headers: Record<string, string> = {
    'content-type': plain ? 'text/plain; charset=utf-8' : 'application/problem+json',
    'content-length': String(Buffer.byteLength(body)),
    'cache-control': 'no-store',
    'x-breakwater-error': error.code,
    'x-request-id': context.requestId,
  };
  if (error.retryAfterSeconds !== undefined) headers['retry-after'] = String(Math.max(0, Math.ceil(error.retryAfterSeconds)));
  if (error.headers) Object.assign(headers, error.headers);
  return { status: entry.status, headers, body };
}
