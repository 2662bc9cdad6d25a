/**
 * The config file's schema (SPEC §3), as data: a JSON Schema built with
 * TypeBox and checked by ajv. It describes the file as the user writes it
 * (durations as `"2s"`, sizes as `"1MiB"`); `resolve.ts` turns a file that
 * passed it into the typed, unit-converted {@link Config}.
 *
 * Rules kept everywhere: every object rejects unknown keys, nothing is
 * coerced (`"3"` is not `3`, `yes` is not `true`), and string forms with a
 * grammar (units, retry conditions, URLs, limiter keys) are ajv `format`s
 * backed by the same parsers the resolver uses, so the check and the
 * conversion cannot disagree.
 *
 * Defaults live in defaults.ts ({@link DEFAULTS}) and are attached to the schema as
 * `default` annotations for editors and `breakwater schema`; they are merged
 * by the resolver, not by ajv, because a route's policy is merged over the
 * file's `defaults`, which is merged over these.
 */
import { Type, type Static } from '@sinclair/typebox';
import { Bool, Conditions, Duration, DurationOrZero, Fmt, NAME_FORMAT, Obj, OneOf, Opt, OrNull, Rate, Share, Size, SizeOrZero } from './schema-parts.js';
import { Admin, ForwardCaller, Limits, Listen } from './schema-edge.js';
import { HeaderEdits, Upstream } from './schema-upstream.js';
import { PROVIDER_RULES_MODES, POLICY_MODES, CONNECT_MODES, DEFAULTS, HTTP_METHODS, LOG_LEVELS, NORMALIZE_MODES, REDIS_ON_ERROR, TRACE_PROTOCOLS } from './defaults.js';

// ---------------------------------------------------------------------------
// Policies that `defaults` holds and a route may override key by key

const Timeouts = Obj(
  {
    connect: Opt(Duration('TCP and TLS connect, per attempt', DEFAULTS.timeouts.connect)),
    perTry: Opt(Duration('until response headers, per attempt', DEFAULTS.timeouts.perTry)),
    total: Opt(Duration('the whole request, retries and backoff included', DEFAULTS.timeouts.total)),
  },
  { description: 'Deadlines (SPEC §3, §4).' },
);

const Retry = Obj(
  {
    maxRetries: Opt(Type.Integer({ minimum: 0, maximum: 100, description: 'retries after the first attempt; 0 disables', default: DEFAULTS.retry.maxRetries })),
    retryOn: Opt(Conditions('5xx | gateway-error | connect-failure | reset | timeout | a status code as a string ("429")', DEFAULTS.retry.retryOn)),
    backoff: Opt(
      Obj({
        base: Opt(DurationOrZero('first backoff ceiling; retry n waits a random time in [0, min(max, base * 2^n))', DEFAULTS.retry.backoff.base)),
        max: Opt(DurationOrZero('ceiling of any backoff', DEFAULTS.retry.backoff.max)),
      }),
    ),
    retryAfter: Opt(
      Obj({
        honor: Opt(Bool('a Retry-After on 429/503 sets the delay before the next attempt', DEFAULTS.retry.retryAfter.honor)),
        max: Opt(DurationOrZero('a longer Retry-After is passed back to the app at once', DEFAULTS.retry.retryAfter.max)),
      }),
    ),
    methods: Opt(
      Type.Unsafe<'idempotent' | string[]>({
        anyOf: [
          { type: 'string', enum: ['idempotent'] },
          { type: 'array', items: { type: 'string', enum: [...HTTP_METHODS] }, uniqueItems: true, minItems: 1 },
        ],
        description: 'idempotent (GET HEAD OPTIONS PUT DELETE TRACE, and POST/PATCH carrying Idempotency-Key) or a list of methods',
        default: DEFAULTS.retry.methods,
      }),
    ),
    budget: Opt(
      Obj({
        ratio: Opt(Type.Number({ minimum: 0, maximum: 1, description: 'retries allowed per request, over a 10 s window', default: DEFAULTS.retry.budget.ratio })),
        minPerSecond: Opt(Type.Number({ minimum: 0, description: 'retries per second allowed regardless of the ratio', default: DEFAULTS.retry.budget.minPerSecond })),
      }),
    ),
    bufferLimit: Opt(SizeOrZero('request bodies up to this size are buffered for replay; larger ones stream through unretried', DEFAULTS.retry.bufferLimit)),
  },
  { description: 'Retries (SPEC §3, §4).' },
);

