/**
 * From a file that passed the schema and the cross-checks (cross-check.ts)
 * to the {@link Config} the rest of the code reads: defaults merged key by
 * key, units converted, CA files read, the result frozen.
 */
import { readCa } from './ca-files.js';
import path from 'node:path';
import { bytes, deepFreeze, fraction, isObject, ms, must, perSecond, type Json } from './json.js';
import { effectivePolicies, mergeDeep } from './merge.js';
import { DEFAULTS } from './defaults.js';
import type { ConfigFile, RawPolicies, RawRoute, RawUpstream } from './schema.js';
import { adminToken, toCallers } from './resolve-edge.js';
import type {
  ForwardProxyConfig,
  CircuitBreakerConfig,
  Condition,
  Config,
  HeaderEditsConfig,
  LimitKey,
  PacingConfig,
  PoliciesConfig,
  RateLimitConfig,
  RetryConfig,
  RouteConfig,
  TimeoutsConfig,
  UpstreamConfig,
  StaleConfig,
} from './types.js';

function hostPort(entry: string): { host: string; port: number } {
  const colon = entry.lastIndexOf(':');
  return { host: entry.slice(0, colon).replace(/^\[(.*)\]$/, '$1'), port: Number(entry.slice(colon + 1)) };
}

function toRedis(raw: Json, baseDir: string): NonNullable<Config['redis']> {
  const sentinel = isObject(raw.sentinel) ? raw.sentinel : null;
  const cluster = isObject(raw.cluster) ? raw.cluster : null;
  const tls = isObject(raw.tls) ? raw.tls : null;
  return {
    cluster: cluster ? { nodes: (cluster.nodes as string[]).map(hostPort) } : null,
    username: typeof raw.username === 'string' ? raw.username : null,
    password: typeof raw.password === 'string' ? raw.password : null,
    db: typeof raw.db === 'number' ? raw.db : null,
    tls: tls ? { ca: typeof tls.ca === 'string' ? must(readCa(tls.ca, baseDir)) : null, insecureSkipVerify: tls.insecureSkipVerify === true } : null,
    url: raw.url as string,
    onError: raw.onError as 'local' | 'allow',
    timeout: ms(raw.timeout),
    sentinel: sentinel
      ? {
          name: sentinel.name as string,
          sentinels: (sentinel.sentinels as string[]).map(hostPort),
          password: typeof sentinel.password === 'string' ? sentinel.password : null,
          sentinelPassword: typeof sentinel.sentinelPassword === 'string' ? sentinel.sentinelPassword : null,
        }
      : null,
  };
}

function toTimeouts(raw: Json): TimeoutsConfig {
  return { connect: ms(raw.connect), perTry: ms(raw.perTry), total: ms(raw.total) };
}

function toRetry(raw: Json): RetryConfig {
  const backoff = raw.backoff as Json;
  const retryAfter = raw.retryAfter as Json;
  const budget = raw.budget as Json;
  return {
    maxRetries: raw.maxRetries as number,
    retryOn: raw.retryOn as Condition[],
    backoff: { base: ms(backoff.base), max: ms(backoff.max) },
    retryAfter: { honor: retryAfter.honor as boolean, max: ms(retryAfter.max) },
    methods: raw.methods as RetryConfig['methods'],
    budget: { ratio: budget.ratio as number, minPerSecond: budget.minPerSecond as number },
    bufferLimit: bytes(raw.bufferLimit),
  };
}

function toRateLimit(raw: unknown): RateLimitConfig | null {
  if (!isObject(raw)) return null;
  const merged = mergeDeep(DEFAULTS.rateLimit, raw) as Json;
  const rate = merged.rate === undefined ? null : perSecond(merged.rate);
  const queue = merged.queue as Json;
  const key = String(merged.key);
  return {
    rate,
    burst: (merged.burst as number | undefined) ?? Math.max(1, Math.ceil(rate ?? 1)),
    maxConcurrent: (merged.maxConcurrent as number | null | undefined) ?? null,
    queue: { size: queue.size as number, timeout: ms(queue.timeout) },
    key: (key.startsWith('header:') ? key.toLowerCase() : key) as LimitKey,
    shared: merged.shared as boolean,
    mode: merged.mode as RateLimitConfig['mode'],
  };
}

function toPolicies(raw: Json): PoliciesConfig {
  return {
    timeouts: toTimeouts(raw.timeouts as Json),
    retry: toRetry(raw.retry as Json),
    rateLimit: toRateLimit(raw.rateLimit),
    errors: { normalize: (raw.errors as Json).normalize as PoliciesConfig['errors']['normalize'], providerRules: (raw.errors as Json).providerRules as PoliciesConfig['errors']['providerRules'] },
  };
}

function headerOf(selector: unknown): string | null {
  return typeof selector === 'string' ? selector.slice('header:'.length).toLowerCase() : null;
}

/** The built-in breaker settings, for forward-proxy targets that have no upstream block. */
export function defaultCircuitBreaker(): CircuitBreakerConfig {
  return deepFreeze(toCircuitBreaker(mergeDeep(DEFAULTS.upstream.circuitBreaker, {}) as Json, {}));
}

