/**
 * From the file as written to the {@link Config} the rest of the code reads:
 * the checks no schema can express (references between keys, limits between
 * merged values), then defaults merged key by key, units converted and the
 * result frozen.
 *
 * {@link crossCheck} runs even when the schema found problems, so one run
 * reports everything it can; it is written defensively for that reason and
 * skips what it cannot read. {@link resolveConfig} runs only on a file that
 * passed every check.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { DEFAULTS, type ConfigFile, type RawPolicies, type RawRoute, type RawUpstream } from './schema.js';
import type { Issue, PathSegment } from './problems.js';
import { isHostPattern } from './formats.js';
import { suggest } from './suggest.js';
import { formatDuration, parseDuration, parseRate, parseShare, parseSize, type Parsed } from './units.js';
import type {
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
} from './types.js';

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Key-by-key merge: maps merge recursively, anything else (lists, scalars, null) replaces. */
export function mergeDeep(base: unknown, override: unknown): unknown {
  if (override === undefined) return base;
  if (!isObject(base) || !isObject(override)) return override;
  const out: Json = { ...base };
  for (const [key, value] of Object.entries(override)) out[key] = mergeDeep(base[key], value);
  return out;
}

function getIn(value: unknown, keys: readonly string[]): unknown {
  let node = value;
  for (const key of keys) node = isObject(node) ? node[key] : undefined;
  return node;
}

function must<T>(parsed: Parsed<T>): T {
  if (!parsed.ok) throw new Error(`unit parse after validation: ${parsed.message}`);
  return parsed.value;
}

const ms = (text: unknown) => must(parseDuration(String(text)));
const bytes = (text: unknown) => must(parseSize(String(text)));
const perSecond = (text: unknown) => must(parseRate(String(text)));
const fraction = (text: unknown) => must(parseShare(String(text)));

function tryMs(text: unknown): number | undefined {
  if (typeof text !== 'string') return undefined;
  const parsed = parseDuration(text);
  return parsed.ok ? parsed.value : undefined;
}

const BUILTIN_POLICIES = {
  timeouts: DEFAULTS.timeouts,
  retry: DEFAULTS.retry,
  rateLimit: null,
  errors: DEFAULTS.errors,
};

/** The raw policy layers of one route, most specific first, with where each sits in the file. */
interface Layer {
  readonly path: readonly PathSegment[];
  readonly value: unknown;
}

