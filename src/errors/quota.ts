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

/** A structured-field parameter (`r=50`) of the first item of a list. */
function parameter(field: string | undefined, name: string): number | undefined {
  if (!field) return undefined;
  const match = new RegExp(`(?:^|[;,\\s])${name}\\s*=\\s*(-?\\d+(?:\\.\\d+)?)`).exec(field);
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

export function parseQuota(headers: IncomingHttpHeaders, nowMs: number): Quota | undefined {
  const rateLimit = header(headers, 'ratelimit');
  const policy = header(headers, 'ratelimit-policy');
  if (rateLimit !== undefined || policy !== undefined) {
    const ietf = compact({
      limit: parameter(policy, 'q') ?? parameter(rateLimit, 'limit') ?? number(header(headers, 'ratelimit-limit')),
      remaining: parameter(rateLimit, 'r') ?? parameter(rateLimit, 'remaining'),
      resetSeconds: parameter(rateLimit, 't') ?? parameter(rateLimit, 'reset'),
    });
    if (ietf) return ietf;
  }
  if (header(headers, 'ratelimit-remaining') !== undefined) {
    const draft = compact({
      limit: number(header(headers, 'ratelimit-limit')),
      remaining: number(header(headers, 'ratelimit-remaining')),
      resetSeconds: number(header(headers, 'ratelimit-reset')),
    });
    if (draft) return draft;
  }
  if (header(headers, 'x-ratelimit-remaining') !== undefined || header(headers, 'x-ratelimit-limit') !== undefined) {
    const reset = number(header(headers, 'x-ratelimit-reset'));
    const classic = compact({
      limit: number(header(headers, 'x-ratelimit-limit')),
      remaining: number(header(headers, 'x-ratelimit-remaining')),
      resetSeconds: reset === undefined ? undefined : resetToSeconds(reset, header(headers, 'date'), nowMs),
    });
    if (classic) return classic;
  }
  if (header(headers, 'x-ratelimit-remaining-requests') !== undefined) {
    return compact({
      limit: number(header(headers, 'x-ratelimit-limit-requests')),
      remaining: number(header(headers, 'x-ratelimit-remaining-requests')),
      resetSeconds: parseGoDuration(header(headers, 'x-ratelimit-reset-requests')),
    });
  }
  return undefined;
}
