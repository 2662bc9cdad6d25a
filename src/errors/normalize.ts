/**
 * `errors.normalize: all` (SPEC §5): an upstream's 4xx/5xx rewritten into
 * the one problem body, with `source: "upstream"`, the status kept, a code
 * and hint from the status table, and a `provider` member holding what the
 * provider itself said (message and code pulled out of its dialect, and its
 * original body). `Retry-After` and the provider's quota headers are kept.
 *
 * The error body is read up to a cap and the rest discarded (the upstream
 * socket is then closed): a huge error page is never buffered whole.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import {
  brotliDecompressSync,
  constants,
  createBrotliDecompress,
  createGunzip,
  createInflate,
  gunzipSync,
  inflateSync,
} from 'node:zlib';
import type { Readable } from 'node:stream';
import { buildProblem, problemHeaders } from './problem.js';
import { readErrorText } from './dialects/index.js';
import { readQuota } from './quota.js';
import { answerEntry } from './provider-rules.js';
import type { RuleDecision } from './provider-table.js';
import { retryDelayOf } from '../lib/retry-after.js';

/** An upstream's answer as this module reads it (upstream/response.ts gives one). */
export interface UpstreamAnswer extends Readable {
  readonly statusCode: number;
  readonly headers: IncomingHttpHeaders;
  readonly complete: boolean;
}

/** Bytes of an error body read at most; the rest is discarded. */
export const ERROR_BODY_CAP_BYTES = 256 * 1024;
/** `provider.body` as text is cut at this many bytes (on a character boundary). */
export const PROVIDER_TEXT_BYTES = 4096;

/** Response headers of the provider that stay on the rewritten response. */
const KEPT_HEADERS = [
  'retry-after',
  'retry-after-ms',
  'x-ms-retry-after-ms',
  'allow',
  'www-authenticate',
  'ratelimit',
  'ratelimit-policy',
  'ratelimit-limit',
  'ratelimit-remaining',
  'ratelimit-reset',
];

export interface NormalizeContext {
  readonly instance: string;
  readonly route: string;
  readonly upstream: string;
  /** The target that answered (SPEC §8.1). */
  readonly target: string | null;
  readonly attempts: number;
  readonly requestId: string;
  readonly method: string;
  /** Epoch ms when the response came, to read the dates it names (Retry-After, quota reset). */
  readonly wall: number;
  /** The start of the body, already read (as received) for a provider rule; the rest, if any, is let go. */
  readonly preRead?: { readonly raw: Buffer; readonly complete: boolean };
  /** A provider rule's decision (SPEC §14): code, responsibility, retryable and hint follow it. */
  readonly decision?: RuleDecision;
}

export interface NormalizedResponse {
  readonly status: number;
  readonly headers: OutgoingHttpHeaders;
  readonly body: string;
  readonly code: string;
}

function decoded(response: UpstreamAnswer): Readable {
  const encoding = String(response.headers['content-encoding'] ?? '')
    .toLowerCase()
    .trim();
  if (encoding === 'gzip' || encoding === 'x-gzip') return response.pipe(createGunzip());
  if (encoding === 'deflate') return response.pipe(createInflate());
  if (encoding === 'br') return response.pipe(createBrotliDecompress());
  return response;
}

/** The text of a (possibly partial) encoded body; undecodable bytes give what could be decoded. */
export function decodeBody(raw: Buffer, encoding: string | undefined): string {
  // The decoded text is capped like the read (a small compressed body can expand to gigabytes).
  const flush = { finishFlush: constants.Z_SYNC_FLUSH, maxOutputLength: ERROR_BODY_CAP_BYTES };
  try {
    switch ((encoding ?? '').toLowerCase().trim()) {
      case 'gzip':
      case 'x-gzip':
        return gunzipSync(raw, flush).toString('utf8');
      case 'deflate':
        return inflateSync(raw, flush).toString('utf8');
      case 'br':
        return brotliDecompressSync(raw, {
          finishFlush: constants.BROTLI_OPERATION_FLUSH,
          maxOutputLength: ERROR_BODY_CAP_BYTES,
        }).toString('utf8');
      default:
        return raw.toString('utf8');
    }
  } catch {
    return '';
  }
}