function effectivePolicies(layers: readonly Layer[]): Json {
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

/** The path of the most specific layer that sets `keys`, for pointing at a merged value's origin. */
function originOf(layers: readonly Layer[], keys: readonly string[]): PathSegment[] | undefined {
  for (const layer of layers) {
    if (getIn(layer.value, keys) !== undefined) return [...layer.path, ...keys];
  }
  return undefined;
}

function checkPolicies(layers: readonly Layer[], hasRedis: boolean, issues: Issue[]): void {
  const policies = effectivePolicies(layers);

  const perTry = tryMs(getIn(policies, ['timeouts', 'perTry']));
  const total = tryMs(getIn(policies, ['timeouts', 'total']));
  if (perTry !== undefined && total !== undefined && perTry > total) {
    const at = originOf(layers, ['timeouts', 'perTry']) ?? originOf(layers, ['timeouts', 'total']);
    if (at) issues.push({ path: at, message: `perTry (${formatDuration(perTry)}) must not be longer than total (${formatDuration(total)}): an attempt cannot outlast the request` });
  }

  const base = tryMs(getIn(policies, ['retry', 'backoff', 'base']));
  const max = tryMs(getIn(policies, ['retry', 'backoff', 'max']));
  if (base !== undefined && max !== undefined && base > max) {
    const at = originOf(layers, ['retry', 'backoff', 'base']) ?? originOf(layers, ['retry', 'backoff', 'max']);
    if (at) issues.push({ path: at, message: `backoff.base (${formatDuration(base)}) must not be above backoff.max (${formatDuration(max)})` });
  }

  const rateLimit = policies.rateLimit;
  if (isObject(rateLimit)) {
    const at = originOf(layers, ['rateLimit']);
    if (at && rateLimit.rate === undefined && (rateLimit.maxConcurrent === undefined || rateLimit.maxConcurrent === null)) {
      issues.push({ path: at, message: 'a rate limit needs rate (like 25/s), maxConcurrent, or both' });
    }
    if (rateLimit.rate === undefined && rateLimit.burst !== undefined) {
      const burstAt = originOf(layers, ['rateLimit', 'burst']);
      if (burstAt) issues.push({ path: burstAt, message: 'burst needs a rate: it is the size of the token bucket that rate refills' });
    }
    if (rateLimit.shared === true && !hasRedis) {
      const sharedAt = originOf(layers, ['rateLimit', 'shared']);
      if (sharedAt) issues.push({ path: sharedAt, message: 'a shared rate limit is kept in Redis: add a redis section (redis: { url: redis://host:6379 })' });
    }
  }
}

function isPem(text: string): boolean {
  return text.includes('-----BEGIN ');
}

function readCa(ca: string, baseDir: string): Parsed<string> {
  if (isPem(ca)) return { ok: true, value: ca };
  const file = path.resolve(baseDir, ca);
  try {
    const text = readFileSync(file, 'utf8');
    if (!isPem(text)) return { ok: false, message: `${file} holds no PEM certificate` };
    return { ok: true, value: text };
  } catch (error) {
    return { ok: false, message: `cannot read the CA file ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}` };
  }
}

/** `forwardProxy.intercept` when `connect.mode: intercept`: everything needed, readable, the key owner-only and matching the certificate. */
function checkRedis(redis: Json, baseDir: string, issues: Issue[]): void {
  const forms = (['sentinel', 'cluster'] as const).filter((form) => isObject(redis[form]));
  if (forms.length === 2) issues.push({ path: ['redis', 'cluster'], message: 'redis names a sentinel group and a cluster: keep one of them' });
  if (isObject(redis.cluster) && typeof redis.db === 'number' && redis.db !== 0) {
    issues.push({ path: ['redis', 'db'], message: `a Redis Cluster has only database 0 (db is ${redis.db}): remove db` });
  }
  const ca = getIn(redis, ['tls', 'ca']);
  if (typeof ca === 'string' && ca !== '') {
    const read = readCa(ca, baseDir);
    if (!read.ok) issues.push({ path: ['redis', 'tls', 'ca'], message: read.message });
  }
}

function checkIntercept(intercept: unknown, baseDir: string, issues: Issue[]): void {
  const at = (...keys: PathSegment[]): PathSegment[] => ['forwardProxy', 'intercept', ...keys];
  if (!isObject(intercept)) {
    issues.push({ path: ['forwardProxy', 'connect', 'mode'], message: 'intercept needs forwardProxy.intercept: { caCert, caKey, hosts } (make them with "breakwater ca create")' });
    return;
  }
  let cert: X509Certificate | undefined;
  if (typeof intercept.caCert !== 'string') issues.push({ path: at(), message: 'caCert is missing: the CA certificate apps trust (breakwater ca create writes ca.crt)' });
  else {
    const read = readCa(intercept.caCert, baseDir);
    if (!read.ok) issues.push({ path: at('caCert'), message: read.message });
    else {
      try {
        cert = new X509Certificate(read.value);
        if (!cert.ca) issues.push({ path: at('caCert'), message: 'this certificate is not a CA (basicConstraints CA:FALSE): it cannot sign leaves' });
      } catch (error) {
        issues.push({ path: at('caCert'), message: `not a readable certificate: ${(error as Error).message}` });
      }
    }
  }
  if (typeof intercept.caKey !== 'string') issues.push({ path: at(), message: 'caKey is missing: the CA private key file (breakwater ca create writes ca.key)' });
  else {
    const key = readCaKey(intercept.caKey, baseDir);
    if (!key.ok) issues.push({ path: at('caKey'), message: key.message });
    else if (key.value.asymmetricKeyType !== 'ec' || key.value.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
      issues.push({
        path: at('caKey'),
        message: `leaves are signed with ECDSA P-256: this is a ${key.value.asymmetricKeyType ?? 'unknown'}${key.value.asymmetricKeyDetails?.namedCurve ? ` ${key.value.asymmetricKeyDetails.namedCurve}` : ''} key (make a CA with "breakwater ca create")`,
      });
    } else if (cert && !cert.checkPrivateKey(key.value)) issues.push({ path: at('caKey'), message: 'this key does not belong to caCert' });
  }
  const hosts = intercept.hosts;
  if (!Array.isArray(hosts) || hosts.length === 0)
    issues.push({ path: at(...(Array.isArray(hosts) ? ['hosts'] : [])), message: 'hosts is empty: list the CONNECT targets to intercept (others are tunnelled)' });
  else
    hosts.forEach((host, i) => {
      if (typeof host === 'string' && !isHostPattern(host)) issues.push({ path: at('hosts', i), message: `"${host}": a certificate names a host, not a port: write the host alone` });
    });
  if (typeof intercept.upstreamCa === 'string') {
    const read = readCa(intercept.upstreamCa, baseDir);
    if (!read.ok) issues.push({ path: at('upstreamCa'), message: read.message });
  }
}

/** The CA key: a file (never inline), owner-only, a private key. */
export function readCaKey(keyFile: string, baseDir: string): Parsed<KeyObject> {
  if (isPem(keyFile)) return { ok: false, message: 'write the path of the key file, not the key: a key inline in the config would be shown and copied with it' };
  const file = path.resolve(baseDir, keyFile);
  try {
    const mode = statSync(file).mode & 0o777;
    if ((mode & 0o077) !== 0) return { ok: false, message: `${file} is readable by others (mode ${mode.toString(8).padStart(4, '0')}): run chmod 600 ${file}` };
    return { ok: true, value: createPrivateKey(readFileSync(file)) };
  } catch (error) {
    const { code, syscall } = error as NodeJS.ErrnoException;
    return { ok: false, message: syscall ? `cannot read the CA key ${file}: ${code}` : `${file} holds no private key` };
  }
}

/** Checks between keys that a schema cannot express. Defensive: `file` may have failed the schema. */
export function crossCheck(file: unknown, baseDir: string): Issue[] {
  const issues: Issue[] = [];
  if (!isObject(file)) return issues;
  const upstreams = isObject(file.upstreams) ? file.upstreams : {};
  const routes = Array.isArray(file.routes) ? file.routes : [];
  const hasRedis = isObject(file.redis);
  const forwardProxyEnabled = getIn(file, ['forwardProxy', 'enabled']) === true;

  checkPolicies([{ path: ['defaults'], value: file.defaults }], hasRedis, issues);

  const firstRouteByName = new Map<string, number>();
  routes.forEach((route: unknown, index) => {
    if (!isObject(route)) return;
    const name = route.name;
    if (typeof name === 'string') {
      const first = firstRouteByName.get(name);
      if (first !== undefined) {
        issues.push({ path: ['routes', index, 'name'], message: `duplicate route name "${name}" (also routes[${first}]): names must be unique, they label metrics and logs` });
      } else {
        firstRouteByName.set(name, index);
      }
    }
    if (typeof route.upstream === 'string' && !(route.upstream in upstreams)) {
      const close = suggest(route.upstream, Object.keys(upstreams));
      const known = Object.keys(upstreams);
      issues.push({
        path: ['routes', index, 'upstream'],
        message: `unknown upstream "${route.upstream}"${close ? `; did you mean "${close}"?` : known.length ? ` (defined: ${known.join(', ')})` : ' (no upstreams are defined)'}`,
      });
    }
    if (route.upstream === undefined && !forwardProxyEnabled) {
      issues.push({
        path: ['routes', index, 'upstream'],
        at: 'parent',
        message: 'is required: only forward-proxy routes (forwardProxy.enabled: true) may omit it',
      });
    }
    checkPolicies(
      [
        { path: ['routes', index], value: route },
        { path: ['defaults'], value: file.defaults },
      ],
      hasRedis,
      issues,
    );
  });

  for (const [name, upstream] of Object.entries(upstreams)) {
    if (!isObject(upstream)) continue;
    const ca = getIn(upstream, ['tls', 'ca']);
    if (typeof ca === 'string' && ca !== '') {
      const read = readCa(ca, baseDir);
      if (!read.ok) issues.push({ path: ['upstreams', name, 'tls', 'ca'], message: read.message });
    }
    const openFor = tryMs(getIn(upstream, ['circuitBreaker', 'openFor']) ?? DEFAULTS.upstream.circuitBreaker.openFor);
    const maxOpenFor = tryMs(getIn(upstream, ['circuitBreaker', 'maxOpenFor']));
    if (openFor !== undefined && maxOpenFor !== undefined && maxOpenFor < openFor) {
      issues.push({ path: ['upstreams', name, 'circuitBreaker', 'maxOpenFor'], message: `maxOpenFor (${formatDuration(maxOpenFor)}) must not be shorter than openFor (${formatDuration(openFor)})` });
    }
    if (getIn(upstream, ['pacing', 'shared']) === true && !hasRedis) {
      issues.push({ path: ['upstreams', name, 'pacing', 'shared'], message: 'shared pacing keeps its state in Redis: add a redis section' });
    }
  }

  if (hasRedis) checkRedis(file.redis as Json, baseDir, issues);

  if (getIn(file, ['forwardProxy', 'connect', 'mode']) === 'intercept') checkIntercept(getIn(file, ['forwardProxy', 'intercept']), baseDir, issues);

  const listenPort = getIn(file, ['listen', 'port']) ?? DEFAULTS.listen.port;
  const adminPort = getIn(file, ['admin', 'port']) ?? DEFAULTS.admin.port;
  if (typeof listenPort === 'number' && listenPort !== 0 && listenPort === adminPort) {
    const at = originOf([{ path: [], value: file }], ['admin', 'port']) ?? originOf([{ path: [], value: file }], ['listen', 'port']);
    if (at) issues.push({ path: at, message: `the admin port and the proxy port are both ${listenPort}: give them different ports` });
  }
  return issues;
}

// ---------------------------------------------------------------------------
// Conversion of a checked file

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
  };
}

