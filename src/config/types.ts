/**
 * The resolved config's types, by name: each is what resolve.ts builds for
 * its part of the file (inferred there, so the schema, the defaults and the
 * resolver are the only places a key is declared), read-only at every
 * depth. What each key means is in the schema's descriptions (schema*.ts,
 * `breakwater schema`) and SPEC §3.
 */
import type { resolveConfig } from './resolve.js';
import type { LOG_LEVELS, NORMALIZE_MODES, POLICY_MODES } from './defaults.js';

export type { Condition, LimitKey } from './defaults.js';

export type LogLevel = (typeof LOG_LEVELS)[number];
export type NormalizeMode = (typeof NORMALIZE_MODES)[number];
/** SPEC §19.2: `report` decides as `enforce` would, but lets the request go on, flagged and counted. */
export type PolicyMode = (typeof POLICY_MODES)[number];

export type Config = ReturnType<typeof resolveConfig>;
export type RouteConfig = Config['routes'][number];
export type PoliciesConfig = Config['defaults'];
export type TimeoutsConfig = PoliciesConfig['timeouts'];
export type RetryConfig = PoliciesConfig['retry'];
export type RateLimitConfig = NonNullable<PoliciesConfig['rateLimit']>;
export type ErrorsConfig = PoliciesConfig['errors'];
export type StaleConfig = NonNullable<RouteConfig['fallback']['stale']>;
export type CacheConfig = NonNullable<RouteConfig['cache']>;
export type HeaderEditsConfig = RouteConfig['headers']['request'];
export type UpstreamConfig = Config['upstreams'][string];
export type CircuitBreakerConfig = UpstreamConfig['circuitBreaker'];
export type PacingConfig = UpstreamConfig['pacing'];
export type ErrorRuleConfig = UpstreamConfig['errorRules'][number];
export type CredentialsConfig = NonNullable<UpstreamConfig['credentials']>;
export type FailoverTargetConfig = UpstreamConfig['failover'][number];
export type RedisConfig = NonNullable<Config['redis']>;
export type ForwardProxyConfig = Config['forwardProxy'];
export type ForwardCallerConfig = ForwardProxyConfig['callers'][number];
export type PrioritiesConfig = NonNullable<Config['priorities']>;
export type TracingConfig = Config['tracing'];
