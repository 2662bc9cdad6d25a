/**
 * The quota a provider announces in its response headers, in one shape:
 * `{ limit, remaining, resetSeconds }` (SPEC §5 `quota`). Read by the error
 * body and by proactive pacing (on every response). Families, first found wins:
 * IETF `RateLimit`/`RateLimit-Policy` (structured fields, and the older
 * `RateLimit-Limit/-Remaining/-Reset`), `X-RateLimit-Limit/-Remaining/-Reset`
 * (the reset as epoch milliseconds, epoch seconds, or seconds from now),
 * OpenAI's `x-ratelimit-*-requests` (the reset as a duration like `6m0s`), and
 * Anthropic's `anthropic-ratelimit-requests-*` (the reset an RFC 3339 time).
 */
import type { IncomingHttpHeaders } from 'node:http';
import { parseDuration } from '../config/units.js';
import { firstHeader } from '../lib/headers.js';

export interface Quota {
  readonly limit?: number;
  readonly remaining?: number;
  readonly resetSeconds?: number;
}

export function number(value: string | undefined): number | undefined {
  if (value === undefined || !/^\s*-?\d+(\.\d+)?\s*$/.test(value)) return undefined;
  return Number(value);
}

const PARAMETERS = new Map(
  ['q', 'w', 'r', 't', 'limit', 'remaining', 'reset'].map((name) => [
    name,
    new RegExp(`(?:^|[;,\\s])${name}\\s*=\\s*(-?\\d+(?:\\.\\d+)?)`),
  ]),
);

/** A structured-field parameter (`r=50`) of the first item of a list; patterns compiled once, not per response. */
function parameter(
  field: string | undefined,
  name: 'q' | 'w' | 'r' | 't' | 'limit' | 'remaining' | 'reset',
): number | undefined {
  if (!field) return undefined;
  const match = PARAMETERS.get(name)!.exec(field);
  return match ? Number(match[1]) : undefined;
}

type ResetKind = 'epoch' | 'epoch-ms' | 'delta';

/**
 * A numeric reset as seconds from now; `auto`: epoch ms above 1e12, epoch s above 1e9, else already a delta.
 * Epochs are taken against `referenceMs` (the response's Date).
 */
function secondsUntil(reset: number, kind: ResetKind | 'auto', referenceMs: number): number {
  const as = kind !== 'auto' ? kind : reset > 1e12 ? 'epoch-ms' : reset > 1e9 ? 'epoch' : 'delta';
  if (as === 'epoch-ms') return Math.max(0, Math.ceil((reset - referenceMs) / 1000));
  if (as === 'epoch') return Math.max(0, Math.ceil(reset - referenceMs / 1000));
  return Math.max(0, reset);
}

/** The response's Date in ms, or `nowMs` when it has none. */
function referenceOf(dateHeader: string | undefined, nowMs: number): number {
  const date = dateHeader === undefined ? NaN : Date.parse(dateHeader);
  return Number.isNaN(date) ? nowMs : date;
}

/**
 * A reset value as seconds from now, its unit guessed (epoch ms, epoch s, delta); epochs against the response's
 * Date.
 */
export function resetToSeconds(reset: number, dateHeader: string | undefined, nowMs: number): number {
  return secondsUntil(reset, 'auto', referenceOf(dateHeader, nowMs));
}

/** A Go-style duration (`6m0s`, `1h2m3s`, `12ms`, `0.5s`) in seconds: the config's duration grammar. */
export function parseGoDuration(value: string | undefined): number | undefined {
  if (!value) return undefined;
  const parsed = parseDuration(value);
  return parsed.ok ? parsed.value / 1000 : undefined;
}

/** A quota when it names a limit or a remaining count (finite numbers only). */
export function quotaOf(
  limit: number | undefined,
  remaining: number | undefined,
  resetSeconds: number | undefined,
): Quota | undefined {
  const hasLimit = limit !== undefined && Number.isFinite(limit);
  const hasRemaining = remaining !== undefined && Number.isFinite(remaining);
  if (!hasLimit && !hasRemaining) return undefined;
  const quota: { limit?: number; remaining?: number; resetSeconds?: number } = {};
  if (hasLimit) quota.limit = limit;
  if (hasRemaining) quota.remaining = remaining;
  if (resetSeconds !== undefined && Number.isFinite(resetSeconds)) quota.resetSeconds = resetSeconds;
  return quota;
}

export type QuotaDialect = 'auto' | 'ietf' | 'x-ratelimit' | 'openai' | 'anthropic' | 'shopify' | 'salesforce';
export type ResetFormat = 'auto' | 'epoch' | 'epoch-ms' | 'delta' | 'duration' | 'rfc3339';

/** An RFC 3339 date-time (Anthropic's resets): a date, `T`, a time. */
const RFC3339 = /^\s*\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}/;

export interface QuotaOptions {
  readonly dialect?: QuotaDialect;
  readonly resetFormat?: ResetFormat;
}

/**
 * A reset header value in seconds from now, per `format` (auto: an RFC 3339 time when it looks like one, a
 * duration when it has letters, else guessed from its size). Times and epochs are read against the response's
 * Date (the provider's clock).
 */
