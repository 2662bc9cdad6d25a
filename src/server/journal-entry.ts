/**
 * Builds the error journal's entry (SPEC §12) for an exchange that ended
 * in an error, from what the exchange recorded: Breakwater's own problem,
 * or the upstream's error answer passed through (described as
 * `errors.normalize: all` would describe it), or a stale answer and the
 * failure it replaced. Runs only for failed requests.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { BreakwaterError } from '../errors/breakwater-error.js';
import { readErrorText } from '../errors/dialects/index.js';
import { cutText, decodeBody, PROVIDER_TEXT_BYTES } from '../errors/normalize.js';
import { describeCode } from '../errors/problem.js';
import { answerEntry, type RuleDecision } from '../errors/provider-rules.js';
import type { JournalAttempt, JournalEntry, JournalProvider } from '../observe/error-journal.js';
import type { ExchangeRecord } from '../policy/context.js';
import type { BufferedAnswer } from '../upstream/error-answer.js';
import type { BodyStart } from '../upstream/response.js';

/** Bytes of an error answer's body kept for the journal, as received (a compressed body decodes to more). */
export const JOURNAL_CAPTURE_BYTES = 16 * 1024;

/** An upstream error answer (status >= 400) the exchange passed on, normalized or replaced. */
export interface AnswerNote {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  /** The start of its body as received: read for a provider rule, or captured as it passed. */
  readonly start: BodyStart | BufferedAnswer | undefined;
  readonly decision: RuleDecision | undefined;
}

/** What the exchange knows when it closes. */
export interface Ending {
  readonly record: ExchangeRecord;
  readonly route: string;
  readonly upstream: string | null;
  /** The status sent (499: nothing was). */
  readonly status: number;
  /** The last error code answered or counted, null when none. */
  readonly code: string | null;
  /** Breakwater's own problem, when one was answered. */
  readonly failure: BreakwaterError | undefined;
  readonly answer: AnswerNote | undefined;
  readonly durationMs: number;
  readonly wall: number;
}

/** Request-id headers a provider's support desk asks for (SPEC §12). */
const ID_HEADERS: ReadonlySet<string> = new Set(['retry-after', 'request-id', 'x-request-id', 'x-amzn-requestid', 'x-github-request-id', 'cf-ray']);

/** The upstream's quota, Retry-After and request-id headers; nothing else of its answer. */
export function journalHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    if (ID_HEADERS.has(name) || name.startsWith('ratelimit') || name.startsWith('x-ratelimit-')) out[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

function bytesOf(start: BodyStart | BufferedAnswer): Buffer {
  return 'raw' in start ? start.raw : Buffer.concat(start.chunks, start.size);
}

/** What the provider said: its dialect's code and message, and its body (JSON when it fits, else text cut at 4 KiB). */
export function providerOf(answer: AnswerNote): JournalProvider {
  const contentType = String(answer.headers['content-type'] ?? '').toLowerCase();
  const raw = answer.start ? bytesOf(answer.start) : Buffer.alloc(0);
  const text = decodeBody(raw, answer.headers['content-encoding'] as string | undefined).replace(/\uFFFD+$/, '');
  if (text.trim() === '') return { status: answer.status, code: null, message: null, body: null };
  const { parsed, said } = readErrorText(text, contentType);
  const fits = Buffer.byteLength(text) <= PROVIDER_TEXT_BYTES;
  return { status: answer.status, code: said.code ?? null, message: said.message ?? null, body: parsed.kind === 'json' && fits ? parsed.value : cutText(text, PROVIDER_TEXT_BYTES) };
}

/**
 * Each attempt made. One that succeeded is only listed when an earlier one
 * failed: a first attempt whose answer came (a body that broke off later)
 * is added here. WebSocket and CONNECT attempts are not logged one by one.
 */
function attemptsOf(ending: Ending): readonly JournalAttempt[] {
  const log = ending.record.attemptLog ?? [];
  const answered = ending.answer !== undefined || ending.status < 400;
  if (log.length >= ending.record.attempts || ending.record.target === null || !answered) return log;
  return [{ target: ending.record.target, status: ending.answer?.status ?? ending.status, code: null, durationMs: null }, ...log];
}

/** Codes whose detail repeats what the client sent (its Host, TLS server name, Upgrade header, CONNECT target): journaled without it. */
const ECHOING_CODES: ReadonlySet<string> = new Set(['BAD_REQUEST', 'MISDIRECTED_REQUEST', 'NO_ROUTE', 'HOST_NOT_ALLOWED']);

/** The journal entry for an exchange that ended in an error (the Exchange leaves out a 499: the client left first); undefined for one that did not. */
export function journalEntry(ending: Ending): JournalEntry | undefined {
  const { record, failure, answer } = ending;
  const stale = record.staleFor;
  let code = stale ?? failure?.code ?? ending.code;
  if (code === null) {
    if (ending.status < 400) return undefined;
    code = answerEntry(ending.status, answer?.decision).code;
  }
  const entry = describeCode(code, answer?.status ?? ending.status, answer?.decision);
  return {
    time: new Date(ending.wall).toISOString(),
    requestId: record.requestId,
    method: record.method,
    path: record.path,
    route: ending.route,
    upstream: ending.upstream,
    target: record.target,
    status: ending.status,
    code,
    source: entry.source,
    responsibility: entry.responsibility,
    retryable: entry.retryable,
    hint: entry.hint,
    ...(failure && !stale && !ECHOING_CODES.has(failure.code) ? { detail: failure.detail } : {}),
    durationMs: Math.round(ending.durationMs * 1000) / 1000,
    attempts: attemptsOf(ending),
    provider: answer ? providerOf(answer) : null,
    headers: answer ? journalHeaders(answer.headers) : {},
    ...(stale ? { stale: true as const } : {}),
  };
}