function toPolicies(raw: Json): PoliciesConfig {
  return {
    timeouts: toTimeouts(raw.timeouts as Json),
    retry: toRetry(raw.retry as Json),
    rateLimit: toRateLimit(raw.rateLimit),
    errors: { normalize: (raw.errors as Json).normalize as PoliciesConfig['errors']['normalize'] },
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
    replicas: pacing.replicas as number,
    shared: pacing.shared as boolean,
    aimd: { decrease: aimd.decrease as number, increaseBy: perSecond(aimd.increaseBy), increaseEvery: ms(aimd.increaseEvery) },
  };
  return {
    name,
    url: raw.url,
    pool: { maxSockets: pool.maxSockets as number, keepAlive: pool.keepAlive as boolean },
    tls: {
      ca: typeof tls.ca === 'string' ? must(readCa(tls.ca, baseDir)) : null,
      insecureSkipVerify: tls.insecureSkipVerify as boolean,
    },
    circuitBreaker,
    pacing: pacingConfig,
  };
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
    headers: { request: toHeaderEdits(raw.headers?.request), response: toHeaderEdits(raw.headers?.response) },
    ...policies,
  };
}

export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
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
    listen: { host: listen.host, port: listen.port },
    admin: { host: admin.host, port: admin.port },
    logging: { level: logging.level, accessLog: logging.accessLog },
    limits: { maxBodySize: bytes(limits.maxBodySize), maxHeaderSize: bytes(limits.maxHeaderSize) },
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
