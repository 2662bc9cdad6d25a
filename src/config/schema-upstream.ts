/**
 * The upstream part of the config schema (SPEC §3, §8.1, §14): breaker,
 * pacing, TLS, provider error rules and failover targets. schema.ts puts
 * it in the file's schema.
 */
import { Type } from '@sinclair/typebox';
import {
  Bool,
  Conditions,
  Duration,
  DurationOrZero,
  Fmt,
  HeaderNames,
  HeaderValues,
  NAME_FORMAT,
  Obj,
  OneOf,
  Opt,
  OrNull,
  Rate,
  Share,
} from './schema-parts.js';
import { Credentials } from './schema-credentials.js';
import { COST_PRESETS, DEFAULTS, PACING_HEADERS, RESET_FORMATS, RESPONSIBILITIES, POLICY_MODES } from './defaults.js';

// ---------------------------------------------------------------------------
// Upstreams

const CB = DEFAULTS.upstream.circuitBreaker;
const CircuitBreaker = Obj({
  failureRate: Opt(
    Type.Number({
      exclusiveMinimum: 0,
      maximum: 100,
      description: 'opens when more than this % of the last minimumRequests calls failed (100: never opens)',
      default: CB.failureRate,
    }),
  ),
  minimumRequests: Opt(
    Type.Integer({
      minimum: 1,
      description: 'the calls that decide opening (all within window); no opening below this many',
      default: CB.minimumRequests,
    }),
  ),
  window: Opt(Duration('how recent a counted call must be; the shedding window', CB.window)),
  openFor: Opt(
    Duration('first open period, then probes; doubles while probes fail once the outage outlasts hold', CB.openFor),
  ),
  maxOpenFor: Opt(Duration('longest open period (default: the larger of 1s and openFor)', CB.maxOpenFor)),
  hold: Opt(
    DurationOrZero(
      'a call meeting a circuit open for less than this waits for it, at most this long; 0: refuse at once',
      CB.hold,
    ),
  ),
  shedding: Opt(
    Obj({
      enabled: Opt(Bool('shed the excess of a partly failing upstream (adaptive throttling)', CB.shedding.enabled)),
      k: Opt(
        Type.Number({
          minimum: 1,
          description: 'calls allowed per accepted call before shedding starts',
          default: CB.shedding.k,
        }),
      ),
    }),
  ),
  failOn: Opt(Conditions('outcomes counted as failures', CB.failOn)),
  mode: Opt(
    OneOf(POLICY_MODES, {
      default: CB.mode,
      description:
        'report: a call the breaker would refuse or hold is sent, flagged WOULD_CIRCUIT_OPEN and counted; its outcome is not counted (SPEC §19.2)',
    }),
  ),
});

/** A quota dimension's name (SPEC §15): `tokens`, `input-tokens`, an IETF policy's name. */
const Dimension = Type.String({
  pattern: '^(?!constructor$)[a-z0-9][a-z0-9_.-]{0,63}$',
  description: 'a dimension name, lower case',
});

/** `pacing.cost` (SPEC §15): none, a preset, or a source per dimension. */
const PacingCost = Type.Union(
  [
    OneOf(['none', ...COST_PRESETS] as const, {
      description: 'none: 1 per attempt in every dimension; openai | anthropic: tokens estimated from the body',
    }),
    Type.Record(Dimension, Fmt('cost-source'), {
      description: 'per dimension: openai | anthropic (an estimate), header:<name> or json:<path>',
      minProperties: 1,
      additionalProperties: false,
    }),
  ],
  { default: 'none', description: "what a request costs in each dimension of the provider's quota" },
);

/** One `pacing.quotaHeaders` entry (SPEC §15): a dimension read from headers the dialects do not know. */
const QuotaHeader = Obj(
  {
    dimension: Dimension,
    limit: Opt(
      Fmt('header-name', { description: "the header with the window's limit (default: highest remaining seen)" }),
    ),
    remaining: Fmt('header-name', { description: 'the header with what is left' }),
    reset: Fmt('header-name', { description: 'the header with the reset' }),
    resetFormat: Opt(OneOf(RESET_FORMATS, { default: 'auto' })),
  },
  { required: ['dimension', 'remaining', 'reset'] },
);

