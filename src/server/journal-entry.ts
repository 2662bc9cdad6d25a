/**
 * Builds the error journal's entry (SPEC §12) for an exchange that ended
 * in an error, from what the exchange recorded: Breakwater's own problem,
 * or the upstream's error answer passed through (described as
 * `errors.normalize: all` would describe it), or a stale answer and the
 * failure it replaced. Runs only for failed requests.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { BreakwaterError } from '../errors/breakwater-error.js';
import { readErrorText, type ParsedBody } from '../errors/dialects/index.js';
import { cutText, decodeBody, PROVIDER_TEXT_BYTES, trimReplacementTail } from '../errors/normalize.js';
import { describeCode } from '../errors/problem.js';
import { answerEntry } from '../errors/provider-rules.js';
import type { RuleDecision } from '../errors/provider-table.js';
import type { JournalAttempt, JournalEntry, JournalProvider } from '../observe/error-journal.js';
import type { ExchangeRecord } from './exchange-record.js';
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

/** Retry-After headers, and request-id headers a provider's support desk asks for (SPEC §12). */
const ID_HEADERS: ReadonlySet<string> = new Set([
  'retry-after',
  'retry-after-ms',
  'x-ms-retry-after-ms',
  'request-id',
  'x-request-id',
  'x-amzn-requestid',
  'x-github-request-id',
  'cf-ray',
]);
/** The rate-limit header families (SPEC §12). */
const QUOTA_PREFIXES = ['ratelimit', 'x-ratelimit-', 'anthropic-ratelimit-'];

/**
 * The bounds of one entry (SPEC §20.7: at most about 8 KiB whatever the
 * provider sent): the provider's message, code and header values in
 * characters (UTF-16 units), its body in bytes of text (`PROVIDER_TEXT_BYTES`).
 */
export const JOURNAL_BOUNDS = { messageChars: 1024, codeChars: 128, headerValueChars: 256 } as const;
/**
 * Characters of all the kept headers' names and values together: room for a
 * provider's usual set (Anthropic sends a dozen rate-limit headers of some
 * 60 characters each), not for a flood of them (16 KiB of response headers
 * hold 60 values of 256). A header past it is left out. Not in SPEC §20.7,
 * which bounds each value: without it the headers alone could take 15 KiB.
 */
const HEADERS_CHARS = 2048;

const isHigh = (code: number) => code >= 0xd800 && code <= 0xdbff;
const isLow = (code: number) => code >= 0xdc00 && code <= 0xdfff;

/**
 * Bytes of the UTF-16 unit at `at` once written in a JSON string as UTF-8 (JSON.stringify's escapes; a surrogate
 * pair 2 + 2).
 */
function jsonCost(text: string, at: number): number {
  const code = text.charCodeAt(at);
  if (code === 0x22 || code === 0x5c) return 2;
  if (code < 0x20) return code === 0x08 || code === 0x09 || code === 0x0a || code === 0x0c || code === 0x0d ? 2 : 6;
  if (code < 0x80) return 1;
  if (code < 0x800) return 2;
  if (isHigh(code)) return isLow(text.charCodeAt(at + 1)) ? 2 : 6;
  if (isLow(code)) return isHigh(text.charCodeAt(at - 1)) ? 2 : 6;
  return 3;
}

/**
 * At most `units` UTF-16 units of `text`, never half a surrogate pair, and
 * at most `jsonBytes` bytes once written as a JSON string; a cut text ends
 * in `mark`, counted in both. Only escapes make the second bound bite first:
 * any other character is at most 3 bytes a unit, a control character 6
 * (`\u0001`). Looks at `units` units at most, whatever the text's length.
 */
export function cutString(text: string, units: number, mark = '', jsonBytes = 3 * units): string {
  const markBytes = Buffer.byteLength(mark);
  let bytes = 0;
  // The last place the text can be cut and still take the mark.
  let cut = 0;
  for (let at = 0; at < text.length; at++) {
    if (
      at + mark.length <= units &&
      bytes + markBytes <= jsonBytes &&
      !(isHigh(text.charCodeAt(at - 1)) && isLow(text.charCodeAt(at)))
    )
      cut = at;
    bytes += jsonCost(text, at);
    if (at + 1 > units || bytes > jsonBytes) return text.slice(0, cut) + mark;
  }
  return text;
}

/**
 * The upstream's quota, Retry-After and request-id headers; nothing else of its answer. Each value cut at 256
 * characters, all of them within 2,048.
 */
export function journalHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  let room = HEADERS_CHARS;
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    if (!ID_HEADERS.has(name) && !QUOTA_PREFIXES.some((prefix) => name.startsWith(prefix))) continue;
    const kept = cutString(Array.isArray(value) ? value.join(', ') : value, JOURNAL_BOUNDS.headerValueChars);
    if (name.length + kept.length > room) continue;
    room -= name.length + kept.length;
    out[name] = kept;
  }
  return out;
}

