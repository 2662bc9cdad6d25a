/**
 * The quota a provider announces in its response headers, in one shape:
 * `{ limit, remaining, resetSeconds }` (SPEC §5 `quota`). Read by the error
 * body, and by proactive pacing later. Families, first found wins:
 * IETF `RateLimit`/`RateLimit-Policy` (structured fields, and the older
 * `RateLimit-Limit/-Remaining/-Reset`), `X-RateLimit-Limit/-Remaining/-Reset`
 * (the reset as epoch milliseconds, epoch seconds, or seconds from now), and
 * OpenAI's `x-ratelimit-*-requests` (the reset as a duration like `6m0s`).
 */
import type { IncomingHttpHeaders } from 'node:http';

export interface Quota {
  readonly limit?: number;
  readonly remaining?: number;
  readonly resetSeconds?: number;
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function number(value: string | undefined): number | undefined {
  if (value === undefined || !/^\s*-?\d+(\.\d+)?\s*$/.test(value)) return undefined;
  return Number(value);
}

const PARAMETERS = new Map(
  ['q', 'w', 'r', 't', 'limit', 'remaining', 'reset'].map((name) => [name, new RegExp(`(?:^|[;,\\s])${name}\\s*=\\s*(-?\\d+(?:\\.\\d+)?)`)]),
);

/** A structured-field parameter (`r=50`) of the first item of a list; patterns compiled once, not per response. */
function parameter(field: string | undefined, name: 'q' | 'w' | 'r' | 't' | 'limit' | 'remaining' | 'reset'): number | undefined {
  if (!field) return undefined;
  const match = PARAMETERS.get(name)!.exec(field);
  return match ? Number(match[1]) : undefined;
}

/** A reset value as seconds from now: epoch ms above 1e12, epoch s above 1e9, else already a delta. */
export function resetToSeconds(reset: number, dateHeader: string | undefined, nowMs: number): number {
  const reference = dateHeader !== undefined && !Number.isNaN(Date.parse(dateHeader)) ? Date.parse(dateHeader) : nowMs;
  if (reset > 1e12) return Math.max(0, Math.ceil((reset - reference) / 1000));
  if (reset > 1e9) return Math.max(0, Math.ceil(reset - reference / 1000));
  return Math.max(0, reset);
}

/** `6m0s`, `1h2m3s`, `12ms`, `0.5s` → seconds. */
export function parseGoDuration(value: string | undefined): number | undefined {
  if (!value) return undefined;
  const parts = [...value.matchAll(/(\d+(?:\.\d+)?)(ms|h|m|s)/g)];
  if (parts.length === 0 || parts.map((part) => part[0]).join('') !== value.trim()) return undefined;
  const unit: Record<string, number> = { h: 3600, m: 60, s: 1, ms: 0.001 };
  return parts.reduce((total, part) => total + Number(part[1]) * unit[part[2]!]!, 0);
}

function compact(quota: Quota): Quota | undefined {
  const entries = Object.entries(quota).filter(([, value]) => value !== undefined && Number.isFinite(value));
  if (!entries.some(([key]) => key === 'limit' || key === 'remaining')) return undefined;
  return Object.fromEntries(entries) as Quota;
}

export type QuotaDialect = 'auto' | 'ietf' | 'x-ratelimit' | 'openai' | 'shopify' | 'salesforce';
export type ResetFormat = 'auto' | 'epoch' | 'epoch-ms' | 'delta' | 'duration';

export interface QuotaOptions {
  readonly dialect?: QuotaDialect;
  readonly resetFormat?: ResetFormat;
}

/** A reset header value in seconds from now, per `resetFormat` (auto: guessed from its size or shape). */
function readReset(value: string | undefined, format: ResetFormat, dateHeader: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined;
  if (format === 'duration' || (format === 'auto' && /[a-z]/i.test(value))) return parseGoDuration(value.trim());
  const n = number(value);
  if (n === undefined) return undefined;
  const reference = dateHeader !== undefined && !Number.isNaN(Date.parse(dateHeader)) ? Date.parse(dateHeader) : nowMs;
  if (format === 'epoch-ms') return Math.max(0, Math.ceil((n - reference) / 1000));
  if (format === 'epoch') return Math.max(0, Math.ceil(n - reference / 1000));
  if (format === 'delta') return Math.max(0, n);
  return resetToSeconds(n, dateHeader, nowMs);
}

/** `used/max` (Shopify's `X-Shopify-Shop-Api-Call-Limit: 32/40`, Salesforce's `api-usage=10018/100000`). */
function usedOfMax(value: string | undefined): Quota | undefined {
  const match = value ? /(\d+)\s*\/\s*(\d+)/.exec(value) : null;
  if (!match) return undefined;
  const used = Number(match[1]);
  const max = Number(match[2]);
  return { limit: max, remaining: Math.max(0, max - used) };
}

/**
 * The quota announced by any response (2xx included), in the dialect asked
 * for or the first one found. Shopify's bucket leaks continuously and
 * Salesforce's limit is a rolling 24 hours: neither names a reset (pacing
 * measures their refill instead).
 */
export function readQuota(headers: IncomingHttpHeaders, nowMs: number, options: QuotaOptions = {}): Quota | undefined {
  const dialect = options.dialect ?? 'auto';
  const resetFormat = options.resetFormat ?? 'auto';
  const date = header(headers, 'date');
  const tries: Record<Exclude<QuotaDialect, 'auto'>, () => Quota | undefined> = {
    ietf: () => {
      const rateLimit = header(headers, 'ratelimit');
      const policy = header(headers, 'ratelimit-policy');
      if (rateLimit !== undefined || policy !== undefined) {
        return compact({
          limit: parameter(policy, 'q') ?? parameter(rateLimit, 'limit') ?? number(header(headers, 'ratelimit-limit')),
          remaining: parameter(rateLimit, 'r') ?? parameter(rateLimit, 'remaining'),
          resetSeconds: parameter(rateLimit, 't') ?? parameter(rateLimit, 'reset'),
        });
      }
      if (header(headers, 'ratelimit-remaining') === undefined) return undefined;
      return compact({
        limit: number(header(headers, 'ratelimit-limit')),
        remaining: number(header(headers, 'ratelimit-remaining')),
        resetSeconds: readReset(header(headers, 'ratelimit-reset'), resetFormat === 'auto' ? 'delta' : resetFormat, date, nowMs),
      });
    },
    'x-ratelimit': () => {
      if (header(headers, 'x-ratelimit-remaining') === undefined && header(headers, 'x-ratelimit-limit') === undefined) return undefined;
      return compact({
        limit: number(header(headers, 'x-ratelimit-limit')),
        remaining: number(header(headers, 'x-ratelimit-remaining')),
        resetSeconds: readReset(header(headers, 'x-ratelimit-reset'), resetFormat, date, nowMs),
      });
    },
    openai: () => {
      if (header(headers, 'x-ratelimit-remaining-requests') === undefined) return undefined;
      return compact({
        limit: number(header(headers, 'x-ratelimit-limit-requests')),
        remaining: number(header(headers, 'x-ratelimit-remaining-requests')),
        resetSeconds: readReset(header(headers, 'x-ratelimit-reset-requests'), resetFormat === 'auto' ? 'duration' : resetFormat, date, nowMs),
      });
    },
    shopify: () => usedOfMax(header(headers, 'x-shopify-shop-api-call-limit')),
    salesforce: () => usedOfMax(/api-usage=([^,;]+)/.exec(header(headers, 'sforce-limit-info') ?? '')?.[1]),
  };
  if (dialect !== 'auto') return tries[dialect]();
  for (const family of ['ietf', 'x-ratelimit', 'openai', 'shopify', 'salesforce'] as const) {
    const found = tries[family]();
    if (found) return found;
  }
  return undefined;
}

/** The quota for an error body (SPEC §5): any family, guessed reset format. */
export function parseQuota(headers: IncomingHttpHeaders, nowMs: number): Quota | undefined {
  return readQuota(headers, nowMs);
}
