/**
 * How the file's layers combine: maps merge key by key, anything else
 * replaces; a route's policies are the built-in ones, then `defaults`,
 * then the route's own.
 */
import { isObject, type Json } from './json.js';
import type { PathSegment } from './problems.js';
import { DEFAULTS } from './defaults.js';
import type { RawPolicies } from './schema.js';

/** What a key of the defaults holds when it is not a map: `raw` replaces it whole. */
type Leaf = string | number | boolean | null | readonly unknown[];

/**
 * The type of `mergeDeep(defaults, raw)`: every key the defaults hold is
 * there (a map merged key by key, anything else the file's value or the
 * default), every other key as the file wrote it. The resolver reads a
 * section of the file through it, typed, with no cast.
 */
export type Filled<R, D> = [D] extends [Leaf]
  ? Exclude<R, undefined> | D
  : Exclude<R, undefined | object> | FilledMap<Extract<Exclude<R, undefined>, object>, D>;
type FilledMap<R, D> = [R] extends [never]
  ? D
  : {
      readonly [K in keyof D | keyof R]: K extends keyof D
        ? Filled<K extends keyof R ? R[K] : undefined, D[K]>
        : K extends keyof R
          ? R[K]
          : never;
    };

/** `raw` (a section of a file that passed the schema) over its `defaults`. */
export function fill<D, R>(defaults: D, raw: R): Filled<R, D> {
  return mergeDeep(defaults, raw) as Filled<R, D>;
}

/** Key-by-key merge: maps merge recursively, anything else (lists, scalars, null) replaces. */
export function mergeDeep(base: unknown, override: unknown): unknown {
  if (override === undefined) return base;
  if (!isObject(base) || !isObject(override)) return override;
  const out: Json = { ...base };
  for (const [key, value] of Object.entries(override)) out[key] = mergeDeep(base[key], value);
  return out;
}

const BUILTIN_POLICIES = {
  timeouts: DEFAULTS.timeouts,
  retry: DEFAULTS.retry,
  rateLimit: null,
  errors: DEFAULTS.errors,
};

/** The raw policy layers of one route, most specific first, with where each sits in the file. */
export interface Layer {
  readonly path: readonly PathSegment[];
  readonly value: unknown;
}

type Section<K extends keyof RawPolicies> = NonNullable<RawPolicies[K]>;

/**
 * A route's policies in the file's notation, every default in place; `rateLimit` as the layers give it (null or
 * absent: none).
 */
export interface LayeredPolicies {
  readonly timeouts: Filled<Section<'timeouts'>, typeof DEFAULTS.timeouts>;
  readonly retry: Filled<Section<'retry'>, typeof DEFAULTS.retry>;
  readonly rateLimit: Section<'rateLimit'> | null;
  readonly errors: Filled<Section<'errors'>, typeof DEFAULTS.errors>;
}

/**
 * The one place a route's policies are layered: the built-in ones, then
 * each layer from the least specific, key by key. The resolver reads the
 * result typed (the file passed the schema); the cross-checks read it as
 * plain values, since they also run on a file that failed it.
 */
export function effectivePolicies(layers: readonly Layer[]): LayeredPolicies {
  let merged: unknown = BUILTIN_POLICIES;
  for (const layer of [...layers].reverse()) {
    if (!isObject(layer.value)) continue;
    const policies: Json = {};
    for (const key of ['timeouts', 'retry', 'rateLimit', 'errors']) {
      if (key in layer.value) policies[key] = layer.value[key];
    }
    merged = mergeDeep(merged, policies);
  }
  return merged as LayeredPolicies;
}