/** The breaker's settings; `maxOpenFor` left unset is the larger of its default and `openFor` (an `openFor: 30s` of old stays 30 s). */
function toCircuitBreaker(cb: Json, raw: Json): CircuitBreakerConfig {
  const openFor = ms(cb.openFor);
  const shedding = cb.shedding as Json;
  return {
    failureRate: cb.failureRate as number,
    minimumRequests: cb.minimumRequests as number,
    window: ms(cb.window),
    openFor,
    maxOpenFor: raw.maxOpenFor === undefined ? Math.max(ms(cb.maxOpenFor), openFor) : ms(cb.maxOpenFor),
    hold: ms(cb.hold),
    shedding: { enabled: shedding.enabled as boolean, k: shedding.k as number },
    failOn: cb.failOn as Condition[],
    mode: cb.mode as CircuitBreakerConfig['mode'],
  };
}

function toUpstream(name: string, raw: RawUpstream, baseDir: string): UpstreamConfig {
  const merged = mergeDeep(DEFAULTS.upstream, raw) as Json;
  const pool = merged.pool as Json;
  const tls = merged.tls as Json;
  const cb = merged.circuitBreaker as Json;
  const pacing = merged.pacing as Json;
  const aimd = pacing.aimd as Json;
  const circuitBreaker = toCircuitBreaker(cb, (isObject(raw.circuitBreaker) ? raw.circuitBreaker : {}) as Json);
  const pacingConfig: PacingConfig = {
    enabled: pacing.enabled as boolean,
    headers: pacing.headers as PacingConfig['headers'],
    scope: headerOf(pacing.scope),
    key: headerOf(pacing.key),
    resetFormat: pacing.resetFormat as PacingConfig['resetFormat'],
    engageBelow: fraction(pacing.engageBelow),
    reserve: fraction(pacing.reserve),
    minRate: perSecond(pacing.minRate),
    maxWait: ms(pacing.maxWait),
    mode: (pacing.mode as PacingConfig['mode'] | undefined) ?? 'enforce',
    replicas: pacing.replicas as number,
    shared: pacing.shared as boolean,
    aimd: { decrease: aimd.decrease as number, increaseBy: perSecond(aimd.increaseBy), increaseEvery: ms(aimd.increaseEvery) },
  };
  const upstreamTls = {
    ca: typeof tls.ca === 'string' ? must(readCa(tls.ca, baseDir)) : null,
    insecureSkipVerify: tls.insecureSkipVerify as boolean,
  };
  return {
    name,
    url: raw.url,
    pool: { maxSockets: pool.maxSockets as number, keepAlive: pool.keepAlive as boolean },
    tls: upstreamTls,
    circuitBreaker,
    pacing: pacingConfig,
    cooldownMax: ms(merged.cooldownMax),
    errorRules: (raw.errorRules ?? []).map((rule) => ({
      when: { status: rule.when.status ?? null, code: rule.when.code ?? null, header: rule.when.header ?? null, message: rule.when.message ?? null },
      as: rule.as !== undefined ? Number(rule.as) : null,
      retryable: rule.retryable ?? null,
      breakerFailure: rule.breakerFailure ?? null,
      responsibility: rule.responsibility ?? null,
    })),
    failover: (raw.failover ?? []).map((target, index) => ({
      name: `${name}/${target.name ?? index + 1}`,
      url: target.url,
      headers: toHeaderEdits(target.headers),
      tls: target.tls ? { ca: typeof target.tls.ca === 'string' ? must(readCa(target.tls.ca, baseDir)) : null, insecureSkipVerify: target.tls.insecureSkipVerify ?? false } : upstreamTls,
    })),
  };
}

function toStale(raw: RawRoute): StaleConfig | null {
  const stale = raw.fallback?.stale;
  if (!stale) return null;
  const merged = mergeDeep(DEFAULTS.stale, stale) as Json;
  return { maxStale: ms(merged.maxStale), maxEntries: merged.maxEntries as number, maxEntryBytes: bytes(merged.maxEntryBytes), maxBytes: bytes(merged.maxBytes) };
}

function toHeaderEdits(raw: unknown): HeaderEditsConfig {
  const edits = isObject(raw) ? raw : {};
  return {
    set: { ...((edits.set as Record<string, string> | undefined) ?? {}) },
    remove: ((edits.remove as string[] | undefined) ?? []).map((name) => name.toLowerCase()),
  };
}

