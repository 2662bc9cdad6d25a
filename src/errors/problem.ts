/**
 * Rendering of Breakwater's own errors (SPEC §5): one RFC 9457
 * problem+json body, or plain text when `errors.normalize: off`.
 */
import type { BreakwaterError } from './breakwater-error.js';
import { CATALOG, typeUrn } from './catalog.js';
import { describeDecision } from './provider-rules.js';
import type { RuleDecision } from './provider-table.js';
import { entryForCode } from './upstream-catalog.js';

export interface ProblemContext {
  /** The request path as the client sent it (query dropped). */
  readonly instance: string;
  readonly route: string | null;
  readonly upstream: string | null;
  /** The target of the last attempt (SPEC §8.1), null before any. */
  readonly target: string | null;
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
  readonly source: 'proxy' | 'upstream';
  readonly responsibility: string;
  readonly retryable: boolean;
  readonly retryAfterSeconds?: number;
  readonly hint: string;
  readonly route: string | null;
  readonly upstream: string | null;
  readonly target: string | null;
  readonly attempts: number;
  readonly requestId: string;
}

/** What a body says about its code: Breakwater's catalogue entry or a normalized upstream status's. */
export interface ProblemEntry {
  readonly code: string;
  readonly title: string;
  readonly status: number;
  readonly responsibility: string;
  readonly retryable: boolean;
  readonly hint: string;
}

/** The SPEC §5 fields, in one order, for both sources (Breakwater's own errors and normalized upstream ones). */
export function buildProblem(
  entry: ProblemEntry,
  detail: string,
  source: ProblemBody['source'],
  context: ProblemContext,
  retryAfterSeconds?: number,
): ProblemBody {
  return {
    type: typeUrn(entry.code),
    title: entry.title,
    status: entry.status,
    detail,
    instance: context.instance,
    code: entry.code,
    source,
    responsibility: entry.responsibility,
    retryable: entry.retryable,
    ...(retryAfterSeconds !== undefined ? { retryAfterSeconds } : {}),
    hint: entry.hint,
    route: context.route,
    upstream: context.upstream,
    target: context.target,
    attempts: context.attempts,
    requestId: context.requestId,
  };
}

/**
 * What a code says (SPEC §5), whoever answered it: Breakwater's own
 * catalogue (`source: proxy`), else a provider rule's decision or the
 * upstream statuses' entry that carries the code (`source: upstream`).
 */
export function describeCode(
  code: string,
  status: number,
  decision?: RuleDecision,
): ProblemEntry & { readonly source: ProblemBody['source'] } {
  const own = (CATALOG as Record<string, Omit<ProblemEntry, 'code'> | undefined>)[code];
  if (own) return { ...own, code, source: 'proxy' };
  return {
    ...(decision ? describeDecision(status, decision) : entryForCode(code, status)),
    code,
    status,
    source: 'upstream',
  };
}

/** The headers every problem response carries. */
export function problemHeaders(
  code: string,
  requestId: string,
  bodyBytes: number,
  contentType = 'application/problem+json',
): Record<string, string> {
  return {
    'content-type': contentType,
    'content-length': String(bodyBytes),
    'cache-control': 'no-store',
    'x-breakwater-error': code,
    'x-request-id': requestId,
  };
}

export function problemBody(error: BreakwaterError, context: ProblemContext): ProblemBody {
  const entry = CATALOG[error.code];
  return buildProblem(
    { code: error.code, ...entry, retryable: error.retryable ?? entry.retryable },
    error.detail,
    'proxy',
    context,
    error.retryAfterSeconds,
  );
}

/** The status, headers and body for an error; `plain` for `errors.normalize: off`. */
export function renderProblem(error: BreakwaterError, context: ProblemContext, plain = false): RenderedProblem {
  const entry = CATALOG[error.code];
  const body = plain ? `${entry.title}: ${error.detail}\n` : JSON.stringify(problemBody(error, context));
  const headers = problemHeaders(
    error.code,
    context.requestId,
    Buffer.byteLength(body),
    plain ? 'text/plain; charset=utf-8' : undefined,
  );
  if (error.retryAfterSeconds !== undefined)
    headers['retry-after'] = String(Math.max(0, Math.ceil(error.retryAfterSeconds)));
  if (error.headers) Object.assign(headers, error.headers);
  return { status: entry.status, headers, body };
}
