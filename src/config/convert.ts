/**
 * Units converted by their defaults' notation (SPEC §3): a key whose
 * built-in default is a duration (`"2s"`), a size (`"1MiB"`), a rate
 * (`"1/s"`) or a share (`"50%"`) is read in that unit, so the resolver
 * converts a filled section in one call and a new key with a default
 * needs no line of its own there. The type follows the same rule, read
 * from the default's literal type; a test holds the two equal for every
 * default (test/unit/config-defaults.test.ts).
 */
import { isObject, must, type Json } from './json.js';
import { parseDuration, parseRate, parseShare, parseSize, type Parsed } from './units.js';

type DurationText = `${number}${'ms' | 's' | 'm' | 'h'}`;
type SizeText = `${number}${'B' | 'KB' | 'MB' | 'GB' | 'KiB' | 'MiB' | 'GiB'}`;
type RateText = `${number}/${'s' | 'min' | 'h'}`;
type ShareText = `${number}%`;
/** A default written in a unit's notation. */
export type UnitText = DurationText | SizeText | RateText | ShareText;

/** `F` (a section filled over defaults `D`) with every key whose default is in a unit's notation as a number. */
export type Converted<F, D> = {
  readonly [K in keyof F]: K extends keyof D
    ? D[K] extends UnitText
      ? number
      : D[K] extends readonly unknown[] | null
        ? F[K]
        : D[K] extends object
          ? Converted<F[K], D[K]>
          : F[K]
    : F[K];
};

const PARSERS: readonly ((text: string) => Parsed<number>)[] = [parseDuration, parseSize, parseRate, parseShare];

/** The parser of a default's unit, or undefined when the default is no unit's notation. */
export function unitOf(text: string): ((text: string) => Parsed<number>) | undefined {
  return PARSERS.find((parse) => parse(text).ok);
}

/** `filled` with the keys whose default in `defaults` names a unit converted (ms, bytes, per second, 0..1). */
export function convertUnits<F, D>(filled: F, defaults: D): Converted<F, D> {
  return convert(filled, defaults) as Converted<F, D>;
}

function convert(value: unknown, defaults: unknown): unknown {
  if (!isObject(value) || !isObject(defaults)) return value;
  const out: Json = { ...value };
  for (const [key, def] of Object.entries(defaults)) {
    const current = out[key];
    if (typeof def === 'string' && typeof current === 'string') {
      const parse = unitOf(def);
      if (parse) out[key] = must(parse(current));
    } else if (isObject(def)) out[key] = convert(current, def);
  }
  return out;
}
