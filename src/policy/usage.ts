/**
 * The tokens an answer says it used (SPEC §15 `rateLimit.settle: usage`),
 * read as its body passes to the client, never holding it back: a JSON
 * body's `usage` (its first USAGE_BYTES only), or the last event of a
 * `text/event-stream` that carries one (each event read within
 * USAGE_BYTES). `usage.total_tokens`, else `input_tokens +
 * output_tokens` (Anthropic's stream names its input in its first event
 * and its output in its last: both are kept).
 */
import type { UpstreamResponse } from '../upstream/response.js';
import { StringDecoder } from 'node:string_decoder';
import { firstHeader } from '../lib/headers.js';

/** Bytes of a JSON body, or of one event, read for its usage at most. */
export const USAGE_BYTES = 256 * 1024;

export interface UsageReader {
  /** The usage read, once the answer has ended; undefined when it named none (or did not end). */
  total(): number | undefined;
}

const NONE: UsageReader = { total: () => undefined };

/** Token counts seen so far. */
interface Seen {
  total?: number;
  input?: number;
  output?: number;
}

/** Usage past this is an upstream's nonsense: read as this (a bucket charged it stays finite). */
export const MAX_USAGE = 2 ** 31;

const count = (value: unknown): number | undefined =>
  typeof value === 'number' && Number.isFinite(value) && value >= 0 ? Math.min(value, MAX_USAGE) : undefined;

/** A parsed value's usage object (its own `usage`, or its `message.usage`) read into `seen`. */
function noteUsage(value: unknown, seen: Seen): void {
  if (value === null || typeof value !== 'object') return;
  const record = value as Record<string, unknown>;
  const message = Object.hasOwn(record, 'message') ? (record.message as Record<string, unknown> | null) : null;
  const usage = Object.hasOwn(record, 'usage')
    ? record.usage
    : message && typeof message === 'object' && Object.hasOwn(message, 'usage')
      ? message.usage
      : undefined;
  if (usage === null || typeof usage !== 'object') return;
  const fields = usage as Record<string, unknown>;
  const total = count(fields.total_tokens);
  const input = count(fields.input_tokens) ?? count(fields.prompt_tokens);
  const output = count(fields.output_tokens) ?? count(fields.completion_tokens);
  if (total !== undefined) seen.total = total;
  if (input !== undefined) seen.input = input;
  if (output !== undefined) seen.output = output;
}

function totalOf(seen: Seen): number | undefined {
  if (seen.total !== undefined) return Math.ceil(seen.total);
  if (seen.input === undefined && seen.output === undefined) return undefined;
  return Math.min(MAX_USAGE, Math.ceil((seen.input ?? 0) + (seen.output ?? 0)));
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Watches `response`'s body for its usage. */
export function readUsage(response: UpstreamResponse): UsageReader {
  const type = (firstHeader(response.headers, 'content-type') ?? '').toLowerCase();
  // A compressed body is not decoded here: its usage stays unread.
  const encoding = firstHeader(response.headers, 'content-encoding');
  if (encoding !== undefined && encoding !== 'identity') return NONE;
  if (type.startsWith('text/event-stream')) return eventUsage(response);
  if (!type.includes('json')) return NONE;
  const chunks: Buffer[] = [];
  let size = 0;
  response.watch((chunk) => {
    if (size > USAGE_BYTES) return;
    size += chunk.length;
    if (size <= USAGE_BYTES) chunks.push(chunk);
    else chunks.length = 0;
  });
  return {
    total() {
      if (!response.complete || size > USAGE_BYTES) return undefined;
      const seen: Seen = {};
      noteUsage(parse(Buffer.concat(chunks, size).toString('utf8')), seen);
      return totalOf(seen);
    },
  };
}

/** Server-sent events: each event's `data` lines, parsed when the event ends if it mentions usage. */
function eventUsage(response: UpstreamResponse): UsageReader {
  const seen: Seen = {};
  /** The current event's data, and whether it outgrew USAGE_BYTES (then skipped). */
  let data = '';
  let skipped = false;
  const endEvent = () => {
    if (!skipped && data.includes('usage')) noteUsage(parse(data), seen);
    data = '';
    skipped = false;
  };
  const takeLine = (text: string) => {
    const ended = text.endsWith('\r') ? text.slice(0, -1) : text;
    if (ended === '') return endEvent();
    if (skipped || !ended.startsWith('data:')) return;
    const value = ended.slice(ended[5] === ' ' ? 6 : 5);
    data = data === '' ? value : `${data}\n${value}`;
    if (data.length > USAGE_BYTES) {
      skipped = true;
      data = '';
    }
  };
  const decoder = new StringDecoder('utf8');
  /** The unfinished line's pieces: a long line trickling in small chunks is joined once, not rescanned. */
  let pieces: string[] = [];
  let pending = 0;
  response.watch((chunk) => {
    const text = decoder.write(chunk);
    let start = 0;
    for (let newline = text.indexOf('\n'); newline !== -1; newline = text.indexOf('\n', start)) {
      const piece = text.slice(start, newline);
      takeLine(pieces.length === 0 ? piece : pieces.join('') + piece);
      pieces = [];
      pending = 0;
      start = newline + 1;
    }
    if (start < text.length) {
      pending += text.length - start;
      // A line longer than an event may be is dropped with its event.
      if (pending > USAGE_BYTES) {
        skipped = true;
        pieces = [];
      } else pieces.push(text.slice(start));
    }
  });
  return {
    total() {
      // A stream cut short names no usage it can be trusted with (a client could stop before the last event).
      if (!response.complete) return undefined;
      if (pieces.length > 0) takeLine(pieces.join(''));
      endEvent();
      return totalOf(seen);
    },
  };
}
