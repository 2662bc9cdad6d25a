/**
 * A stream that goes silent, found by sampling a byte count a few times per
 * period instead of listening to every chunk (a listener per chunk would cost
 * the path that never goes silent): used for a client's request body (SPEC
 * §20.4) and an upstream's response body (§16).
 */

/** Samples per period: silence is found between `timeoutMs` and `timeoutMs + timeoutMs / SAMPLES` after the last byte. */
const SAMPLES = 4;

export interface Watched {
  /** Bytes seen so far. */
  bytes(): number;
  /** True while the reader, not the sender, holds the stream back (a full buffer): that is not silence. */
  held(): boolean;
  /** True once the stream ended (or was destroyed): watching stops. */
  over(): boolean;
}

/**
 * Calls `onSilent(silentMs)` once if `watched` takes in no byte for `timeoutMs`; returns the function that stops
 * watching.
 */
export function watchSilence(
  watched: Watched,
  timeoutMs: number,
  now: () => number,
  onSilent: (silentMs: number) => void,
): () => void {
  let lastBytes = watched.bytes();
  let lastProgress = now();
  let timer: NodeJS.Timeout | undefined;
  const check = () => {
    if (watched.over()) return;
    const at = now();
    const bytes = watched.bytes();
    if (bytes !== lastBytes || watched.held()) {
      lastBytes = bytes;
      lastProgress = at;
    } else if (at - lastProgress >= timeoutMs) {
      timer = undefined;
      onSilent(at - lastProgress);
      return;
    }
    timer = setTimeout(check, timeoutMs / SAMPLES);
    timer.unref();
  };
  timer = setTimeout(check, timeoutMs / SAMPLES);
  timer.unref();
  return () => clearTimeout(timer);
}
