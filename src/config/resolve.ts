/**
 * From a file that passed the schema and the cross-checks (cross-check.ts)
 * to the {@link Config} the rest of the code reads: each section filled
 * with its defaults once (merge.ts `fill`, typed from the schema), units
 * converted, CA files read, the result frozen. The resolved types are
 * inferred from what these functions return (types.ts names them), so a
 * key that needs no conversion passes through with no line here.
 */
import { readCa } from './ca-files.js';
import path from 'node:path';
import { deepFreeze, fraction, must, ms, perSecond } from './json.js';
import { effectivePolicies, fill, type LayeredPolicies } from './merge.js';
import { convertUnits } from './convert.js';
import { DEFAULTS, isCondition, limitKey, RESET_FORMATS } from './defaults.js';

type ResetFormat = (typeof RESET_FORMATS)[number];
import type { ConfigFile, RawPolicies, RawRoute, RawUpstream } from './schema.js';
import { adminToken, toCallers } from './resolve-edge.js';
import { toCredentials } from './resolve-credentials.js';

type RawBreaker = NonNullable<RawUpstream['circuitBreaker']>;
type RawEdits = { set?: Record<string, string>; remove?: string[] } | undefined;

function hostPort(entry: string): { host: string; port: number } {
  const colon = entry.lastIndexOf(':');
  return { host: entry.slice(0, colon).replace(/^\[(.*)\]$/, '$1'), port: Number(entry.slice(colon + 1)) };
}

const caOf = (ca: string | null | undefined, baseDir: string): string | null =>
  typeof ca === 'string' ? must(readCa(ca, baseDir)) : null;

function toRedis(raw: NonNullable<ConfigFile['redis']>, baseDir: string) {
  const redis = convertUnits(fill(DEFAULTS.redis, raw), DEFAULTS.redis);
  const { sentinel, cluster, tls } = redis;
  return {
    url: redis.url,
    onError: redis.onError,
    timeout: redis.timeout,
    cluster: cluster ? { nodes: cluster.nodes.map(hostPort) } : null,
    username: redis.username ?? null,
    password: redis.password ?? null,
    db: redis.db ?? null,
    tls: tls ? { ca: caOf(tls.ca, baseDir), insecureSkipVerify: tls.insecureSkipVerify === true } : null,
    sentinel: sentinel
      ? {
          name: sentinel.name,
          sentinels: sentinel.sentinels.map(hostPort),
          password: sentinel.password ?? null,
          sentinelPassword: sentinel.sentinelPassword ?? null,
        }
      : null,
  };
}

function toRetry(raw: LayeredPolicies['retry']) {
  const retry = convertUnits(raw, DEFAULTS.retry);
  return { ...retry, retryOn: retry.retryOn.filter(isCondition) };
}

function toRateLimit(raw: LayeredPolicies['rateLimit']) {
  if (!raw) return null;
  const limit = convertUnits(fill(DEFAULTS.rateLimit, raw), DEFAULTS.rateLimit);
  // No default rate: converted here.
  const rate = limit.rate === undefined ? null : perSecond(limit.rate);
  return {
    ...limit,
    rate,
    burst: limit.burst ?? Math.max(1, Math.ceil(rate ?? 1)),
    maxConcurrent: limit.maxConcurrent ?? null,
    key: limitKey(limit.key),
  };
}

/** The deadlines in ms; `firstByte` and `idle` (SPEC §16) stay null when off. */
function toTimeouts(raw: LayeredPolicies['timeouts']) {
  const { firstByte, idle, ...rest } = raw;
  return {
    ...convertUnits(rest, DEFAULTS.timeouts),
    firstByte: firstByte === null ? null : ms(firstByte),
    idle: idle === null ? null : ms(idle),
  };
}

/**
 * A route's policies: the built-in ones, then the file's `defaults`, then the route's own, merged key by key
 * (merge.ts).
 */
function toPolicies(...layers: (RawPolicies | undefined)[]) {
  const policies = effectivePolicies(layers.map((value) => ({ path: [], value })));
  return {
    timeouts: toTimeouts(policies.timeouts),
    retry: toRetry(policies.retry),
    // null in a route turns off the rate limit `defaults` gives.
    rateLimit: toRateLimit(policies.rateLimit),
    errors: { ...policies.errors },
  };
}

