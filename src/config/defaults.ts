/**
 * The config's word lists and built-in defaults (SPEC §3), in the file's own
 * notation: one source for the schema (schema.ts attaches them as `enum`s
 * and `default` annotations), the resolver that merges them, and the code
 * that reads the words (metrics' method label, retry conditions).
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
export const PACING_HEADERS = [
  'auto',
  'ietf',
  'x-ratelimit',
  'openai',
  'anthropic',
  'shopify',
  'salesforce',
  'custom',
] as const;
/** The dimensions each `pacing.headers` dialect announces (SPEC §15); null: any name (`auto`, `ietf`). */
export const DIALECT_DIMENSIONS: Readonly<Record<(typeof PACING_HEADERS)[number], readonly string[] | null>> = {
  auto: null,
  ietf: null,
  'x-ratelimit': ['requests'],
  openai: ['requests', 'tokens'],
  anthropic: ['requests', 'tokens', 'input-tokens', 'output-tokens'],
  shopify: ['requests'],
  salesforce: ['requests'],
  custom: [],
};
/** The estimates a cost can be read with (SPEC §15): the request body as the provider counts it. */
export const COST_PRESETS = ['openai', 'anthropic'] as const;
/** `rateLimit.settle` (SPEC §15): keep the estimate, or charge the answer's usage once it ended. */
export const SETTLE_MODES = ['none', 'usage'] as const;
export const RESET_FORMATS = ['auto', 'epoch', 'epoch-ms', 'delta', 'duration', 'rfc3339'] as const;
export const REDIS_ON_ERROR = ['local', 'allow'] as const;
export const CONNECT_MODES = ['tunnel', 'intercept'] as const;
export const PROVIDER_RULES_MODES = ['auto', 'off'] as const;
export const RESPONSIBILITIES = ['client', 'upstream'] as const;
export const TRACE_PROTOCOLS = ['http/protobuf', 'http/json'] as const;
/** SPEC §19.2: `report` decides as `enforce` would, but lets the request go on, flagged and counted. */
export const POLICY_MODES = ['enforce', 'report'] as const;
/** SPEC §18: what `credentials.type` may be. */
export const CREDENTIAL_TYPES = ['bearer', 'header', 'basic', 'oauth2', 'aws-sigv4'] as const;
export const CLIENT_AUTH = ['basic', 'body'] as const;

/**
 * Built-in defaults, in the file's own notation. SPEC §3's example shows the
 * same values; `test/unit/config-resolve.test.ts` keeps the two equal.
 */
