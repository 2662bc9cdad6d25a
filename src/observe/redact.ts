/**
 * The effective config as `GET /config` shows it (SPEC §7): every header
 * value set by a route, every password in a URL, and every value that came
 * from `${env:…}` replaced by "<redacted>".
 */
import type { LoadedConfig } from '../config/index.js';

export const REDACTED = '<redacted>';

/** `routes[0].headers.request.set.Authorization` → ['routes', 0, 'headers', ...]. */
function parsePath(text: string): (string | number)[] {
  const out: (string | number)[] = [];
  const pattern = /([^.[\]]+)|\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]/g;
  for (const match of text.matchAll(pattern)) {
    if (match[2] !== undefined) out.push(Number(match[2]));
    else if (match[3] !== undefined) out.push(JSON.parse(`"${match[3]}"`) as string);
    else out.push(match[1]!);
  }
  return out;
}

/** A URL with its password shown as <redacted>; anything else as it is. */
export function redactUrl(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  try {
    const url = new URL(value);
    if (!url.password && !url.username) return value;
    if (url.password) url.password = 'redacted';
    return url.toString().replace(':redacted@', `:${REDACTED}@`);
  } catch {
    return value;
  }
}

type Json = Record<string, unknown>;

export function redactedConfig(loaded: LoadedConfig): Json {
  const copy = JSON.parse(JSON.stringify(loaded.config)) as Json;
  for (const route of copy.routes as Json[]) {
    for (const side of ['request', 'response']) {
      const set = ((route.headers as Json)[side] as Json).set as Json;
      for (const name of Object.keys(set)) set[name] = REDACTED;
    }
  }
  for (const upstream of Object.values(copy.upstreams as Json) as Json[]) {
    upstream.url = redactUrl(upstream.url);
    const tls = upstream.tls as Json;
    if (typeof tls.ca === 'string') tls.ca = '<PEM>';
  }
  if (copy.redis) {
    const redis = copy.redis as Json;
    redis.url = redactUrl(redis.url);
    const sentinel = redis.sentinel as Json | null;
    if (sentinel) for (const key of ['password', 'sentinelPassword']) if (sentinel[key] !== null) sentinel[key] = REDACTED;
    if (typeof redis.password === 'string') redis.password = REDACTED;
    const tls = redis.tls as Json | null;
    if (tls && typeof tls.ca === 'string') tls.ca = '<PEM>';
  }
  for (const envPath of loaded.envPaths) {
    const steps = parsePath(envPath);
    let node: unknown = copy;
    for (const step of steps.slice(0, -1)) node = node && typeof node === 'object' ? (node as Json)[step as string] : undefined;
    const last = steps.at(-1);
    if (node && typeof node === 'object' && last !== undefined && last in (node as Json)) (node as Json)[last as string] = REDACTED;
  }
  return copy;
}