const headerOf = (selector: string | null): string | null =>
  selector === null ? null : selector.slice('header:'.length).toLowerCase();

/**
 * The breaker's settings; `maxOpenFor` left unset is the larger of its default and `openFor` (an `openFor: 30s`
 * of old stays 30 s).
 */
function toCircuitBreaker(raw: RawBreaker | undefined) {
  const cb = convertUnits(fill(DEFAULTS.upstream.circuitBreaker, raw), DEFAULTS.upstream.circuitBreaker);
  return {
    ...cb,
    maxOpenFor: raw?.maxOpenFor === undefined ? Math.max(cb.maxOpenFor, cb.openFor) : cb.maxOpenFor,
    failOn: cb.failOn.filter(isCondition),
  };
}

/** Pacing with its header names in lower case (SPEC §3, §15). */
function toPacing<
  P extends {
    readonly scope: string | null;
    readonly key: string | null;
    readonly quotaHeaders: readonly {
      readonly dimension: string;
      readonly limit?: string;
      readonly remaining: string;
      readonly reset: string;
      readonly resetFormat?: ResetFormat;
    }[];
  },
>(pacing: P) {
  return {
    ...pacing,
    scope: headerOf(pacing.scope),
    key: headerOf(pacing.key),
    quotaHeaders: pacing.quotaHeaders.map((mapped) => ({
      dimension: mapped.dimension,
      limit: mapped.limit?.toLowerCase(),
      remaining: mapped.remaining.toLowerCase(),
      reset: mapped.reset.toLowerCase(),
      resetFormat: mapped.resetFormat ?? 'auto',
    })),
  };
}

function toUpstream(name: string, raw: RawUpstream, baseDir: string) {
  const upstream = convertUnits(fill(DEFAULTS.upstream, raw), DEFAULTS.upstream);
  const tls = { ca: caOf(upstream.tls.ca, baseDir), insecureSkipVerify: upstream.tls.insecureSkipVerify };
  return {
    name,
    url: raw.url,
    pool: { ...upstream.pool },
    tls,
    circuitBreaker: toCircuitBreaker(raw.circuitBreaker),
    pacing: toPacing(upstream.pacing),
    cooldownMax: upstream.cooldownMax,
    credentials: toCredentials(raw.credentials, baseDir),
    idempotencyKeys: {
      enabled: upstream.idempotencyKeys.enabled,
      header: upstream.idempotencyKeys.header.toLowerCase(),
    },
    errorRules: (raw.errorRules ?? []).map((rule) => ({
      when: {
        status: rule.when.status ?? null,
        code: rule.when.code ?? null,
        header: rule.when.header ?? null,
        message: rule.when.message ?? null,
      },
      as: rule.as !== undefined ? Number(rule.as) : null,
      retryable: rule.retryable ?? null,
      breakerFailure: rule.breakerFailure ?? null,
      responsibility: rule.responsibility ?? null,
    })),
    failover: (raw.failover ?? []).map((target, index) => ({
      name: `${name}/${target.name ?? index + 1}`,
      url: target.url,
      headers: toHeaderEdits(target.headers),
      tls: target.tls
        ? { ca: caOf(target.tls.ca, baseDir), insecureSkipVerify: target.tls.insecureSkipVerify ?? false }
        : tls,
      // A failover target sends only its own credentials (SPEC §18).
      credentials: toCredentials(target.credentials, baseDir),
    })),
  };
}

function toStale(raw: RawRoute) {
  const stale = raw.fallback?.stale;
  return stale ? convertUnits(fill(DEFAULTS.stale, stale), DEFAULTS.stale) : null;
}

/** `routes[].cache` (SPEC §17) in ms and bytes; null without. */
function toCache(raw: RawRoute) {
  if (!raw.cache) return null;
  const { ttl, ...rest } = fill(DEFAULTS.cache, raw.cache);
  return { ...convertUnits(rest, DEFAULTS.cache), ttl: ttl === null ? null : ms(ttl) };
}

