/**
 * How the file's layers combine: maps merge key by key, anything else
 * replaces; a route's policies are the built-in ones, then `defaults`,
 * then the route's own.
 */
import { isObject, type Json } from './json.js';
import type { PathSegment } from './problems.js';
import { DEFAULTS } from './defaults.js';

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

export function effectivePolicies(layers: readonly Layer[]): Json {
  let merged: unknown = BUILTIN_POLICIES;
  for (const layer of [...layers].reverse()) {
    if (!isObject(layer.value)) continue;
    const policies: Json = {};
    for (const key of ['timeouts', 'retry', 'rateLimit', 'errors']) {
      if (key in layer.value) policies[key] = layer.value[key];
    }
    merged = mergeDeep(merged, policies);
  }
  return merged as Json;
}
