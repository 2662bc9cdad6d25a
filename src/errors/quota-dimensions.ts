/**
 * Every dimension of the quota a response announces (SPEC §15), for pacing:
 * `requests`, and the tokens, points or policies a provider counts besides.
 * quota.ts reads one quota for the error body; this reads them all, in the
 * pacer's dialect, plus the headers `pacing.quotaHeaders` maps.
 *
 * Names come from the upstream (an IETF policy's name): only well-formed
 * ones are kept, and at most MAX_DIMENSIONS per answer, so an answer can
 * grow neither a pacer's state nor a metric's series.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { firstHeader } from '../lib/headers.js';
import { DIALECT_DIMENSIONS } from '../config/defaults.js';
import { number, quotaOf, READERS, readReset, type Quota, type QuotaDialect, type ResetFormat } from './quota.js';

/** Dimensions read from one answer, and so tracked per pacer, at most. */
export const MAX_DIMENSIONS = 8;
/** An IETF field longer than this is not read (real ones are tens of characters per policy). */
const MAX_FIELD = 2048;
/** A dimension's name, as the config's; never `constructor` (an object's inherited member, where states are kept by name). */
const DIMENSION_NAME = /^(?!constructor$)[a-z0-9][a-z0-9_.-]{0,63}$/;

/** A header mapped to a dimension by `pacing.quotaHeaders`; header names in lower case. */
export interface QuotaHeaderMap {
  readonly dimension: string;
  readonly limit?: string | undefined;
  readonly remaining: string;
  readonly reset: string;
  readonly resetFormat: ResetFormat;
}

export interface DimensionOptions {
  readonly dialect: QuotaDialect | 'custom';
  readonly resetFormat: ResetFormat;
  readonly quotaHeaders: readonly QuotaHeaderMap[];
}

export type Dimensions = Map<string, Quota>;

export { DIALECT_DIMENSIONS };

/** One dimension's three header names, spelled once (not per answer). */
interface Names {
  readonly dimension: string;
  readonly limit: string;
  readonly remaining: string;
  readonly reset: string;
}

/** OpenAI's `x-ratelimit-{limit,remaining,reset}-<dimension>`: the reset a duration. */
const OPENAI: readonly Names[] = DIALECT_DIMENSIONS.openai!.map((dimension) => ({
  dimension,
  limit: `x-ratelimit-limit-${dimension}`,
  remaining: `x-ratelimit-remaining-${dimension}`,
  reset: `x-ratelimit-reset-${dimension}`,
}));

/** Anthropic's `anthropic-ratelimit-<dimension>-{limit,remaining,reset}`: the reset an RFC 3339 time. */
const ANTHROPIC: readonly Names[] = DIALECT_DIMENSIONS.anthropic!.map((dimension) => ({
  dimension,
  limit: `anthropic-ratelimit-${dimension}-limit`,
  remaining: `anthropic-ratelimit-${dimension}-remaining`,
  reset: `anthropic-ratelimit-${dimension}-reset`,
}));

/** Each dimension of `family` the answer announces; `resetAs`: the reset's format unless one is configured. */
function readFamily(
  family: readonly Names[],
  resetAs: ResetFormat,
  headers: IncomingHttpHeaders,
  format: ResetFormat,
  nowMs: number,
  into: Dimensions,
): void {
  for (const names of family) {
    if (headers[names.remaining] === undefined) continue;
    const quota = quotaOf(
      number(firstHeader(headers, names.limit)),
      number(firstHeader(headers, names.remaining)),
      readReset(headers, names.reset, format === 'auto' ? resetAs : format, nowMs),
    );
    if (quota) into.set(names.dimension, quota);
  }
}

const readOpenAi = (headers: IncomingHttpHeaders, format: ResetFormat, nowMs: number, into: Dimensions) =>
  readFamily(OPENAI, 'duration', headers, format, nowMs, into);
const readAnthropic = (headers: IncomingHttpHeaders, format: ResetFormat, nowMs: number, into: Dimensions) =>
  readFamily(ANTHROPIC, 'rfc3339', headers, format, nowMs, into);

