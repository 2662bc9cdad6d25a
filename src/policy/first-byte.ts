/**
 * The first byte of an attempt's answer (SPEC §16). With `timeouts.firstByte`
 * an attempt is not answered at its headers but at its body's first byte
 * (an event stream: its first event line): until then nothing of it reaches
 * the client, and past the limit it is a per-try timeout, retried and failed
 * over like one. Without the key the first byte is only measured.
 */
import { formatDuration } from '../config/units.js';
import type { Signal } from '../lib/signal.js';
import { classifyTimeout, type Classification } from '../upstream/classify.js';
import { describeUpstream, type UpstreamTarget } from '../upstream/forward.js';
import type { BodyBegin, UpstreamResponse } from '../upstream/response.js';

/** How the body began within `ms`, or 'timeout'; rejects with the signal's reason (the client left). */
function awaitBegin(response: UpstreamResponse, signal: Signal, ms: number): Promise<BodyBegin | 'timeout'> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => {
        stop();
        resolve('timeout');
      },
      Math.max(1, Math.ceil(ms)),
    );
    const stop = signal.onAbort(() => {
      clearTimeout(timer);
      reject(signal.reason as Error);
    });
    response.whenBegun((how) => {
      clearTimeout(timer);
      stop();
      resolve(how);
    });
  });
}

export interface FirstByteLimit {
  /** `timeouts.firstByte`, ms. */
  readonly firstByte: number;
  /** `timeouts.total`, ms, for the detail when what was left of it was the shorter. */
  readonly total: number;
}

/**
 * Waits for the first byte of `response` within `limit.firstByte`, cut to `leftMs` of the request's deadline.
 * Returns undefined once it came (or the body ended without one: sent as it is); else the failure the attempt
 * amounts to, its response aborted (the connection closed, never reused).
 */
export async function firstByteOf(
  response: UpstreamResponse,
  target: UpstreamTarget,
  limit: FirstByteLimit,
  leftMs: number,
  signal: Signal,
): Promise<Classification | undefined> {
  const cutByTotal = leftMs < limit.firstByte;
  let how: BodyBegin | 'timeout';
  try {
    how = await awaitBegin(response, signal, cutByTotal ? leftMs : limit.firstByte);
  } catch (error) {
    response.destroy();
    throw error;
  }
  if (how === 'started' || how === 'ended') return undefined;
  const upstream = describeUpstream(target);
  if (how === 'failed')
    return {
      outcome: 'reset',
      code: 'UPSTREAM_RESET',
      detail: `${upstream} closed the connection before the first byte of its answer's body.`,
    };
  response.destroy();
  const what = response.eventStream ? 'no event' : 'no byte of its body';
  const within = cutByTotal
    ? `the total deadline of ${formatDuration(limit.total)}`
    : `timeouts.firstByte (${formatDuration(limit.firstByte)})`;
  return classifyTimeout(`${upstream} sent its response headers, then ${what} within ${within}.`);
}