export function readReset(
  headers: IncomingHttpHeaders,
  name: string,
  format: ResetFormat,
  nowMs: number,
): number | undefined {
  const value = firstHeader(headers, name);
  if (value === undefined) return undefined;
  if (format === 'rfc3339' || (format === 'auto' && RFC3339.test(value))) {
    const at = Date.parse(value);
    if (Number.isNaN(at)) return undefined;
    return Math.max(0, Math.ceil((at - referenceOf(firstHeader(headers, 'date'), nowMs)) / 1000));
  }
  if (format === 'duration' || (format === 'auto' && /[a-z]/i.test(value))) return parseGoDuration(value);
  const n = number(value);
  return n === undefined ? undefined : secondsUntil(n, format, referenceOf(firstHeader(headers, 'date'), nowMs));
}

/** Longer than any real `used/max` value (Salesforce's `api-usage=10018/100000` is 22). */
const MAX_USED_OF_MAX = 64;

/** `used/max` (Shopify's `X-Shopify-Shop-Api-Call-Limit: 32/40`, Salesforce's `api-usage=10018/100000`). */
function usedOfMax(value: string | undefined): Quota | undefined {
  // An upstream's header: an unanchored pattern over thousands of digits backtracks quadratically (SPEC §20.5);
  // real values are a few characters.
  if (!value || value.length > MAX_USED_OF_MAX) return undefined;
  const match = /(\d+)\s*\/\s*(\d+)/.exec(value);
  if (!match) return undefined;
  const used = Number(match[1]);
  const max = Number(match[2]);
  return { limit: max, remaining: Math.max(0, max - used) };
}

export type Reader = (headers: IncomingHttpHeaders, format: ResetFormat, nowMs: number) => Quota | undefined;

/** One reader per dialect, built once (not per response). */
export const READERS: Record<Exclude<QuotaDialect, 'auto'>, Reader> = {
  ietf(headers, format, nowMs) {
    const rateLimit = firstHeader(headers, 'ratelimit');
    const policy = firstHeader(headers, 'ratelimit-policy');
    if (rateLimit !== undefined || policy !== undefined) {
      return quotaOf(
        parameter(policy, 'q') ?? parameter(rateLimit, 'limit') ?? number(firstHeader(headers, 'ratelimit-limit')),
        parameter(rateLimit, 'r') ?? parameter(rateLimit, 'remaining'),
        parameter(rateLimit, 't') ?? parameter(rateLimit, 'reset'),
      );
    }
    if (headers['ratelimit-remaining'] === undefined) return undefined;
    return quotaOf(
      number(firstHeader(headers, 'ratelimit-limit')),
      number(firstHeader(headers, 'ratelimit-remaining')),
      readReset(headers, 'ratelimit-reset', format === 'auto' ? 'delta' : format, nowMs),
    );
  },
  'x-ratelimit'(headers, format, nowMs) {
    if (headers['x-ratelimit-remaining'] === undefined && headers['x-ratelimit-limit'] === undefined) return undefined;
    return quotaOf(
      number(firstHeader(headers, 'x-ratelimit-limit')),
      number(firstHeader(headers, 'x-ratelimit-remaining')),
      readReset(headers, 'x-ratelimit-reset', format, nowMs),
    );
  },
  openai(headers, format, nowMs) {
    if (headers['x-ratelimit-remaining-requests'] === undefined) return undefined;
    return quotaOf(
      number(firstHeader(headers, 'x-ratelimit-limit-requests')),
      number(firstHeader(headers, 'x-ratelimit-remaining-requests')),
      readReset(headers, 'x-ratelimit-reset-requests', format === 'auto' ? 'duration' : format, nowMs),
    );
  },
  // Anthropic's `anthropic-ratelimit-requests-*`, the reset an RFC 3339 time (the requests dimension).
  anthropic(headers, format, nowMs) {
    if (headers['anthropic-ratelimit-requests-remaining'] === undefined) return undefined;
    return quotaOf(
      number(firstHeader(headers, 'anthropic-ratelimit-requests-limit')),
      number(firstHeader(headers, 'anthropic-ratelimit-requests-remaining')),
      readReset(headers, 'anthropic-ratelimit-requests-reset', format === 'auto' ? 'rfc3339' : format, nowMs),
    );
  },
  shopify: (headers) => usedOfMax(firstHeader(headers, 'x-shopify-shop-api-call-limit')),
  salesforce: (headers) => usedOfMax(/api-usage=([^,;]+)/.exec(firstHeader(headers, 'sforce-limit-info') ?? '')?.[1]),
};
const AUTO_ORDER = [
  READERS.ietf,
  READERS['x-ratelimit'],
  READERS.openai,
  READERS.anthropic,
  READERS.shopify,
  READERS.salesforce,
];

/**
 * The quota announced by any response (2xx included), in the dialect asked
 * for or the first one found (the error body asks for any, with the reset
 * format guessed). Shopify's bucket leaks continuously and Salesforce's
 * limit is a rolling 24 hours: neither names a reset (pacing measures their
 * refill instead).
 */
export function readQuota(headers: IncomingHttpHeaders, nowMs: number, options: QuotaOptions = {}): Quota | undefined {
  const format = options.resetFormat ?? 'auto';
  if (options.dialect !== undefined && options.dialect !== 'auto')
    return READERS[options.dialect](headers, format, nowMs);
  for (const read of AUTO_ORDER) {
    const found = read(headers, format, nowMs);
    if (found) return found;
  }
  return undefined;
}
