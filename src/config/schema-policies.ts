/**
 * The policies of the config schema (schema.ts): what `defaults` holds and
 * a route may override key by key (timeouts, retry, rate limit, errors),
 * and the route itself.
 */
import { Type } from '@sinclair/typebox';
import {
  Bool,
  Conditions,
  Duration,
  DurationOrZero,
  Fmt,
  NAME_FORMAT,
  Obj,
  OneOf,
  Opt,
  OrNull,
  Rate,
  Size,
  SizeOrZero,
} from './schema-parts.js';
import { HeaderEdits } from './schema-upstream.js';
import { PROVIDER_RULES_MODES, POLICY_MODES, HTTP_METHODS, NORMALIZE_MODES } from './words.js';

/**
 * Built-in defaults of these sections (SPEC §3), in the file's own notation:
 * the resolver fills a file's sections with them (merge.ts `fill`), the
 * annotations below show them, and a test keeps the two equal.
 */
export const POLICY_DEFAULTS = {
  timeouts: { connect: '2s', perTry: '10s', total: '30s' },
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
  rateLimit: { queue: { size: 100, timeout: '2s' }, key: 'route', shared: false, mode: 'enforce' },
  errors: { normalize: 'proxy', providerRules: 'auto' },
  /** `routes[].fallback.stale` when the block is given with keys left out (SPEC §8.2). */
  stale: { maxStale: '10m', maxEntries: 1000, maxEntryBytes: '256KiB', maxBytes: '32MiB' },
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
} as const;

// ---------------------------------------------------------------------------
// Policies that `defaults` holds and a route may override key by key

const Timeouts = Obj(
  {
    connect: Opt(Duration('TCP and TLS connect, per attempt', POLICY_DEFAULTS.timeouts.connect)),
    perTry: Opt(Duration('until response headers, per attempt', POLICY_DEFAULTS.timeouts.perTry)),
    total: Opt(Duration('the whole request, retries and backoff included', POLICY_DEFAULTS.timeouts.total)),
  },
  { description: 'Deadlines (SPEC §3, §4).' },
);

const Retry = Obj(
  {
    maxRetries: Opt(
      Type.Integer({
        minimum: 0,
        maximum: 100,
        description: 'retries after the first attempt; 0 disables',
        default: POLICY_DEFAULTS.retry.maxRetries,
      }),
    ),
    retryOn: Opt(
      Conditions(
        '5xx | gateway-error | connect-failure | reset | timeout | a status code as a string ("429")',
        POLICY_DEFAULTS.retry.retryOn,
      ),
    ),
    backoff: Opt(
      Obj({
        base: Opt(
          DurationOrZero(
            'first backoff ceiling; retry n waits a random time in [0, min(max, base * 2^n))',
            POLICY_DEFAULTS.retry.backoff.base,
          ),
        ),
        max: Opt(DurationOrZero('ceiling of any backoff', POLICY_DEFAULTS.retry.backoff.max)),
      }),
    ),
    retryAfter: Opt(
      Obj({
        honor: Opt(
          Bool(
            'a Retry-After on 429/503 sets the delay before the next attempt',
            POLICY_DEFAULTS.retry.retryAfter.honor,
          ),
        ),
        max: Opt(
          DurationOrZero(
            'a longer Retry-After is passed back to the app at once',
            POLICY_DEFAULTS.retry.retryAfter.max,
          ),
        ),
      }),
    ),
    methods: Opt(
      Type.Unsafe<'idempotent' | string[]>({
        anyOf: [
          { type: 'string', enum: ['idempotent'] },
          { type: 'array', items: { type: 'string', enum: [...HTTP_METHODS] }, uniqueItems: true, minItems: 1 },
        ],
        description:
          'idempotent (GET HEAD OPTIONS PUT DELETE TRACE, and POST/PATCH carrying Idempotency-Key) or a list of methods',
        default: POLICY_DEFAULTS.retry.methods,
      }),
    ),
    budget: Opt(
      Obj({
        ratio: Opt(
          Type.Number({
            minimum: 0,
            maximum: 1,
            description: 'retries allowed per request, over a 10 s window',
            default: POLICY_DEFAULTS.retry.budget.ratio,
          }),
        ),
        minPerSecond: Opt(
          Type.Number({
            minimum: 0,
            description: 'retries per second allowed regardless of the ratio',
            default: POLICY_DEFAULTS.retry.budget.minPerSecond,
          }),
        ),
      }),
    ),
    bufferLimit: Opt(
      SizeOrZero(
        'request bodies up to this size are buffered for replay; larger ones stream through unretried',
        POLICY_DEFAULTS.retry.bufferLimit,
      ),
    ),
  },
  { description: 'Retries (SPEC §3, §4).' },
);

