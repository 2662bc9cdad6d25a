/**
 * Exponential backoff with full jitter (SPEC §3 `retry.backoff`): retry n
 * (0-based) waits a uniformly random time in [0, min(max, base * 2^n)).
 * The random source is injected so unit tests can pin it.
 */
export function fullJitterDelay(retry: number, baseMs: number, maxMs: number, random: () => number): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** retry);
  return random() * ceiling;
}
