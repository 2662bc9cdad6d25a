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
import {
  PROVIDER_RULES_MODES,
  POLICY_MODES,
  DEFAULTS,
  HTTP_METHODS,
  NORMALIZE_MODES,
  SETTLE_MODES,
} from './defaults.js';

// ---------------------------------------------------------------------------
// Policies that `defaults` holds and a route may override key by key

const Timeouts = Obj(
  {
    connect: Opt(Duration('TCP and TLS connect, per attempt', DEFAULTS.timeouts.connect)),
    perTry: Opt(Duration('until response headers, per attempt', DEFAULTS.timeouts.perTry)),
    total: Opt(Duration('the whole request, retries and backoff included', DEFAULTS.timeouts.total)),
    firstByte: Opt(
      OrNull(
        Duration(
          'from the response headers to the first body byte (text/event-stream: the first event line, comments not counted); the status and headers are held until then, and an attempt past it is a per-try timeout (retried, failed over); null: off (SPEC §16)',
        ),
      ),
    ),
    idle: Opt(
      OrNull(
        Duration(
          'the longest silence in a response body once it flows; past it the stream is cut (an event stream ends with an error event); null: off (SPEC §16)',
        ),
      ),
    ),
  },
  { description: 'Deadlines (SPEC §3, §4, §16).' },
);

const Retry = Obj(
  {
    maxRetries: Opt(
      Type.Integer({
        minimum: 0,
        maximum: 100,
        description: 'retries after the first attempt; 0 disables',
        default: DEFAULTS.retry.maxRetries,
      }),
    ),
    retryOn: Opt(
      Conditions(
        '5xx | gateway-error | connect-failure | reset | timeout | a status code as a string ("429")',
        DEFAULTS.retry.retryOn,
      ),
    ),
    backoff: Opt(
      Obj({
        base: Opt(
          DurationOrZero(
            'first backoff ceiling; retry n waits a random time in [0, min(max, base * 2^n))',
            DEFAULTS.retry.backoff.base,
          ),
        ),
        max: Opt(DurationOrZero('ceiling of any backoff', DEFAULTS.retry.backoff.max)),
      }),
    ),
    retryAfter: Opt(
      Obj({
        honor: Opt(
          Bool('a Retry-After on 429/503 sets the delay before the next attempt', DEFAULTS.retry.retryAfter.honor),
        ),
        max: Opt(
          DurationOrZero('a longer Retry-After is passed back to the app at once', DEFAULTS.retry.retryAfter.max),
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
        default: DEFAULTS.retry.methods,
      }),
    ),
    budget: Opt(
      Obj({
        ratio: Opt(
          Type.Number({
            minimum: 0,
            maximum: 1,
            description: 'retries allowed per request, over a 10 s window',
            default: DEFAULTS.retry.budget.ratio,
          }),
        ),
        minPerSecond: Opt(
          Type.Number({
            minimum: 0,
            description: 'retries per second allowed regardless of the ratio',
            default: DEFAULTS.retry.budget.minPerSecond,
          }),
        ),
      }),
    ),
    bufferLimit: Opt(
      SizeOrZero(
        'request bodies up to this size are buffered for replay; larger ones stream through unretried',
        DEFAULTS.retry.bufferLimit,
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
              default: DEFAULTS.rateLimit.queue.size,
            }),
          ),
          timeout: Opt(DurationOrZero('longest wait in the queue', DEFAULTS.rateLimit.queue.timeout)),
        }),
      ),
      key: Opt(Fmt('limit-key', { description: 'route | client-ip | header:<name>', default: DEFAULTS.rateLimit.key })),
      shared: Opt(Bool('one limit across replicas, kept in Redis', DEFAULTS.rateLimit.shared)),
      cost: Opt(
        OrNull(
          Fmt('cost-source', {
            description:
              'rate and burst count in this unit: openai | anthropic | header:<name> | json:<path> (SPEC §15)',
            default: DEFAULTS.rateLimit.cost,
          }),
        ),
      ),
      settle: Opt(
        OneOf(SETTLE_MODES, {
          default: DEFAULTS.rateLimit.settle,
          description: "usage: once answered, charge the answer's usage instead of the estimate",
        }),
      ),
      mode: Opt(
        OneOf(POLICY_MODES, {
          default: DEFAULTS.rateLimit.mode,
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
      OneOf(NORMALIZE_MODES, { description: 'proxy | all | off (SPEC §5)', default: DEFAULTS.errors.normalize }),
    ),
    providerRules: Opt(
      OneOf(PROVIDER_RULES_MODES, {
        description: 'auto | off: the built-in provider rules (SPEC §14)',
        default: DEFAULTS.errors.providerRules,
      }),
    ),
  },
  { description: 'Error bodies (SPEC §5) and provider-aware decisions (SPEC §14).' },
);

/** `routes[].cache` (SPEC §17): a private HTTP cache; `cache: {}` takes the defaults. */
const Cache = Obj(
  {
    ttl: Opt(
      OrNull(Duration('freshness of an answer that gives none; null: such answers are kept only to be revalidated')),
    ),
    maxEntries: Opt(
      Type.Integer({
        minimum: 1,
        description: 'stored answers of the route, at most',
        default: DEFAULTS.cache.maxEntries,
      }),
    ),
    maxEntryBytes: Opt(Size('larger bodies stream through and are never stored', DEFAULTS.cache.maxEntryBytes)),
    maxBytes: Opt(Size('all stored bodies of the route together', DEFAULTS.cache.maxBytes)),
    revalidate: Opt(
      Bool('false: a stale entry is dropped and the GET goes upstream as sent', DEFAULTS.cache.revalidate),
    ),
    coalesce: Opt(Bool('identical concurrent GETs share one upstream request', DEFAULTS.cache.coalesce)),
  },
  { description: 'answers that cost no quota (SPEC §17): fresh answers served, stale ones revalidated' },
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
        default: DEFAULTS.route.keyHeaders,
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
                maxStale: Opt(Duration('how old a stored answer may be when it is served', DEFAULTS.stale.maxStale)),
                maxEntries: Opt(
                  Type.Integer({
                    minimum: 1,
                    description: 'stored answers of the route, at most',
                    default: DEFAULTS.stale.maxEntries,
                  }),
                ),
                maxEntryBytes: Opt(
                  Size('larger bodies stream through and are never stored', DEFAULTS.stale.maxEntryBytes),
                ),
                maxBytes: Opt(Size('all stored bodies of the route together', DEFAULTS.stale.maxBytes)),
              }),
            ),
          ),
        },
        { description: 'answers when the upstream cannot (SPEC §8.2)' },
      ),
    ),
    cache: Opt(OrNull(Cache)),
    ...policyKeys,
  },
  { required: ['name'] },
);