const Pacing = Obj({
  enabled: Opt(Bool('slow down before the provider answers 429, from the quota it announces', false)),
  headers: Opt(OneOf(PACING_HEADERS, { default: 'auto' })),
  scope: Opt(OrNull(Fmt('header-selector', { description: "header:<name> that splits one upstream's quotas" }))),
  key: Opt(OrNull(Fmt('header-selector', { description: 'header:<name> that owns a quota (value hashed)' }))),
  resetFormat: Opt(OneOf(RESET_FORMATS, { default: 'auto' })),
  engageBelow: Opt(Share('no delay while remaining/limit is above this', '50%')),
  reserve: Opt(Share('share of the quota left for other clients', '5%')),
  minRate: Opt(Rate('slowest release rate', '0.2/s')),
  maxWait: Opt(DurationOrZero('a longer wait is refused with RATE_LIMITED', '10s')),
  mode: Opt(
    OneOf(POLICY_MODES, {
      default: 'enforce',
      description:
        'report: a request pacing would delay or refuse goes at once, flagged WOULD_PACE and counted; its slot is still taken (SPEC §19.2)',
    }),
  ),
  replicas: Opt(Type.Integer({ minimum: 1, description: 'replicas sharing the quota (divides the rate)', default: 1 })),
  cost: Opt(PacingCost),
  quotaHeaders: Opt(
    Type.Array(QuotaHeader, {
      default: [],
      maxItems: 16,
      description: 'headers mapped to dimensions, read besides the dialect (alone with headers: custom)',
    }),
  ),
  shared: Opt(Bool('pacer state in Redis instead of dividing', false)),
  aimd: Opt(
    Obj({
      decrease: Opt(
        Type.Number({
          exclusiveMinimum: 0,
          exclusiveMaximum: 1,
          description: 'rate multiplier on a 429',
          default: 0.5,
        }),
      ),
      increaseBy: Opt(Rate('rate added after each quiet period', '1/s')),
      increaseEvery: Opt(Duration('quiet period', '10s')),
    }),
  ),
});

export const HeaderEdits = Obj({
  set: Opt(HeaderValues('headers set, replacing any value')),
  remove: Opt(HeaderNames('headers removed')),
});

const UpstreamTls = Obj({
  ca: Opt(OrNull(Type.String({ minLength: 1, description: 'a CA bundle: a file path or PEM text' }))),
  insecureSkipVerify: Opt(Bool('skip certificate verification (testing only)', false)),
});

/** One rule of `errorRules` (SPEC §14): when an answer matches every field given, it is treated as the rule says. */
const ErrorRule = Obj(
  {
    when: Obj(
      {
        status: Opt(Type.Integer({ minimum: 400, maximum: 599, description: 'the status the provider sent' })),
        code: Opt(Type.String({ minLength: 1, description: "the provider's error code (provider.code)" })),
        header: Opt(
          Type.Record(Type.String(), Type.String(), {
            description: 'header name: value, all of them (values compared without case)',
          }),
        ),
        message: Opt(
          Type.String({ minLength: 1, description: "a substring of the provider's message (without case)" }),
        ),
      },
      { minProperties: 1 },
    ),
    as: Opt(
      Type.String({
        pattern: '^[45][0-9][0-9]$',
        description: 'treat as this status (its code, retryOn, failOn and pacing)',
      }),
    ),
    retryable: Opt(
      Type.Boolean({ description: 'true: retried even when its status is not in retryOn; false: never retried' }),
    ),
    breakerFailure: Opt(Type.Boolean({ description: 'counted as a breaker failure or not, whatever failOn says' })),
    responsibility: Opt(OneOf(RESPONSIBILITIES)),
  },
  { required: ['when'], minProperties: 2 },
);

/** One more target of the same API (SPEC §8.1). */
const FailoverTarget = Obj(
  {
    name: Opt(
      Fmt(NAME_FORMAT, {
        description: 'the target is named "<upstream>/<name>"; default: its 1-based position in failover',
      }),
    ),
    url: Fmt('http-url', { description: 'http:// or https:// base URL' }),
    headers: Opt(
      Obj({
        set: Opt(HeaderValues("request headers for this target only, set after the route's")),
        remove: Opt(HeaderNames('request headers removed for this target')),
      }),
    ),
    tls: Opt(UpstreamTls),
    credentials: Opt(Credentials),
  },
  { required: ['url'] },
);

export const Upstream = Obj(
  {
    url: Fmt('http-url', { description: 'http:// or https:// base URL' }),
    pool: Opt(
      Obj({
        maxSockets: Opt(Type.Integer({ minimum: 1, description: 'sockets per upstream', default: 256 })),
        keepAlive: Opt(Bool('reuse connections', true)),
      }),
    ),
    tls: Opt(UpstreamTls),
    circuitBreaker: Opt(CircuitBreaker),
    pacing: Opt(Pacing),
    errorRules: Opt(
      Type.Array(ErrorRule, {
        description: "this upstream's provider rules, tried before the built-in ones (SPEC §14)",
        default: [],
      }),
    ),
    cooldownMax: Opt(
      Duration('the longest a Retry-After takes a target out of rotation (SPEC §8.1)', DEFAULTS.upstream.cooldownMax),
    ),
    credentials: Opt(Credentials),
    idempotencyKeys: Opt(
      Obj(
        {
          enabled: Opt(
            Bool(
              'a POST or PATCH without the header gets a random UUID, the same on every attempt and target',
              DEFAULTS.upstream.idempotencyKeys.enabled,
            ),
          ),
          header: Opt(Fmt('header-name', { default: DEFAULTS.upstream.idempotencyKeys.header })),
        },
        { description: 'idempotency keys for the app (SPEC §18): its POSTs may then be retried and failed over' },
      ),
    ),
    failover: Opt(
      Type.Array(FailoverTarget, {
        description: 'more targets of the same API, tried in this order (SPEC §8.1)',
        default: [],
      }),
    ),
  },
  { required: ['url'] },
);
