/**
 * Parsers for the unit-bearing strings of the config file (SPEC §3):
 * durations (`250ms`, `2s`, `1m30s`), sizes (`512KiB`, `1MiB`), rates
 * (`25/s`, `100/min`, `5000/h`) and shares (`50%`).
 *
 * Each is parsed once, at load, into a plain number in the unit the rest of
 * the code works in: milliseconds, bytes, events per second, a fraction in
 * [0, 1]. Parsers never throw; a bad form comes back as a message that says
 * what was expected, so the validator can point at the value.
 */

export type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

const NUMBER = String.raw`(\d+(?:\.\d+)?)`;

const DURATION_UNITS_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;
const DURATION_PART = new RegExp(`${NUMBER}(ms|s|m|h)`, 'y');
const DURATION_HINT = 'write a number with a unit (ms, s, m, h), like 250ms, 2s, 1m or 1m30s';

/** Parses a duration string into milliseconds. `0s` is accepted here; callers decide whether zero means anything. */
export function parseDuration(text: string): Parsed<number> {
  const source = text.trim();
  if (source === '') return { ok: false, message: `empty string is not a duration: ${DURATION_HINT}` };
  if (source.startsWith('-')) return { ok: false, message: `"${text}" is negative: a duration cannot be` };
  let total = 0;
  let index = 0;
  while (index < source.length) {
    DURATION_PART.lastIndex = index;
    const match = DURATION_PART.exec(source);
    if (!match) return { ok: false, message: `"${text}" is not a duration: ${DURATION_HINT}` };
    total += Number(match[1]) * DURATION_UNITS_MS[match[2] as keyof typeof DURATION_UNITS_MS];
    index = DURATION_PART.lastIndex;
  }
  return { ok: true, value: total };
}

const SIZE_UNITS_BYTES: Record<string, number> = {
  B: 1,
  KB: 1_000,
  MB: 1_000_000,
  GB: 1_000_000_000,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
};
const SIZE = new RegExp(`^${NUMBER}\\s?(B|KB|MB|GB|KiB|MiB|GiB)$`);
const SIZE_HINT = 'write a number with a unit (B, KiB, MiB, GiB, KB, MB, GB), like 512KiB or 1MiB';

/** Parses a size string into a whole number of bytes. */
export function parseSize(text: string): Parsed<number> {
  const source = text.trim();
  if (source.startsWith('-')) return { ok: false, message: `"${text}" is negative: a size cannot be` };
  const match = SIZE.exec(source);
  if (!match) return { ok: false, message: `"${text}" is not a size: ${SIZE_HINT}` };
  return { ok: true, value: Math.floor(Number(match[1]) * SIZE_UNITS_BYTES[match[2]!]!) };
}

const RATE_PER_SECOND = { s: 1, min: 1 / 60, h: 1 / 3600 } as const;
const RATE = new RegExp(`^${NUMBER}\\s?/\\s?(s|min|h)$`);
const RATE_HINT = 'write a number per unit (s, min, h), like 25/s, 100/min or 5000/h';

/** Parses a rate string into events per second. */
export function parseRate(text: string): Parsed<number> {
  const source = text.trim();
  if (source.startsWith('-')) return { ok: false, message: `"${text}" is negative: a rate cannot be` };
  const match = RATE.exec(source);
  if (!match) return { ok: false, message: `"${text}" is not a rate: ${RATE_HINT}` };
  return { ok: true, value: Number(match[1]) * RATE_PER_SECOND[match[2] as keyof typeof RATE_PER_SECOND] };
}

const SHARE = new RegExp(`^${NUMBER}\\s?%$`);

/** Parses a share (`50%`) into a fraction in [0, 1]. */
export function parseShare(text: string): Parsed<number> {
  const source = text.trim();
  if (source.startsWith('-')) return { ok: false, message: `"${text}" is negative: a share cannot be` };
  const match = SHARE.exec(source);
  if (!match) return { ok: false, message: `"${text}" is not a share: write a percentage, like 50%` };
  const value = Number(match[1]) / 100;
  if (value > 1) return { ok: false, message: `"${text}" is above 100%` };
  return { ok: true, value };
}

/** Formats milliseconds back into the config's notation, for messages (`1500` → `1.5s`). */
export function formatDuration(ms: number): string {
  if (ms >= 3_600_000 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms >= 1_000) return `${+(ms / 1_000).toFixed(3)}s`;
  return `${+ms.toFixed(3)}ms`;
}
