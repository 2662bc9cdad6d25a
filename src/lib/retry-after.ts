/**
 * The delay an answer asks for before the next request: `Retry-After`
 * (RFC 9110 §10.2.3: delta-seconds or an HTTP-date), and the millisecond
 * hints of OpenAI (`retry-after-ms`) and Azure OpenAI
 * (`x-ms-retry-after-ms`), which win over it (SPEC §15).
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

/** A millisecond hint: a number >= 0 (decimals allowed); undefined for anything else (then it is ignored). */
const MILLISECONDS = /^\s*(\d+(?:\.\d+)?)\s*$/;

function parseMilliseconds(value: string | string[] | undefined): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  const match = text === undefined ? null : MILLISECONDS.exec(text);
  if (!match) return undefined;
  // A number too large to be a wait (digits past a float's range) is a very long one, as Retry-After reads it.
  return Math.min(Number(match[1]), Number.MAX_SAFE_INTEGER);
}

/**
 * The delay (ms from `nowMs`) an answer's headers ask for: `retry-after-ms`,
 * else `x-ms-retry-after-ms`, else `Retry-After`; an invalid one is passed
 * over for the next; undefined when none is readable.
 */
export function retryDelayOf(
  headers: Readonly<Record<string, string | string[] | undefined>>,
  nowMs: number,
): number | undefined {
  return (
    parseMilliseconds(headers['retry-after-ms']) ??
    parseMilliseconds(headers['x-ms-retry-after-ms']) ??
    parseRetryAfter(headers['retry-after'], nowMs)
  );
}