function toRoute(raw: RawRoute, defaults: unknown): RouteConfig {
  const policies = toPolicies(
    effectivePolicies([
      { path: [], value: raw },
      { path: [], value: defaults },
    ]),
  );
  const match = mergeDeep(DEFAULTS.route.match, raw.match ?? {}) as Json;
  return {
    name: raw.name,
    match: {
      pathPrefix: match.pathPrefix as string,
      host: typeof match.host === 'string' ? match.host.toLowerCase() : null,
      methods: (match.methods as string[] | null) ?? null,
    },
    stripPrefix: raw.stripPrefix ?? DEFAULTS.route.stripPrefix,
    upstream: raw.upstream ?? null,
    clientOverrides: raw.clientOverrides ?? DEFAULTS.route.clientOverrides,
    priority: raw.priority ?? null,
    headers: { request: toHeaderEdits(raw.headers?.request), response: toHeaderEdits(raw.headers?.response) },
    keyHeaders: (raw.keyHeaders ?? DEFAULTS.keyHeaders).map((name) => name.toLowerCase()),
    fallback: { stale: toStale(raw) },
    ...policies,
  };
}

function toPriorities(raw: ConfigFile['priorities']): Config['priorities'] {
  if (!raw) return null;
  return {
    header: (raw.header ?? DEFAULTS.priorities.header).toLowerCase(),
    default: raw.default,
    classes: raw.classes.map((entry) => ({ name: entry.name, quotaFloor: entry.quotaFloor === undefined ? null : fraction(entry.quotaFloor) })),
    promoteAfterMs: raw.promoteAfter === undefined ? null : ms(raw.promoteAfter),
  };
}

function toTracing(raw: ConfigFile['tracing']): Config['tracing'] {
  return {
    enabled: raw?.enabled ?? DEFAULTS.tracing.enabled,
    endpoint: raw?.endpoint ?? null,
    protocol: raw?.protocol ?? null,
    serviceName: raw?.serviceName ?? null,
    sampleRatio: raw?.sampleRatio ?? DEFAULTS.tracing.sampleRatio,
  };
}

/** Builds the frozen {@link Config} from a file that passed the schema and {@link crossCheck}. */
export function resolveConfig(file: ConfigFile, baseDir: string): Config {
  const upstreams: Record<string, UpstreamConfig> = {};
  for (const [name, raw] of Object.entries(file.upstreams ?? {})) upstreams[name] = toUpstream(name, raw, baseDir);

  const listen = mergeDeep(DEFAULTS.listen, file.listen) as Config['listen'];
  const admin = mergeDeep(DEFAULTS.admin, file.admin) as Config['admin'];
  const logging = mergeDeep(DEFAULTS.logging, file.logging) as Config['logging'];
  const limits = mergeDeep(DEFAULTS.limits, file.limits) as Json;
  const shutdown = mergeDeep(DEFAULTS.shutdown, file.shutdown) as Json;
  const forwardProxy = mergeDeep(DEFAULTS.forwardProxy, file.forwardProxy) as Json;
  const intercept = forwardProxy.intercept as Json | null;

  const config: Config = {
    version: 1,
    listen: { host: listen.host, port: listen.port, serverNames: listen.serverNames.map((name) => name.toLowerCase()), allowOrigins: listen.allowOrigins.map((origin) => origin.toLowerCase()) },
    admin: { host: admin.host, port: admin.port, token: adminToken(admin.token, admin.tokenFile, baseDir), tokenFile: admin.tokenFile },
    logging: { level: logging.level, accessLog: logging.accessLog },
    tracing: toTracing(file.tracing),
    priorities: toPriorities(file.priorities),
    observability: { errorJournal: { size: file.observability?.errorJournal?.size ?? DEFAULTS.observability.errorJournal.size } },
    limits: { maxBodySize: bytes(limits.maxBodySize), maxHeaderSize: bytes(limits.maxHeaderSize), clientBodyTimeout: ms(limits.clientBodyTimeout) },
    shutdown: { drainTimeout: ms(shutdown.drainTimeout) },
    defaults: toPolicies(effectivePolicies([{ path: [], value: file.defaults as RawPolicies | undefined }])),
    upstreams,
    routes: file.routes.map((route) => toRoute(route, file.defaults)),
    redis: isObject(file.redis) ? toRedis(mergeDeep(DEFAULTS.redis, file.redis) as Json, baseDir) : null,
    forwardProxy: {
      enabled: forwardProxy.enabled as boolean,
      allowHosts: (forwardProxy.allowHosts as string[]).map((host) => host.toLowerCase()),
      allowPorts: [...(forwardProxy.allowPorts as number[])],
      denyPrivateNetworks: forwardProxy.denyPrivateNetworks as boolean,
      mode: forwardProxy.mode as ForwardProxyConfig['mode'],
      callers: toCallers(forwardProxy),
      connect: { mode: (forwardProxy.connect as Json).mode as 'tunnel' | 'intercept' },
      intercept:
        intercept && (forwardProxy.connect as Json).mode === 'intercept'
          ? {
              caCert: must(readCa(intercept.caCert as string, baseDir)),
              caKeyFile: path.resolve(baseDir, intercept.caKey as string),
              hosts: (intercept.hosts as string[]).map((host) => host.toLowerCase()),
              upstreamCa: typeof intercept.upstreamCa === 'string' ? must(readCa(intercept.upstreamCa, baseDir)) : null,
            }
          : null,
    },
  };
  return deepFreeze(config);
}
