/**
 * What a response says about its quota (SPEC §3 `pacing.headers`), read
 * into its pacer's state: the remaining share, the reset, a 429's or 503's
 * pause, AIMD without quota headers. A function of a PacerState and a time
 * without I/O, so a shared update may run it twice (quota.ts reserves).
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { PacingConfig } from '../../config/types.js';
import type { Quota } from '../../errors/quota.js';
import { MAX_DIMENSIONS, readDimensions } from '../../errors/quota-dimensions.js';
import { retryDelayOf } from '../../lib/retry-after.js';
import { nextWindow, REFILL_SAMPLE_MS } from './quota.js';
import type { DimState, PacerState } from './store.js';

export interface Observed {
  /** The pacer was paused by this response (count it). */
  paused: boolean;
}

/** The dimensions an answer may add besides requests (`dims`), at most. */
const MAX_DIMS = MAX_DIMENSIONS - 1;

/** The state of `name`: the pacer itself for requests; another is made on first sight, within the bound. */
function dimensionIn(state: PacerState, name: string, t: number): DimState | undefined {
  if (name === 'requests') return state;
  const dims = (state.dims ??= {});
  const known = Object.hasOwn(dims, name) ? dims[name] : undefined;
  if (known || Object.keys(dims).length >= MAX_DIMS) return known;
  const made: DimState = { nextSlot: t };
  dims[name] = made;
  return made;
}

/**
 * One dimension's announced quota read into its state. `limitless`: a mapped header without a limit (SPEC §15:
 * the highest remaining seen stands for it).
 */
function learnWindow(
  dim: DimState,
  quota: Quota,
  t: number,
  config: PacingConfig,
  limitless: boolean,
  sentAt: number | undefined,
): boolean {
  // After an assumed refill, a late answer from the window that just ended
  // announces a reset that is past, or (rounded up to whole seconds) nearer
  // the old reset than the next: it must not undo the refill and make the
  // pacer refill twice.
  const estimate = quota.resetSeconds !== undefined ? t + quota.resetSeconds * 1000 : undefined;
  const stale =
    dim.resetAssumed === true &&
    estimate !== undefined &&
    (estimate - t < 150 || estimate < dim.resetAt! - (dim.windowMs ?? 0) / 2);
  if (stale) return false;
  dim.limit =
    quota.limit ?? (limitless && quota.remaining !== undefined ? Math.max(dim.limit ?? 0, quota.remaining) : dim.limit);
  if (estimate === undefined) return true;
  const known = dim.resetAt;
  // A new window: none known, the known one over, or a reset far from it (providers round resets up to whole seconds).
  // After an assumed refill, the first reset announced is the window's that began: the refill already moved the waiters on.
  const newWindow =
    !dim.resetAssumed &&
    (known === undefined || known <= t || Math.abs(estimate - known) > Math.max(1000, (dim.windowMs ?? 0) / 2));
  // Within one window the lowest remaining and the earliest reset seen are the closest to the truth (answers come out of order; resets are rounded up).
  const sameWindow = !newWindow && !dim.resetAssumed;
  // Local pacing: the remaining that stands counts what was sent before the request it answered (coveredAt).
  if (sentAt !== undefined && quota.remaining !== undefined) {
    if (!sameWindow || dim.remaining === undefined) dim.coveredAt = sentAt;
    else if (quota.remaining <= dim.remaining) dim.coveredAt = Math.max(dim.coveredAt ?? sentAt, sentAt);
  }
  dim.remaining =
    quota.remaining === undefined
      ? dim.remaining
      : sameWindow && dim.remaining !== undefined
        ? Math.min(dim.remaining, quota.remaining)
        : quota.remaining;
  dim.resetAt = sameWindow ? Math.min(known!, estimate) : estimate;
  dim.resetAssumed = false;
  if (newWindow) nextWindow(dim, config);
  // The longest time to a reset seen is the window's length (close to it).
  dim.windowMs = Math.max(dim.windowMs ?? 0, estimate - t);
  return false;
}

/**
 * No reset named (Shopify's leaking bucket, Salesforce's rolling day): the
 * requests dimension measures the refill. Between two samples the provider
 * answered (answered - sample.answered) requests, so it refilled
 * remaining - sample.remaining + those.
 */
function measureRefill(state: PacerState, remaining: number, t: number): void {
  state.remaining = remaining;
  const sample = state.sample;
  if (!sample) state.sample = { at: t, remaining, answered: state.answered };
  else if (t - sample.at >= REFILL_SAMPLE_MS) {
    const refill = Math.max(
      0,
      ((remaining - sample.remaining + state.answered - sample.answered) * 1000) / (t - sample.at),
    );
    state.refillRate = state.refillRate === undefined ? refill : (state.refillRate + refill) / 2;
    state.sample = { at: t, remaining, answered: state.answered };
  }
}

/** What a response says about the quota, read into the pacer (no side effect outside the state: a shared update may run twice). */
/** `wall`: epoch ms when the response came, to read the dates it names (a reset as a Unix time, an HTTP-date Retry-After). */
/** `pauseMs`: a pause a provider rule decided (SPEC §14), handled like a Retry-After. */
/** `sentAt`: local pacing, when the answered request was sent (the state's clock): what its remaining counts. */
export function observe(
  state: PacerState,
  t: number,
  status: number | undefined,
  headers: IncomingHttpHeaders,
  config: PacingConfig,
  retryAfterMaxMs: number,
  wall: number,
  pauseMs?: number,
  sentAt?: number,
): Observed {
  let paused = false;
  const dimensions = readDimensions(headers, wall, {
    dialect: config.headers,
    resetFormat: config.resetFormat,
    quotaHeaders: config.quotaHeaders,
  });
  state.answered += 1;
  for (const [name, quota] of dimensions) {
    const dim = dimensionIn(state, name, t);
    if (!dim) continue;
    if (dim !== state) dim.seenAt = t;
    const limitless = quota.limit === undefined && config.quotaHeaders.some((mapped) => mapped.dimension === name);
    const noReset = learnWindow(dim, quota, t, config, limitless, sentAt);
    if (noReset && name === 'requests' && quota.remaining !== undefined) measureRefill(state, quota.remaining, t);
    else if (noReset && quota.remaining !== undefined) dim.remaining = quota.remaining;
  }
  if (status === 429 || status === 503) {
    const retryAfter = pauseMs ?? retryDelayOf(headers, wall);
    if (retryAfter !== undefined) {
      const until = t + Math.min(retryAfter, retryAfterMaxMs);
      if (until > state.pausedUntil) {
        state.pausedUntil = until;
        paused = true;
      }
    }
    if (status === 429 && dimensions.size === 0) {
      // AIMD: no quota announced, so the 429 is the only signal.
      const current = state.aimdRate ?? Math.max(config.minRate, state.recent.previous || state.recent.count || 1);
      state.aimdRate = Math.max(config.minRate, current * config.aimd.decrease);
      state.lastIncrease = t;
    }
  }
  return { paused };
}

export function headerValue(headers: IncomingHttpHeaders, name: string): string {
  const value = headers[name];
  return Array.isArray(value) ? (value[0] ?? '') : (value ?? '');
}
