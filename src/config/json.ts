/**
 * Small helpers over the file as parsed (plain JSON values), shared by the
 * cross-checks and the conversion.
 */
import { parseDuration, parseRate, parseShare, parseSize, type Parsed } from './units.js';

export type Json = Record<string, unknown>;

export function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function getIn(value: unknown, keys: readonly string[]): unknown {
  let node = value;
  for (const key of keys) node = isObject(node) ? node[key] : undefined;
  return node;
}

export function must<T>(parsed: Parsed<T>): T {
  if (!parsed.ok) throw new Error(`unit parse after validation: ${parsed.message}`);
  return parsed.value;
}

export const ms = (text: unknown) => must(parseDuration(String(text)));
export const perSecond = (text: unknown) => must(parseRate(String(text)));
export const fraction = (text: unknown) => must(parseShare(String(text)));

export function tryMs(text: unknown): number | undefined {
  if (typeof text !== 'string') return undefined;
  const parsed = parseDuration(text);
  return parsed.ok ? parsed.value : undefined;
}

export function trySize(text: unknown): number | undefined {
  if (typeof text !== 'string') return undefined;
  const parsed = parseSize(text);
  return parsed.ok ? parsed.value : undefined;
}

/** What {@link deepFreeze} returns: the same value, read-only at every depth. */
export type DeepReadonly<T> = T extends (...args: never[]) => unknown
  ? T
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

export function deepFreeze<T>(value: T): DeepReadonly<T> {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value as DeepReadonly<T>;
}
