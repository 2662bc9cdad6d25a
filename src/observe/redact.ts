/**
 * The effective config as `GET /config` shows it (SPEC §7, §20.6): every
 * header value set by a route or a failover target, every password in a URL
 * (upstreams, failover targets, Redis, the tracing endpoint, whose query is
 * hidden too), Redis passwords and every value that came from `${env:…}`
 * replaced by "<redacted>". /status shows its URLs from this copy.
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

/**
 * A URL with its password (and, with `query`, its query) shown as
 * <redacted>; a string that is not a URL is not shown at all (a config only
 * holds checked URLs: this is the safe side of a surprise).
 */
export function redactUrl(value: unknown, options: { readonly query?: boolean } = {}): unknown {
  if (typeof value !== 'string') return value;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return REDACTED;
  }
  const hideQuery = options.query === true && url.search !== '';
  if (!url.password && !hideQuery) return value;
  if (url.password) url.password = 'redacted';
  if (hideQuery) url.search = '';
  const shown = url.toString().replace(':redacted@', `:${REDACTED}@`);
  return hideQuery ? `${shown}?${REDACTED}` : shown;
}

type Json = Record<string, unknown>;

function redactHeaderValues(set: Json): void {
  for (const name of Object.keys(set)) set[name] = REDACTED;
}

function redactTls(tls: Json | null | undefined): void {
  if (tls && typeof tls.ca === 'string') tls.ca = '<PEM>';
}

/** An upstream and its failover targets (SPEC §8.1): URL passwords, the targets' header values, CAs. */
function redactUpstream(upstream: Json): void {
  upstream.url = redactUrl(upstream.url);
  redactTls(upstream.tls as Json);
  for (const target of (upstream.failover as Json[] | undefined) ?? []) {
    target.url = redactUrl(target.url);
    redactHeaderValues((target.headers as Json).set as Json);
    redactTls(target.tls as Json | null);
  }
}

/** Replaces the value at a path (as in messages), when the copy has it. */
function redactAt(copy: Json, steps: readonly (string | number)[]): void {
  let node: unknown = copy;
  for (const step of steps.slice(0, -1))
    node = node && typeof node === 'object' ? (node as Json)[step as string] : undefined;
  const last = steps.at(-1);
  if (node && typeof node === 'object' && last !== undefined && last in (node as Json))
    (node as Json)[last as string] = REDACTED;
}

/** Every value that came from `${env:…}`; one set in `defaults` is shown on every route too, merged. */
function redactEnvValues(copy: Json, envPaths: ReadonlySet<string>): void {
  for (const envPath of envPaths) {
    const steps = parsePath(envPath);
    redactAt(copy, steps);
    if (steps[0] === 'defaults')
      (copy.routes as Json[]).forEach((_route, index) => redactAt(copy, ['routes', index, ...steps.slice(1)]));
  }
}

export function redactedConfig(loaded: LoadedConfig): Json {
  const copy = JSON.parse(JSON.stringify(loaded.config)) as Json;
  for (const route of copy.routes as Json[]) {
    for (const side of ['request', 'response']) redactHeaderValues(((route.headers as Json)[side] as Json).set as Json);
  }
  for (const upstream of Object.values(copy.upstreams as Json) as Json[]) redactUpstream(upstream);
  const tracing = copy.tracing as Json;
  tracing.endpoint = redactUrl(tracing.endpoint, { query: true });
  if (copy.redis) {
    const redis = copy.redis as Json;
    redis.url = redactUrl(redis.url);
    const sentinel = redis.sentinel as Json | null;
    if (sentinel)
      for (const key of ['password', 'sentinelPassword']) if (sentinel[key] !== null) sentinel[key] = REDACTED;
    if (typeof redis.password === 'string') redis.password = REDACTED;
    redactTls(redis.tls as Json | null);
  }
  // The admin token (SPEC §19.1); a tokenFile shows its path.
  const admin = copy.admin as Json;
  if (admin.token !== null) admin.token = REDACTED;
  redactEnvValues(copy, loaded.envPaths);
  return copy;
}
