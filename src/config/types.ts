/**
 * The validated config, as every other module reads it (SPEC §3). Property
 * names are the YAML keys, so a path in an error message is a path here too.
 * Units are already converted: durations in milliseconds, sizes in bytes,
 * rates in events per second, shares as fractions in [0, 1]. Defaults are
 * merged, so nothing is optional; "none" is `null`. The object is deeply
 * frozen and nothing downstream re-parses it.
 */
import type { PROVIDER_RULES_MODES, CONNECT_MODES, ConditionWord, LOG_LEVELS, NORMALIZE_MODES, PACING_HEADERS, REDIS_ON_ERROR, RESET_FORMATS } from './defaults.js';

/** A word of one of the lists in defaults.ts (the schema's enums are built from the same lists). */
type Word<L extends readonly string[]> = L[number];

/** A `retryOn`/`failOn` word or a status code as written (`"429"`). */
export type Condition = ConditionWord | `${number}`;

export type LogLevel = Word<typeof LOG_LEVELS>;
export type NormalizeMode = Word<typeof NORMALIZE_MODES>;
/** `route`, `client-ip` or `header:<name>` (the name lower-cased). */
export type LimitKey = 'route' | 'client-ip' | `header:${string}`;

export interface TimeoutsConfig {
  /** TCP+TLS connect per attempt, ms. Default 2 s. */
  readonly connect: number;
  /** Until response headers, per attempt, ms. Default 10 s. */
  readonly perTry: number;
  /** Whole request including retries and backoff, ms. Default 30 s. */
  readonly total: number;
}

export interface RetryConfig {
  /** Retries after the first attempt; 0 disables. Default 2. */
  readonly maxRetries: number;
  readonly retryOn: readonly Condition[];
  /** Full-jitter backoff bounds, ms. Defaults 100 ms and 5 s. */
  readonly backoff: { readonly base: number; readonly max: number };
  /** `max` in ms. Defaults true and 30 s. */
  readonly retryAfter: { readonly honor: boolean; readonly max: number };
  /** `idempotent`, or an explicit list of upper-case methods. */
  readonly methods: 'idempotent' | readonly string[];
  /** Linkerd-style budget over a 10 s window. Defaults 0.2 and 10/s. */
  readonly budget: { readonly ratio: number; readonly minPerSecond: number };
  /** Request bodies up to this many bytes are buffered for replay. Default 1 MiB. */
  readonly bufferLimit: number;
}

export interface RateLimitConfig {
  /** Tokens per second, or null for a concurrency-only limit. */
  readonly rate: number | null;
  /** Bucket size (requests at once). Default: one second of `rate`, at least 1. */
  readonly burst: number;
  /** In-flight cap, or null for none. */
  readonly maxConcurrent: number | null;
  /** `timeout` in ms. Defaults 100 and 2 s. */
  readonly queue: { readonly size: number; readonly timeout: number };
  readonly key: LimitKey;
  readonly shared: boolean;
  /** SPEC §19.2: `report` lets a request the limit would hold go on, flagged and counted. */
  readonly mode: PolicyMode;
}

export type PolicyMode = 'enforce' | 'report';

export interface ErrorsConfig {
  readonly normalize: NormalizeMode;
  /** `off`: the built-in provider rules (SPEC §14) do not apply; an upstream's errorRules still do. */
  readonly providerRules: Word<typeof PROVIDER_RULES_MODES>;
}

/** The policies that `defaults` holds and a route overrides key by key. */
export interface PoliciesConfig {
  readonly timeouts: TimeoutsConfig;
  readonly retry: RetryConfig;
  readonly rateLimit: RateLimitConfig | null;
  readonly errors: ErrorsConfig;
}

export interface CircuitBreakerConfig {
  /** Percent of the last `minimumRequests` calls that failed (strictly above opens; 100 never). Default 90. */
  readonly failureRate: number;
  /** Default 20. */
  readonly minimumRequests: number;
  /** ms. Default 10 s. */
  readonly window: number;
  /** ms: the first open period. Default 250 ms. */
  readonly openFor: number;
  /** ms: the longest open period. Default max(1 s, openFor). */
  readonly maxOpenFor: number;
  /** ms: how long a call may wait for a young open circuit; 0 refuses at once. Default 2 s. */
  readonly hold: number;
  /** Adaptive throttling of a partly failing upstream. Defaults enabled, k 2. */
  readonly shedding: { readonly enabled: boolean; readonly k: number };
  readonly failOn: readonly Condition[];
  /** SPEC §19.2: `report` sends a call it would refuse or hold, flagged and counted, and leaves its outcome out. */
  readonly mode: PolicyMode;
}

