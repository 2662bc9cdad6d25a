/**
 * `Retry-After` (RFC 9110 §10.2.3): delta-seconds or an HTTP-date. Returns
 * the delay in milliseconds from `nowMs`, 0 for a date in the past, or
 * undefined when the value is neither (then it is ignored).
 */
const DELTA_SECONDS = /^\s*(\d+)\s*$/;

export function parseRetryAfter(value: string | string[] | undefined, nowMs: number): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined) return undefined;
  const delta = DELTA_SECONDS.exec(text);
  if (delta) {
    const seconds = Number(delta[1]);
    return Number.isSafeInteger(seconds) ? seconds * 1000 : Number.MAX_SAFE_INTEGER;
  }
  // An HTTP-date names a weekday and a GMT time; plain numbers with signs,
  // decimals or garbage are not dates.
  if (!/^[A-Za-z]{3,9},? /.test(text.trim()) || !/GMT\s*$/.test(text)) return undefined;
  const date = Date.parse(text);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - nowMs);
}