/** Reads at most `cap` bytes of the (decoded) body, then lets go of the rest. */
async function readCapped(response: UpstreamAnswer, cap: number): Promise<Buffer> {
  const source = decoded(response);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of source) {
      const buffer = chunk as Buffer;
      chunks.push(buffer.subarray(0, cap - size));
      size += Math.min(buffer.length, cap - size);
      if (size >= cap) break;
    }
  } catch {
    // a broken or undecodable body: what was read is what there is
  }
  if (!response.complete) response.destroy();
  return Buffer.concat(chunks, size);
}

/** UTF-8 text of at most `bytes` bytes, never ending inside a character. */
export function cutText(text: string, bytes: number): string {
  if (Buffer.byteLength(text) <= bytes) return text;
  let out = '';
  let used = 0;
  for (const char of text) {
    const size = Buffer.byteLength(char);
    if (used + size > bytes) break;
    out += char;
    used += size;
  }
  return out;
}

/**
 * The text without the replacement characters at its end (what decoding a
 * body cut inside a character leaves). A loop from the end: the pattern
 * `\uFFFD+$` it replaces restarted at every U+FFFD of a run that did not
 * end the text, quadratic (9-14 s for a body of 100,000 undecodable bytes).
 */
export function trimReplacementTail(text: string): string {
  let end = text.length;
  while (end > 0 && text.charCodeAt(end - 1) === 0xfffd) end -= 1;
  return end === text.length ? text : text.slice(0, end);
}

/** Text of a buffer that may have been cut inside a character: no trailing replacement character. */
function decodeUtf8(buffer: Buffer): string {
  return trimReplacementTail(new TextDecoder('utf-8', { fatal: false }).decode(buffer));
}

/**
 * The problem as JSON; a provider body nested deeper than JSON.stringify can go (a RangeError) is given as its
 * text, cut.
 */
function serialize(problem: { provider: { body: unknown } }, text: string): string {
  try {
    return JSON.stringify(problem);
  } catch {
    return JSON.stringify({ ...problem, provider: { ...problem.provider, body: cutText(text, PROVIDER_TEXT_BYTES) } });
  }
}

export async function normalizeUpstreamError(
  response: UpstreamAnswer,
  context: NormalizeContext,
): Promise<NormalizedResponse> {
  const status = response.statusCode ?? 502;
  const entry = answerEntry(status, context.decision);
  const contentType = String(response.headers['content-type'] ?? '').toLowerCase();
  const { preRead } = context;
  if (preRead && !preRead.complete) response.destroy();
  const raw =
    context.method === 'HEAD'
      ? Buffer.alloc(0)
      : preRead
        ? Buffer.from(decodeBody(preRead.raw, response.headers['content-encoding'] as string | undefined))
        : await readCapped(response, ERROR_BODY_CAP_BYTES);
  if (context.method === 'HEAD') response.resume();
  const text = decodeUtf8(raw);
  const { parsed, said: provider } = readErrorText(text, contentType);
  const retryAfterMs = context.decision?.delayMs ?? retryDelayOf(response.headers, context.wall);
  const quota = readQuota(response.headers, context.wall);
  const said = provider.message ? `: ${provider.message}` : '';
  const problem = {
    ...buildProblem(
      { ...entry, status },
      `Upstream '${context.upstream}' answered ${status} on route '${context.route}'${said}`,
      'upstream',
      context,
      retryAfterMs !== undefined ? Math.ceil(retryAfterMs / 1000) : undefined,
    ),
    provider: {
      status,
      message: provider.message ?? null,
      code: provider.code ?? null,
      body: parsed.kind === 'json' ? parsed.value : text === '' ? null : cutText(text, PROVIDER_TEXT_BYTES),
    },
    ...(quota ? { quota } : {}),
  };
  const body = context.method === 'HEAD' ? '' : serialize(problem, text);
  const headers: OutgoingHttpHeaders = {};
  for (const name of KEPT_HEADERS) if (response.headers[name] !== undefined) headers[name] = response.headers[name];
  for (const [name, value] of Object.entries(response.headers))
    if (name.startsWith('x-ratelimit-')) headers[name] = value;
  if (context.target !== null) headers['x-breakwater-target'] = context.target;
  Object.assign(
    headers,
    problemHeaders(
      entry.code,
      context.requestId,
      Buffer.byteLength(context.method === 'HEAD' ? JSON.stringify(problem) : body),
    ),
    {
      'x-breakwater-attempts': String(context.attempts),
    },
  );
  return { status, headers, body, code: entry.code };
}