function toHeaderEdits(raw: RawEdits) {
  return { set: { ...raw?.set }, remove: (raw?.remove ?? []).map((name) => name.toLowerCase()) };
}

function toRoute(raw: RawRoute, defaults: RawPolicies | undefined) {
  const route = fill(DEFAULTS.route, raw);
  return {
    name: raw.name,
    match: {
      pathPrefix: route.match.pathPrefix,
      host: route.match.host?.toLowerCase() ?? null,
      methods: route.match.methods ?? null,
    },
    stripPrefix: route.stripPrefix,
    upstream: raw.upstream ?? null,
    clientOverrides: route.clientOverrides,
    priority: raw.priority ?? null,
    headers: { request: toHeaderEdits(raw.headers?.request), response: toHeaderEdits(raw.headers?.response) },
    keyHeaders: route.keyHeaders.map((name) => name.toLowerCase()),
    fallback: { stale: toStale(raw) },
    cache: toCache(raw),
    ...toPolicies(raw, defaults),
  };
}

function toPriorities(raw: ConfigFile['priorities']) {
  if (!raw) return null;
  return {
    header: fill(DEFAULTS.priorities, raw).header.toLowerCase(),
    default: raw.default,
    classes: raw.classes.map((entry) => ({
      name: entry.name,
      quotaFloor: entry.quotaFloor === undefined ? null : fraction(entry.quotaFloor),
    })),
    promoteAfterMs: raw.promoteAfter === undefined ? null : ms(raw.promoteAfter),
  };
}

function toForwardProxy(raw: ConfigFile['forwardProxy'], baseDir: string) {
  const forwardProxy = fill(DEFAULTS.forwardProxy, raw);
  const intercept = forwardProxy.intercept;
  return {
    ...forwardProxy,
    allowHosts: forwardProxy.allowHosts.map((host) => host.toLowerCase()),
    allowPorts: [...forwardProxy.allowPorts],
    callers: toCallers(forwardProxy.callers, forwardProxy),
    connect: { mode: forwardProxy.connect.mode },
    // Forward targets have no upstream block: each gets a breaker with these settings (the built-in ones).
    circuitBreaker: toCircuitBreaker(undefined),
    intercept:
      intercept && forwardProxy.connect.mode === 'intercept'
        ? {
            caCert: must(readCa(intercept.caCert ?? '', baseDir)),
            caKeyFile: path.resolve(baseDir, intercept.caKey ?? ''),
            hosts: (intercept.hosts ?? []).map((host) => host.toLowerCase()),
            upstreamCa: caOf(intercept.upstreamCa, baseDir),
          }
        : null,
  };
}

/** Builds the frozen {@link Config} from a file that passed the schema and {@link crossCheck}. */
export function resolveConfig(file: ConfigFile, baseDir: string) {
  const listen = fill(DEFAULTS.listen, file.listen);
  const admin = fill(DEFAULTS.admin, file.admin);
  const limits = convertUnits(fill(DEFAULTS.limits, file.limits), DEFAULTS.limits);
  const upstreams = Object.fromEntries(
    Object.entries(file.upstreams ?? {}).map(([name, raw]) => [name, toUpstream(name, raw, baseDir)]),
  );
  const config = {
    version: file.version,
    listen: {
      ...listen,
      serverNames: listen.serverNames.map((name) => name.toLowerCase()),
      allowOrigins: listen.allowOrigins.map((origin) => origin.toLowerCase()),
    },
    admin: { ...admin, token: adminToken(admin.token, admin.tokenFile, baseDir) },
    logging: fill(DEFAULTS.logging, file.logging),
    tracing: fill(DEFAULTS.tracing, file.tracing),
    priorities: toPriorities(file.priorities),
    observability: fill(DEFAULTS.observability, file.observability),
    limits,
    shutdown: convertUnits(fill(DEFAULTS.shutdown, file.shutdown), DEFAULTS.shutdown),
    defaults: toPolicies(file.defaults),
    upstreams,
    routes: file.routes.map((route) => toRoute(route, file.defaults)),
    redis: file.redis ? toRedis(file.redis, baseDir) : null,
    forwardProxy: toForwardProxy(file.forwardProxy, baseDir),
  };
  return deepFreeze(config);
}
