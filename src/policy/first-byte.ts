/**
 * The first byte of an attempt's answer (SPEC §16). With `timeouts.firstByte`
 * an attempt is not answered at its headers but at its body's first byte
 * (an event stream: its first event line): until then nothing of it reaches
 * the client, and past the limit it is a per-try timeout, retried and failed
 * over like one. Without the key the first byte is only measured.
 */
import { formatDuration } from '../config/units.js';
import { DeadlineExceeded } from '../errors/deadline-exceeded.js';
import { Cancellation, untilAborted, type Signal } from '../lib/signal.js';
import { classifyAbort, type Classification } from '../upstream/classify.js';
import { describeUpstream, type UpstreamTarget } from '../upstream/forward.js';
import type { BodyBegin, UpstreamResponse } from '../upstream/response.js';

export interface FirstByteLimit {
  /** `timeouts.firstByte`, ms. */
  readonly firstByte: number;
  /** `timeouts.total`, ms, for the detail when what was left of it was the shorter. */
  readonly total: number;
}

/**
 * The first-byte timer, from the response headers: `firstByte`, cut to `leftMs` of the request's deadline.
 * It bounds the wait for the first byte and, on an error answer a rule reads, that read (the per-try timer
 * ended with the headers). Call `stop` when the attempt is answered.
 */
export function firstByteTimer(
  parent: Signal,
  response: UpstreamResponse,
  target: UpstreamTarget,
  limit: FirstByteLimit,
  leftMs: number,
): { readonly signal: Signal; stop(): void } {
  const guard = Cancellation.linked(parent);
  const cutByTotal = leftMs < limit.firstByte;
  const timer = setTimeout(
    () => {
      const what = response.eventStream ? 'no event' : 'no byte of its body';
      const within = cutByTotal
        ? `the total deadline of ${formatDuration(limit.total)}`
        : `timeouts.firstByte (${formatDuration(limit.firstByte)})`;
      guard.abort(
        new DeadlineExceeded(`${describeUpstream(target)} sent its response headers, then ${what} within ${within}.`),
      );
    },
    Math.max(1, Math.ceil(cutByTotal ? leftMs : limit.firstByte)),
  );
  return {
    signal: guard,
    stop() {
      clearTimeout(timer);
      guard.release();
    },
  };
}

/** How the body began; rejects with the signal's reason when it aborts first. */
function awaitBegin(response: UpstreamResponse, signal: Signal): Promise<BodyBegin> {
  return untilAborted(new Promise<BodyBegin>((resolve) => response.whenBegun(resolve)), signal);
}

/**
 * Waits for the first byte of `response` until `signal` (the first-byte timer) aborts. Returns undefined once
 * it came (or the body ended without one: sent as it is); else the failure the attempt amounts to, its response
 * aborted (the connection closed, never reused). Rethrows an abort that is not a timeout (the client left).
 */
export async function firstByteOf(
  response: UpstreamResponse,
  target: UpstreamTarget,
  signal: Signal,
): Promise<Classification | undefined> {
  let how: BodyBegin;
  try {
    how = await awaitBegin(response, signal);
  } catch (error) {
    response.destroy();
    const timedOut = classifyAbort(error);
    if (timedOut) return timedOut;
    throw error;
  }
  if (how === 'started' || how === 'ended') return undefined;
  return {
    outcome: 'reset',
    code: 'UPSTREAM_RESET',
    detail: `${describeUpstream(target)} closed the connection before the first byte of its answer's body.`,
  };
}