const RateLimit = OrNull(
  Obj(
    {
      rate: Opt(Rate('token refill rate (N/s, N/min, N/h)')),
      burst: Opt(Type.Integer({ minimum: 1, description: 'bucket size: requests allowed at once; default one second of rate' })),
      maxConcurrent: Opt(OrNull(Type.Integer({ minimum: 1, description: 'requests in flight at once; a slot is held until the response has ended' }))),
      queue: Opt(
        Obj({
          size: Opt(Type.Integer({ minimum: 0, description: 'requests that may wait; 0 refuses at once', default: DEFAULTS.rateLimit.queue.size })),
          timeout: Opt(DurationOrZero('longest wait in the queue', DEFAULTS.rateLimit.queue.timeout)),
        }),
      ),
      key: Opt(Fmt('limit-key', { description: 'route | client-ip | header:<name>', default: DEFAULTS.rateLimit.key })),
      shared: Opt(Bool('one limit across replicas, kept in Redis', DEFAULTS.rateLimit.shared)),
      mode: Opt(
        OneOf(POLICY_MODES, { default: DEFAULTS.rateLimit.mode, description: 'report: a request the limit would queue or refuse goes on at once, flagged WOULD_RATE_LIMIT and counted (SPEC §19.2)' }),
      ),
    },
    { description: 'Rate limit (SPEC §3); null: none.' },
  ),
);

const Errors = Obj(
  {
    normalize: Opt(OneOf(NORMALIZE_MODES, { description: 'proxy | all | off (SPEC §5)', default: DEFAULTS.errors.normalize })),
    providerRules: Opt(OneOf(PROVIDER_RULES_MODES, { description: 'auto | off: the built-in provider rules (SPEC §14)', default: DEFAULTS.errors.providerRules })),
  },
  { description: 'Error bodies (SPEC §5) and provider-aware decisions (SPEC §14).' },
);

const policyKeys = {
  timeouts: Opt(Timeouts),
  retry: Opt(Retry),
  rateLimit: Opt(RateLimit),
  errors: Opt(Errors),
};

// ---------------------------------------------------------------------------
// Routes

const Route = Obj(
  {
    name: Fmt(NAME_FORMAT, { description: "unique; the metrics' route label" }),
    match: Opt(
      Obj({
        pathPrefix: Opt(Fmt('path-prefix', { description: 'matches on segment boundaries', default: '/' })),
        host: Opt(OrNull(Fmt('host-pattern', { description: 'Host header or absolute-form target; *. wildcards' }))),
        methods: Opt(OrNull(Type.Array(OneOf(HTTP_METHODS), { minItems: 1, uniqueItems: true }))),
      }),
    ),
    stripPrefix: Opt(Bool('remove pathPrefix before forwarding', false)),
    upstream: Opt(Fmt(NAME_FORMAT, { description: "an upstream's name; forward-proxy routes may omit it" })),
    clientOverrides: Opt(Bool('honour X-Breakwater-Max-Retries/-Timeout, downward only', false)),
    priority: Opt(Type.String({ minLength: 1, description: "the route's class (SPEC §13): one of priorities.classes; a request header may lower it, never raise it" })),
    headers: Opt(Obj({ request: Opt(HeaderEdits), response: Opt(HeaderEdits) })),
    keyHeaders: Opt(
      Type.Array(Fmt('header-name'), {
        default: DEFAULTS.route.keyHeaders,
        description: "request headers whose values (hashed) key a stored answer, so that one caller never gets another's (SPEC §8.2); replaces the default list",
      }),
    ),
    fallback: Opt(
      Obj(
        {
          stale: Opt(
            OrNull(
              Obj({
                maxStale: Opt(Duration('how old a stored answer may be when it is served', DEFAULTS.stale.maxStale)),
                maxEntries: Opt(Type.Integer({ minimum: 1, description: 'stored answers of the route, at most', default: DEFAULTS.stale.maxEntries })),
                maxEntryBytes: Opt(Size('larger bodies stream through and are never stored', DEFAULTS.stale.maxEntryBytes)),
                maxBytes: Opt(Size('all stored bodies of the route together', DEFAULTS.stale.maxBytes)),
              }),
            ),
          ),
        },
        { description: 'answers when the upstream cannot (SPEC §8.2)' },
      ),
    ),
    ...policyKeys,
  },
  { required: ['name'] },
);