export interface PacingConfig {
  readonly enabled: boolean;
  readonly headers: Word<typeof PACING_HEADERS>;
  /** Header name (lower case) that splits one upstream's quotas, or null. */
  readonly scope: string | null;
  /** Header name (lower case) that owns a quota, or null. */
  readonly key: string | null;
  readonly resetFormat: Word<typeof RESET_FORMATS>;
  /** Fractions in [0, 1]. Defaults 0.5 and 0.05. */
  readonly engageBelow: number;
  readonly reserve: number;
  /** Per second. Default 0.2. */
  readonly minRate: number;
  /** ms. Default 10 s. */
  readonly maxWait: number;
  /** SPEC §19.2: `report` sends at once a request it would delay or refuse, flagged WOULD_PACE; its slot is still taken. */
  readonly mode: PolicyMode;
  readonly replicas: number;
  readonly shared: boolean;
  /** `increaseBy` per second, `increaseEvery` ms. */
  readonly aimd: { readonly decrease: number; readonly increaseBy: number; readonly increaseEvery: number };
}

export interface UpstreamConfig {
  /** The key under `upstreams`. */
  readonly name: string;
  /** The base URL as written, validated (http or https, no query). */
  readonly url: string;
  readonly pool: { readonly maxSockets: number; readonly keepAlive: boolean };
  /** `ca`: PEM text (read from the file at load when a path was given), or null. */
  readonly tls: { readonly ca: string | null; readonly insecureSkipVerify: boolean };
  readonly circuitBreaker: CircuitBreakerConfig;
  readonly pacing: PacingConfig;
  /** ms: the longest a Retry-After takes a target out of rotation. Default 5 min. */
  readonly cooldownMax: number;
  /** The upstream's own provider rules (SPEC §14), tried before the built-in ones. */
  readonly errorRules: readonly ErrorRuleConfig[];
  /** More targets of the same API, in order (SPEC §8.1); empty: the upstream is its only target. */
  readonly failover: readonly FailoverTargetConfig[];
}

/** A failover target: its own pool, breaker and pacer, with the upstream's settings. */
export interface FailoverTargetConfig {
  /** `<upstream>/<name>`, or `<upstream>/<position>` (1-based) when unnamed. */
  readonly name: string;
  readonly url: string;
  /** Request headers for this target only, applied after the route's. */
  readonly headers: HeaderEditsConfig;
  /** Its own, or the upstream's when not given. */
  readonly tls: { readonly ca: string | null; readonly insecureSkipVerify: boolean };
}

/** `routes[].fallback.stale` (SPEC §8.2). */
export interface StaleConfig {
  /** ms: the oldest a stored answer may be when served. Default 10 min. */
  readonly maxStale: number;
  readonly maxEntries: number;
  /** Bytes: larger bodies are never stored. */
  readonly maxEntryBytes: number;
  /** Bytes: all stored bodies of the route. */
  readonly maxBytes: number;
}

export interface HeaderEditsConfig {
  /** Header name → value; names as written. */
  readonly set: Readonly<Record<string, string>>;
  /** Header names, lower case. */
  readonly remove: readonly string[];
}

export interface RouteConfig extends PoliciesConfig {
  readonly name: string;
  readonly match: {
    /** Starts with `/`; matched on segment boundaries. Default `/`. */
    readonly pathPrefix: string;
    /** Host pattern (lower case), `*.` wildcard allowed, or null for any. */
    readonly host: string | null;
    readonly methods: readonly string[] | null;
  };
  readonly stripPrefix: boolean;
  /** An upstream's name, or null for a forward-proxy route whose target is the request's own. */
  readonly upstream: string | null;
  readonly clientOverrides: boolean;
  /** The route's priority class (SPEC §13), or null: the header's, else the default. */
  readonly priority: string | null;
  readonly headers: { readonly request: HeaderEditsConfig; readonly response: HeaderEditsConfig };
  /** Lower-cased request headers hashed into a stored answer's key (SPEC §8.2). */
  readonly keyHeaders: readonly string[];
  /** Stale answers while the upstream fails (SPEC §8.2); null: none. */
  readonly fallback: { readonly stale: StaleConfig | null };
}

export interface RedisConfig {
  readonly url: string;
  readonly onError: Word<typeof REDIS_ON_ERROR>;
  /** ms: the longest a request waits for one Redis command (SPEC §9). Default 250. */
  readonly timeout: number;
  /** A Sentinel group instead of `url` (SPEC §9); the master is asked of the sentinels and followed across failovers. */
  readonly sentinel: {
    readonly name: string;
    readonly sentinels: readonly { readonly host: string; readonly port: number }[];
    readonly password: string | null;
    readonly sentinelPassword: string | null;
  } | null;
  /** A Redis Cluster instead of `url` (SPEC §9): seed nodes; the rest are discovered. */
  readonly cluster: { readonly nodes: readonly { readonly host: string; readonly port: number }[] } | null;
  /** Apply to every form; with `url` the URL may carry them too (the URL's own win). */
  readonly username: string | null;
  readonly password: string | null;
  readonly db: number | null;
  /** TLS to Redis (also `rediss://`); `ca` is PEM text read at load. */
  readonly tls: { readonly ca: string | null; readonly insecureSkipVerify: boolean } | null;
}