export const DEFAULTS = {
  listen: { host: '127.0.0.1', port: 3128, serverNames: [] as string[], allowOrigins: [] as string[] },
  admin: { host: '0.0.0.0', port: 9901, token: null, tokenFile: null },
  logging: { level: 'info', accessLog: true },
  /**
   * `protocol` and `serviceName` unset (null) defer to OTEL_EXPORTER_OTLP_TRACES_PROTOCOL and OTEL_SERVICE_NAME,
   * else http/protobuf and breakwater (observe/tracing.ts).
   */
  tracing: { enabled: false, endpoint: null, protocol: null, serviceName: null, sampleRatio: 1 },
  observability: { errorJournal: { size: 200 } },
  priorities: { header: 'X-Breakwater-Priority' },
  limits: { maxBodySize: '10MiB', maxHeaderSize: '16KiB', clientBodyTimeout: '30s' },
  shutdown: { drainTimeout: '20s' },
  /** `firstByte` and `idle` (SPEC §16): off (null) unless set. */
  timeouts: { connect: '2s', perTry: '10s', total: '30s', firstByte: null, idle: null },
  retry: {
    maxRetries: 3,
    retryOn: ['gateway-error', 'connect-failure', 'reset', '429'],
    backoff: { base: '500ms', max: '5s' },
    retryAfter: { honor: true, max: '30s' },
    methods: 'idempotent',
    budget: { ratio: 0.4, minPerSecond: 10 },
    bufferLimit: '1MiB',
  },
  /**
   * Keys of a `rateLimit` block the file leaves out. SPEC §3 gives no
   * defaults for a rate limit (its example is not a default); these follow
   * NGINX's `limit_req` with a queue: the burst is one second's worth of
   * tokens, no concurrency cap, and a bounded queue with a deadline.
   */
  rateLimit: {
    queue: { size: 100, timeout: '2s' },
    key: 'route',
    shared: false,
    mode: 'enforce',
    cost: null,
    settle: 'none',
  },
  errors: { normalize: 'proxy', providerRules: 'auto' },
  upstream: {
    pool: { maxSockets: 256, keepAlive: true },
    /** SPEC §18: a POST or PATCH without the header gets a UUID, so that it may be retried. */
    idempotencyKeys: { enabled: false, header: 'Idempotency-Key' },
    /** SPEC §18: the keys of `credentials` with a default (each type reads its own). */
    credentials: {
      prefix: '',
      scope: null,
      audience: null,
      clientAuth: 'basic',
      refreshBefore: '30s',
      timeout: '5s',
      unsignedPayload: false,
    },
    tls: { ca: null, insecureSkipVerify: false },
    circuitBreaker: {
      failureRate: 90,
      minimumRequests: 20,
      window: '10s',
      openFor: '250ms',
      maxOpenFor: '1s',
      hold: '2s',
      shedding: { enabled: true, k: 2 },
      failOn: ['5xx', 'timeout', 'connect-failure', 'reset'],
      mode: 'enforce',
    },
    pacing: {
      enabled: false,
      headers: 'auto',
      scope: null,
      key: null,
      resetFormat: 'auto',
      engageBelow: '50%',
      reserve: '5%',
      minRate: '0.2/s',
      maxWait: '10s',
      mode: 'enforce',
      replicas: 1,
      shared: false,
      aimd: { decrease: 0.5, increaseBy: '1/s', increaseEvery: '10s' },
      cost: 'none',
      quotaHeaders: [],
    },
    cooldownMax: '5m',
  },
  /** `routes[].fallback.stale` when the block is given with keys left out (SPEC §8.2). */
  stale: { maxStale: '10m', maxEntries: 1000, maxEntryBytes: '256KiB', maxBytes: '32MiB' },
  /** `routes[].cache` when the block is given with keys left out (SPEC §17); `ttl` off (null) unless set. */
  cache: {
    ttl: null,
    maxEntries: 1000,
    maxEntryBytes: '256KiB',
    maxBytes: '32MiB',
    revalidate: true,
    coalesce: true,
  },
  route: {
    /**
     * `routes[].keyHeaders` (SPEC §8.2): request headers that carry a caller's
     * identity, hashed into a stored answer's key. SPEC's six, and the token
     * headers of GitLab, Shopify and many gateways (issue 32: a caller
     * authenticating with one of them must not get another's answer).
     */
    keyHeaders: [
      'Authorization',
      'Proxy-Authorization',
      'Cookie',
      'X-Api-Key',
      'Api-Key',
      'X-Goog-Api-Key',
      'PRIVATE-TOKEN',
      'X-Shopify-Access-Token',
      'X-Auth-Token',
    ],
    match: { pathPrefix: '/', host: null, methods: null },
    stripPrefix: false,
    clientOverrides: false,
    headers: { request: { set: {}, remove: [] }, response: { set: {}, remove: [] } },
  },
  redis: { url: 'redis://127.0.0.1:6379', onError: 'local', timeout: '250ms' },
  forwardProxy: {
    enabled: false,
    allowHosts: [],
    allowPorts: [80, 443],
    denyPrivateNetworks: true,
    mode: 'enforce',
    callers: [],
    connect: { mode: 'tunnel' },
    intercept: null,
  },
} as const;