const RateLimit = OrNull(
  Obj(
    {
      rate: Opt(Rate('token refill rate (N/s, N/min, N/h)')),
      burst: Opt(
        Type.Integer({ minimum: 1, description: 'bucket size: requests allowed at once; default one second of rate' }),
      ),
      maxConcurrent: Opt(
        OrNull(
          Type.Integer({
            minimum: 1,
            description: 'requests in flight at once; a slot is held until the response has ended',
          }),
        ),
      ),
      queue: Opt(
        Obj({
          size: Opt(
            Type.Integer({
              minimum: 0,
              description: 'requests that may wait; 0 refuses at once',
              default: POLICY_DEFAULTS.rateLimit.queue.size,
            }),
          ),
          timeout: Opt(DurationOrZero('longest wait in the queue', POLICY_DEFAULTS.rateLimit.queue.timeout)),
        }),
      ),
      key: Opt(
        Fmt('limit-key', { description: 'route | client-ip | header:<name>', default: POLICY_DEFAULTS.rateLimit.key }),
      ),
      shared: Opt(Bool('one limit across replicas, kept in Redis', POLICY_DEFAULTS.rateLimit.shared)),
      mode: Opt(
        OneOf(POLICY_MODES, {
          default: POLICY_DEFAULTS.rateLimit.mode,
          description:
            'report: a request the limit would queue or refuse goes on at once, flagged WOULD_RATE_LIMIT and counted (SPEC §19.2)',
        }),
      ),
    },
    { description: 'Rate limit (SPEC §3); null: none.' },
  ),
);

const Errors = Obj(
  {
    normalize: Opt(
      OneOf(NORMALIZE_MODES, { description: 'proxy | all | off (SPEC §5)', default: POLICY_DEFAULTS.errors.normalize }),
    ),
    providerRules: Opt(
      OneOf(PROVIDER_RULES_MODES, {
        description: 'auto | off: the built-in provider rules (SPEC §14)',
        default: POLICY_DEFAULTS.errors.providerRules,
      }),
    ),
  },
  { description: 'Error bodies (SPEC §5) and provider-aware decisions (SPEC §14).' },
);

export const policyKeys = {
  timeouts: Opt(Timeouts),
  retry: Opt(Retry),
  rateLimit: Opt(RateLimit),
  errors: Opt(Errors),
};

// ---------------------------------------------------------------------------
// Routes

export const Route = Obj(
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
    priority: Opt(
      Type.String({
        minLength: 1,
        description:
          "the route's class (SPEC §13): one of priorities.classes; a request header may lower it, never raise it",
      }),
    ),
    headers: Opt(Obj({ request: Opt(HeaderEdits), response: Opt(HeaderEdits) })),
    keyHeaders: Opt(
      Type.Array(Fmt('header-name'), {
        default: POLICY_DEFAULTS.route.keyHeaders,
        description:
          "request headers whose values (hashed) key a stored answer, so that one caller never gets another's (SPEC §8.2); replaces the default list",
      }),
    ),
    fallback: Opt(
      Obj(
        {
          stale: Opt(
            OrNull(
              Obj({
                maxStale: Opt(
                  Duration('how old a stored answer may be when it is served', POLICY_DEFAULTS.stale.maxStale),
                ),
                maxEntries: Opt(
                  Type.Integer({
                    minimum: 1,
                    description: 'stored answers of the route, at most',
                    default: POLICY_DEFAULTS.stale.maxEntries,
                  }),
                ),
                maxEntryBytes: Opt(
                  Size('larger bodies stream through and are never stored', POLICY_DEFAULTS.stale.maxEntryBytes),
                ),
                maxBytes: Opt(Size('all stored bodies of the route together', POLICY_DEFAULTS.stale.maxBytes)),
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
