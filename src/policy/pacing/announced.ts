/**
 * What a response says about its quota (SPEC §3 `pacing.headers`), read
 * into its pacer's state: the remaining share, the reset, a 429's or 503's
 * pause, AIMD without quota headers. A function of a PacerState and a time
 * without I/O, so a shared update may run it twice (quota.ts reserves).
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { PacingConfig } from '../../config/types.js';
import { readQuota } from '../../errors/quota.js';
import { retryDelayOf } from '../../lib/retry-after.js';
import { nextWindow, REFILL_SAMPLE_MS } from './quota.js';
import type { PacerState } from './store.js';

export interface Observed {
  /** The pacer was paused by this response (count it). */
  paused: boolean;
}

/** What a response says about the quota, read into the pacer (no side effect outside the state: a shared update may run twice). */
/** `wall`: epoch ms when the response came, to read the dates it names (a reset as a Unix time, an HTTP-date Retry-After). */
/** `pauseMs`: a pause a provider rule decided (SPEC §14), handled like a Retry-After. */
export function observe(
  state: PacerState,
  t: number,
  status: number | undefined,
  headers: IncomingHttpHeaders,
  config: PacingConfig,
  retryAfterMaxMs: number,
  wall: number,
  pauseMs?: number,
): Observed {
  let paused = false;
  const quota = readQuota(headers, wall, { dialect: config.headers, resetFormat: config.resetFormat });
  state.answered += 1;
  // After an assumed refill, a late answer from the window that just ended
  // announces a reset that is past, or (rounded up to whole seconds) nearer
  // the old reset than the next: it must not undo the refill and make the
  // pacer refill twice.
  const estimate = quota?.resetSeconds !== undefined ? t + quota.resetSeconds * 1000 : undefined;
  const stale =
    state.resetAssumed === true &&
    estimate !== undefined &&
    (estimate - t < 150 || estimate < state.resetAt! - (state.windowMs ?? 0) / 2);
  if (quota && !stale && (quota.limit !== undefined || quota.remaining !== undefined)) {
    state.limit = quota.limit ?? state.limit;
    if (estimate !== undefined) {
      const known = state.resetAt;
      // A new window: none known, the known one over, or a reset far from it (providers round resets up to whole seconds).
      // After an assumed refill, the first reset announced is the window's that began: the refill already moved the waiters on.
      const newWindow =
        !state.resetAssumed &&
        (known === undefined || known <= t || Math.abs(estimate - known) > Math.max(1000, (state.windowMs ?? 0) / 2));
      // Within one window the lowest remaining and the earliest reset seen are the closest to the truth (answers come out of order; resets are rounded up).
      const sameWindow = !newWindow && !state.resetAssumed;
      state.remaining =
        quota.remaining === undefined
          ? state.remaining
          : sameWindow && state.remaining !== undefined
            ? Math.min(state.remaining, quota.remaining)
            : quota.remaining;
      state.resetAt = sameWindow ? Math.min(known!, estimate) : estimate;
      state.resetAssumed = false;
      if (newWindow) nextWindow(state, config);
      // The longest time to a reset seen is the window's length (close to it).
      state.windowMs = Math.max(state.windowMs ?? 0, estimate - t);
    } else if (quota.remaining !== undefined) {
      state.remaining = quota.remaining;
      // No reset named: measure the refill. Between two samples the
      // provider answered (answered - sample.answered) requests, so it
      // refilled remaining - sample.remaining + those.
      const sample = state.sample;
      if (!sample) state.sample = { at: t, remaining: quota.remaining, answered: state.answered };
      else if (t - sample.at >= REFILL_SAMPLE_MS) {
        const refill = Math.max(
          0,
          ((quota.remaining - sample.remaining + state.answered - sample.answered) * 1000) / (t - sample.at),
        );
        state.refillRate = state.refillRate === undefined ? refill : (state.refillRate + refill) / 2;
        state.sample = { at: t, remaining: quota.remaining, answered: state.answered };
      }
    }
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
    if (status === 429 && !quota) {
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