function bytesOf(start: BodyStart | BufferedAnswer): Buffer {
  return 'raw' in start ? start.raw : Buffer.concat(start.chunks, start.size);
}

/**
 * Its body for the journal: the parsed JSON when it is at most 4 KiB as text and as JSON again, else the text
 * cut at 4 KiB.
 */
function journalBody(parsed: ParsedBody, text: string): unknown {
  if (parsed.kind === 'json' && Buffer.byteLength(text) <= PROVIDER_TEXT_BYTES) {
    // Serialized again it can be longer (`1e20` is 21 characters) or nested past what JSON.stringify can go.
    const again = safeStringify(parsed.value);
    if (again !== undefined && Buffer.byteLength(again) <= PROVIDER_TEXT_BYTES) return parsed.value;
  }
  // 4 KiB of text is at most 8 KiB as JSON but for control characters (`\u0001`, six each): those are cut there.
  return cutString(cutText(text, PROVIDER_TEXT_BYTES), PROVIDER_TEXT_BYTES, '', 2 * PROVIDER_TEXT_BYTES);
}

function safeStringify(value: unknown): string | undefined {
  try {
    return JSON.stringify(value);
  } catch {
    return undefined;
  }
}

/**
 * What the provider said: its dialect's code and message, and its body (JSON when it fits, else text cut at 4
 * KiB), each bounded (SPEC §20.7).
 */
export function providerOf(answer: AnswerNote): JournalProvider {
  const contentType = String(answer.headers['content-type'] ?? '').toLowerCase();
  const raw = answer.start ? bytesOf(answer.start) : Buffer.alloc(0);
  const text = trimReplacementTail(decodeBody(raw, answer.headers['content-encoding'] as string | undefined));
  if (text.trim() === '') return { status: answer.status, code: null, message: null, body: null };
  const { parsed, said } = readErrorText(text, contentType);
  return {
    status: answer.status,
    code: said.code === undefined ? null : cutString(said.code, JOURNAL_BOUNDS.codeChars),
    message: said.message === undefined ? null : cutString(said.message, JOURNAL_BOUNDS.messageChars, '…'),
    body: journalBody(parsed, text),
  };
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
  return [
    { target: ending.record.target, status: ending.answer?.status ?? ending.status, code: null, durationMs: null },
    ...log,
  ];
}

/**
 * Codes whose detail repeats what the client sent (its Host, TLS server name, Upgrade header, CONNECT target):
 * journaled without it.
 */
const ECHOING_CODES: ReadonlySet<string> = new Set([
  'BAD_REQUEST',
  'MISDIRECTED_REQUEST',
  'NO_ROUTE',
  'HOST_NOT_ALLOWED',
  'CROSS_ORIGIN_REFUSED',
]);

/**
 * The journal entry for an exchange that ended in an error (the Exchange leaves out a 499: the client left
 * first); undefined for one that did not.
 */
export function journalEntry(ending: Ending): JournalEntry | undefined {
  const { record, failure, answer } = ending;
  const stale = record.staleFor;
  let code = stale ?? failure?.code ?? ending.code;
  if (code === null) {
    if (ending.status < 400) return undefined;
    code = answerEntry(ending.status, answer?.decision).code;
  }
  // The upstream's own answer is described as `normalize: all` would, even when its code is one Breakwater also
  // gives (a 400's BAD_REQUEST).
  const told = answer && !failure && !stale ? answerEntry(answer.status, answer.decision) : undefined;
  const entry =
    told?.code === code
      ? { ...told, source: 'upstream' as const }
      : describeCode(code, answer?.status ?? ending.status, answer?.decision);
  return {
    time: new Date(ending.wall).toISOString(),
    requestId: record.requestId,
    method: record.method,
    path: record.shownPath ?? record.path,
    route: ending.route,
    upstream: ending.upstream,
    target: record.target,
    ...(record.caller !== undefined && { caller: record.caller }),
    status: ending.status,
    code,
    source: entry.source,
    responsibility: entry.responsibility,
    retryable: (!stale && failure?.code === code ? failure.retryable : undefined) ?? entry.retryable,
    hint: entry.hint,
    ...(failure && !stale && !ECHOING_CODES.has(failure.code) ? { detail: failure.detail } : {}),
    durationMs: Math.round(ending.durationMs * 1000) / 1000,
    attempts: attemptsOf(ending),
    provider: answer ? providerOf(answer) : (failure?.provider ?? null),
    headers: answer ? journalHeaders(answer.headers) : {},
    ...(stale ? { stale: true as const } : {}),
  };
}
