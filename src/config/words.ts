/**
 * The config's word lists (SPEC §3): one source for the schema (its `enum`s
 * and formats), the resolver's types, and the code that reads the words
 * (metrics' method label, retry conditions).
 */

/** Conditions that `retry.retryOn` and `circuitBreaker.failOn` accept besides a status code (SPEC §3). */
export const CONDITION_WORDS = ['5xx', 'gateway-error', 'connect-failure', 'reset', 'timeout'] as const;
export type ConditionWord = (typeof CONDITION_WORDS)[number];
/** A `retryOn` / `failOn` entry: a word, or a status code as a string. */
export type Condition = ConditionWord | `${number}`;

/** The schema's `condition` format, as a type guard for the resolver. */
export function isCondition(text: string): text is Condition {
  return (CONDITION_WORDS as readonly string[]).includes(text) || /^[1-5][0-9][0-9]$/.test(text);
}

/** `rateLimit.key` (SPEC §3): the route, the client's address, or a request header (its name in lower case). */
export type LimitKey = 'route' | 'client-ip' | `header:${string}`;

/** A `limit-key` the schema accepted, typed; a header's name in lower case. */
export function limitKey(text: string): LimitKey {
  return text === 'route' || text === 'client-ip' ? text : `header:${text.slice('header:'.length).toLowerCase()}`;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;
export const NORMALIZE_MODES = ['proxy', 'all', 'off'] as const;
export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'CONNECT'] as const;
export const PACING_HEADERS = ['auto', 'ietf', 'x-ratelimit', 'openai', 'shopify', 'salesforce'] as const;
export const RESET_FORMATS = ['auto', 'epoch', 'epoch-ms', 'delta', 'duration'] as const;
export const REDIS_ON_ERROR = ['local', 'allow'] as const;
export const CONNECT_MODES = ['tunnel', 'intercept'] as const;
export const PROVIDER_RULES_MODES = ['auto', 'off'] as const;
export const RESPONSIBILITIES = ['client', 'upstream'] as const;
export const TRACE_PROTOCOLS = ['http/protobuf', 'http/json'] as const;
/** SPEC §19.2: `report` decides as `enforce` would, but lets the request go on, flagged and counted. */
export const POLICY_MODES = ['enforce', 'report'] as const;