// ---------------------------------------------------------------------------
// The file

export const ConfigFileSchema = Obj(
  {
    version: Type.Unsafe<1>({ type: 'integer', const: 1, description: 'config format version; this Breakwater reads 1' }),
    listen: Opt(Listen),
    admin: Opt(Admin),
    logging: Opt(Obj({ level: Opt(OneOf(LOG_LEVELS, { default: 'info' })), accessLog: Opt(Bool('one JSON line per request', true)) })),
    tracing: Opt(
      Obj(
        {
          enabled: Opt(Bool('OpenTelemetry traces (SPEC §11); OTEL_SDK_DISABLED=true also turns them off', false)),
          endpoint: Opt(
            OrNull(
              Fmt('otlp-url', {
                description:
                  'OTLP/HTTP traces URL (a query is kept, and secret); default OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces, else http://127.0.0.1:4318/v1/traces',
              }),
            ),
          ),
          protocol: Opt(OneOf(TRACE_PROTOCOLS, { default: 'http/protobuf', description: 'default OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else http/protobuf' })),
          serviceName: Opt(Type.String({ minLength: 1, default: 'breakwater', description: 'default OTEL_SERVICE_NAME, else breakwater' })),
          sampleRatio: Opt(Type.Number({ minimum: 0, maximum: 1, default: 1, description: 'share of requests without a sampled parent that are traced' })),
        },
        { description: 'OpenTelemetry traces (SPEC §11)' },
      ),
    ),
    observability: Opt(
      Obj({
        errorJournal: Opt(
          Obj(
            { size: Opt(Type.Integer({ minimum: 0, maximum: 10000, default: DEFAULTS.observability.errorJournal.size, description: 'requests kept; 0 keeps none' })) },
            { description: 'the last requests that ended in an error, at GET /errors on the admin port (SPEC §12)' },
          ),
        ),
      }),
    ),
    priorities: Opt(
      OrNull(
        Obj(
          {
            header: Opt(Fmt('header-name', { default: DEFAULTS.priorities.header, description: 'request header that names a class; never forwarded' })),
            default: Type.String({ minLength: 1, description: 'the class of a request that names none' }),
            classes: Type.Array(
              Obj(
                {
                  name: Type.String({ minLength: 1, pattern: '^[A-Za-z0-9_.-]+$', description: 'case-sensitive; letters, digits, _ . -' }),
                  quotaFloor: Opt(Share("a pacer does not release this class while less than this share of the upstream's announced quota is left")),
                },
                { required: ['name'] },
              ),
              { minItems: 1, description: 'highest first' },
            ),
            promoteAfter: Opt(
              Duration(
                'starvation guard: a request of a lower class that has waited this long in a queue or for a pacer is released as one of the highest class (first come first served among them); unset: off',
              ),
            ),
          },
          { required: ['default', 'classes'], description: 'priority classes (SPEC §13): where requests wait, a higher class goes first' },
        ),
      ),
    ),
    limits: Opt(Limits),
    shutdown: Opt(Obj({ drainTimeout: Opt(DurationOrZero('in-flight requests may finish for this long', '20s')) })),
    defaults: Opt(Obj(policyKeys, { description: 'merged into every route; a route overrides key by key' })),
    upstreams: Opt(Type.Record(Type.String(), Upstream, { propertyNames: { format: NAME_FORMAT }, default: {} })),
    routes: Type.Array(Route, { minItems: 1, description: 'tried in order; the first match wins' }),
    redis: Opt(
      OrNull(
        Obj({
          url: Opt(Fmt('redis-url', { default: DEFAULTS.redis.url })),
          onError: Opt(OneOf(REDIS_ON_ERROR, { default: 'local' })),
          timeout: Opt(Duration('the longest a request waits for Redis; slower is a Redis failure (SPEC §9)', DEFAULTS.redis.timeout)),
          sentinel: Opt(
            OrNull(
              Obj(
                {
                  name: Type.String({ minLength: 1, description: 'the master group name the sentinels monitor' }),
                  sentinels: Type.Array(Fmt('host-port'), { minItems: 1, description: 'host:port of each sentinel' }),
                  password: Opt(Type.String({ minLength: 1, description: 'the password of the Redis servers (the master and its replicas)' })),
                  sentinelPassword: Opt(Type.String({ minLength: 1, description: 'the password of the sentinels themselves' })),
                },
                { required: ['name', 'sentinels'] },
              ),
            ),
          ),
          cluster: Opt(OrNull(Obj({ nodes: Type.Array(Fmt('host-port'), { minItems: 1, description: 'host:port of some cluster nodes; the rest are discovered' }) }, { required: ['nodes'] }))),
          username: Opt(OrNull(Type.String({ minLength: 1, description: 'ACL user of every form (url, sentinel, cluster)' }))),
          password: Opt(OrNull(Type.String({ minLength: 1, description: 'password of the Redis servers, every form' }))),
          db: Opt(Type.Integer({ minimum: 0, maximum: 15, description: 'database number (not with cluster)' })),
          tls: Opt(
            OrNull(
              Obj({
                ca: Opt(OrNull(Type.String({ minLength: 1, description: 'a CA bundle: a file path or PEM text' }))),
                insecureSkipVerify: Opt(Bool('skip certificate verification (testing only)', false)),
              }),
            ),
          ),
        }),
      ),
    ),
    forwardProxy: Opt(
      Obj({
        enabled: Opt(Bool('accept absolute-form and CONNECT requests', false)),
        allowHosts: Opt(
          Type.Array(Fmt('allow-host'), { default: [], description: 'hosts the forward proxy may reach: exact, *.domain, an IP, or "*" (every host; private addresses only by an exact entry)' }),
        ),
        allowPorts: Opt(Type.Array(Type.Integer({ minimum: 1, maximum: 65535 }), { uniqueItems: true, default: [80, 443] })),
        denyPrivateNetworks: Opt(Bool('refuse targets that resolve to private networks', true)),
        mode: Opt(OneOf(POLICY_MODES, { default: 'enforce', description: 'report: a target the allow-lists refuse is forwarded, flagged WOULD_DENY; private addresses stay refused (SPEC §19.2)' })),
        callers: Opt(Type.Array(ForwardCaller, { default: [], description: 'per-caller allow-lists, in order; the first match replaces the global one (SPEC §19.3)' })),
        connect: Opt(Obj({ mode: Opt(OneOf(CONNECT_MODES, { default: 'tunnel' })) })),
        intercept: Opt(
          OrNull(
            Obj({
              caCert: Opt(Type.String({ minLength: 1, description: 'the CA certificate apps trust: a file (relative to this file) or inline PEM' })),
              caKey: Opt(Type.String({ minLength: 1, description: 'the CA private key: a file readable by its owner only' })),
              hosts: Opt(Type.Array(Fmt('host-pattern'), { description: 'CONNECT targets to intercept: names, *.domain wildcards, IP addresses' })),
              upstreamCa: Opt(Type.String({ minLength: 1, description: 'extra CA certificates (file or PEM) trusted for the re-originated TLS, besides the system roots' })),
            }),
          ),
        ),
      }),
    ),
  },
  {
    required: ['version', 'routes'],
    $id: 'https://breakwater.dev/schema/config-v1.json',
    title: 'Breakwater config',
  },
);

/** The file as written, after the schema accepted it. */
export type ConfigFile = Static<typeof ConfigFileSchema>;
export type RawRoute = ConfigFile['routes'][number];
export type RawUpstream = NonNullable<ConfigFile['upstreams']>[string];
export type RawPolicies = NonNullable<ConfigFile['defaults']>;