/** One caller's egress list (SPEC §19.3): who it is, and the hosts and ports it may reach. */
export interface ForwardCallerConfig {
  readonly name: string;
  /** Every key given must hold. Header names lower case; source CIDRs as written. */
  readonly match: { readonly header: Readonly<Record<string, string>> | null; readonly source: readonly string[] | null; readonly proxyUser: string | null };
  readonly allowHosts: readonly string[];
  readonly allowPorts: readonly number[];
  readonly mode: PolicyMode;
}

export interface ForwardProxyConfig {
  readonly enabled: boolean;
  /** Lower case; exact names, `*.` wildcards and IP literals. */
  readonly allowHosts: readonly string[];
  readonly allowPorts: readonly number[];
  readonly denyPrivateNetworks: boolean;
  /** SPEC §19.2: `report` forwards a request its allow-list would refuse, flagged WOULD_DENY (private addresses stay refused). */
  readonly mode: PolicyMode;
  /** SPEC §19.3: per-caller lists, in order; the first match replaces the global list. */
  readonly callers: readonly ForwardCallerConfig[];
  readonly connect: { readonly mode: Word<typeof CONNECT_MODES> };
  /** Set when `connect.mode` is intercept (checked at load: files readable, key owner-only and matching). */
  readonly intercept: {
    /** PEM. */
    readonly caCert: string;
    /** Absolute path of the key file; the key itself is read by the interceptor, never kept in the config. */
    readonly caKeyFile: string;
    /** Lower case: names, `*.` wildcards, IP literals. */
    readonly hosts: readonly string[];
    /** Extra roots (PEM) for the re-originated TLS, or null: the system roots only. */
    readonly upstreamCa: string | null;
  } | null;
}

/** SPEC §13: priority classes, highest first. */
export interface PrioritiesConfig {
  /** Lower case. */
  readonly header: string;
  readonly default: string;
  readonly classes: readonly { readonly name: string; /** 0..1, or null. */ readonly quotaFloor: number | null }[];
  /** The starvation guard: a waiter released as the highest class after this long; null: off. */
  readonly promoteAfterMs: number | null;
}

/** SPEC §11. A key the file leaves out is null: the OTEL_* variables, then the defaults, decide (observe/tracing.ts). */
export interface TracingConfig {
  readonly enabled: boolean;
  readonly endpoint: string | null;
  readonly protocol: 'http/protobuf' | 'http/json' | null;
  readonly serviceName: string | null;
  readonly sampleRatio: number;
}

export interface Config {
  readonly version: 1;
  /** SPEC §2, §20.1: serverNames and allowOrigins lower-cased; "*" turns the check off. */
  readonly listen: { readonly host: string; readonly port: number; readonly serverNames: readonly string[]; readonly allowOrigins: readonly string[] };
  /** SPEC §19.1: `token` is the literal, or the content of `tokenFile` (trailing whitespace dropped); null: none. */
  readonly admin: { readonly host: string; readonly port: number; readonly token: string | null; readonly tokenFile: string | null };
  readonly logging: { readonly level: LogLevel; readonly accessLog: boolean };
  readonly tracing: TracingConfig;
  /** SPEC §13; null: one class, as before. */
  readonly priorities: PrioritiesConfig | null;
  /** SPEC §12: how many failed requests `GET /errors` keeps (0: none). */
  readonly observability: { readonly errorJournal: { readonly size: number } };
  /** Bytes. Defaults 10 MiB and 16 KiB; clientBodyTimeout in ms (default 30 s, SPEC §20.4). */
  readonly limits: { readonly maxBodySize: number; readonly maxHeaderSize: number; readonly clientBodyTimeout: number };
  /** ms. Default 20 s. */
  readonly shutdown: { readonly drainTimeout: number };
  /** The file's `defaults` merged over the built-in ones. */
  readonly defaults: PoliciesConfig;
  readonly upstreams: Readonly<Record<string, UpstreamConfig>>;
  readonly routes: readonly RouteConfig[];
  readonly redis: RedisConfig | null;
  readonly forwardProxy: ForwardProxyConfig;
}

/** `upstreams.*.errorRules[]` (SPEC §14), as resolved. */
export interface ErrorRuleConfig {
  readonly when: { readonly status: number | null; readonly code: string | null; readonly header: Readonly<Record<string, string>> | null; readonly message: string | null };
  readonly as: number | null;
  readonly retryable: boolean | null;
  readonly breakerFailure: boolean | null;
  readonly responsibility: 'client' | 'upstream' | null;
}