/** One item of a structured-field list: its name (a string or a token) and its numeric parameters. */
function listItems(field: string | undefined): Map<string, Map<string, number>> | undefined {
  if (field === undefined || field.length > MAX_FIELD) return undefined;
  const items = new Map<string, Map<string, number>>();
  for (const raw of field.split(',')) {
    const [head, ...parameters] = raw.split(';');
    const name = /^\s*"?([A-Za-z0-9_.-]{1,64})"?\s*$/.exec(head ?? '')?.[1]?.toLowerCase();
    if (name === undefined || !DIMENSION_NAME.test(name) || items.has(name)) continue;
    const values = new Map<string, number>();
    for (const parameter of parameters) {
      const match = /^\s*([a-z]+)\s*=\s*(-?\d+(?:\.\d+)?)\s*$/.exec(parameter);
      if (match) values.set(match[1]!, Number(match[2]));
    }
    items.set(name, values);
    if (items.size >= MAX_DIMENSIONS) break;
  }
  return items;
}

/**
 * IETF RateLimit with named policies (`RateLimit-Policy: "rpm";q=500;w=60, "tpm";q=40000;w=60` with
 * `RateLimit: "rpm";r=42;t=12, "tpm";r=900;t=12`): each policy a dimension by its name. Without names (the
 * older `RateLimit-Limit/-Remaining/-Reset`, or parameters only), the quota.ts reading: `requests`.
 */
function readIetf(headers: IncomingHttpHeaders, format: ResetFormat, nowMs: number, into: Dimensions): void {
  const current = listItems(firstHeader(headers, 'ratelimit'));
  if (current && current.size > 0) {
    const policies = listItems(firstHeader(headers, 'ratelimit-policy'));
    for (const [name, values] of current) {
      const quota = quotaOf(policies?.get(name)?.get('q'), values.get('r'), values.get('t'));
      if (quota) into.set(name, quota);
    }
    return;
  }
  const quota = READERS.ietf(headers, format, nowMs);
  if (quota) into.set('requests', quota);
}

/** The dialects `auto` tries, first found wins (as quota.ts's order). */
function readAuto(headers: IncomingHttpHeaders, format: ResetFormat, nowMs: number, into: Dimensions): void {
  readIetf(headers, format, nowMs, into);
  if (into.size > 0) return;
  const single = READERS['x-ratelimit'](headers, format, nowMs);
  if (single) {
    into.set('requests', single);
    return;
  }
  readOpenAi(headers, format, nowMs, into);
  if (into.size > 0) return;
  readAnthropic(headers, format, nowMs, into);
  if (into.size > 0) return;
  const bucket = READERS.shopify(headers, format, nowMs) ?? READERS.salesforce(headers, format, nowMs);
  if (bucket) into.set('requests', bucket);
}

/** Every dimension the answer announces, in the pacer's dialect and its mapped headers (which win by name). */
export function readDimensions(headers: IncomingHttpHeaders, nowMs: number, options: DimensionOptions): Dimensions {
  const found: Dimensions = new Map();
  const format = options.resetFormat;
  switch (options.dialect) {
    case 'auto':
      readAuto(headers, format, nowMs, found);
      break;
    case 'ietf':
      readIetf(headers, format, nowMs, found);
      break;
    case 'openai':
      readOpenAi(headers, format, nowMs, found);
      break;
    case 'anthropic':
      readAnthropic(headers, format, nowMs, found);
      break;
    case 'custom':
      break;
    default: {
      const quota = READERS[options.dialect](headers, format, nowMs);
      if (quota) found.set('requests', quota);
    }
  }
  for (const mapped of options.quotaHeaders) {
    const remaining = number(firstHeader(headers, mapped.remaining));
    if (remaining === undefined) continue;
    const limit = mapped.limit === undefined ? undefined : number(firstHeader(headers, mapped.limit));
    const quota = quotaOf(limit, remaining, readReset(headers, mapped.reset, mapped.resetFormat, nowMs));
    if (quota) found.set(mapped.dimension, quota);
  }
  return found;
}
