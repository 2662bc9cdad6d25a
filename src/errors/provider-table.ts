/**
 * What a provider rule is (SPEC §14), and the built-in ones, as data: each
 * row's `answer` and `treatedAs` are docs/errors.md's table, kept equal by
 * a test. provider-rules.ts applies them, after the upstream's own.
 */
import type { IncomingHttpHeaders } from 'node:http';

import { retryDelayOf } from '../lib/retry-after.js';
import type { ParsedBody, ProviderError } from './dialects/index.js';
import { isObject } from './dialects/types.js';
import { firstHeader } from '../lib/headers.js';

/** An error answer as the rules read it. */
export interface ErrorAnswer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: ParsedBody;
  /** The provider's message and code, from the dialects. */
  readonly provider: ProviderError;
  /** Epoch ms when it came (for reset dates). */
  readonly wall: number;
}

/** What a rule decides. Fields left out follow the status (`as`, else the provider's). */
export interface RuleDecision {
  /** A built-in name (`openai-insufficient-quota`) or `errorRules[N]`. */
  readonly rule: string;
  /** The status it is treated as for retryOn, failOn and pacing. */
  readonly as?: number;
  /** The §5 code, when the rule names one (else the code of `as` or of the status). */
  readonly code?: string;
  readonly responsibility?: 'client' | 'upstream';
  /** true: retried even when its status is not in retryOn (methods, budget, deadline still apply); false: never retried. */
  readonly retryable?: boolean;
  /** Outranks failOn. */
  readonly breakerFailure?: boolean;
  /** A delay the rule knows, handled like Retry-After. */
  readonly delayMs?: number;
  /** `pause`: the pacer pauses for `delayMs`; `never`: the answer neither pauses nor slows it. */
  readonly pacing?: 'pause' | 'never';
  /** The hint of the §5 body, for that provider code. */
  readonly hint?: string;
}

export interface ProviderRule {
  readonly name: string;
  /** The statuses it can match (the body is read only for those); undefined: any. */
  readonly statuses?: readonly number[];
  /** Whether it needs the body (else headers decide). */
  readonly readsBody: boolean;
  /** docs/errors.md's row: the provider answer, and what it is treated as. */
  readonly answer: string;
  readonly treatedAs: string;
  decide(answer: ErrorAnswer): Omit<RuleDecision, 'rule'> | undefined;
}

/** `error.<field>` of a JSON body, when it is a string. */
function errorField(body: ParsedBody, field: string): string | undefined {
  if (body.kind !== 'json' || !isObject(body.value) || !isObject(body.value.error)) return undefined;
  const value = body.value.error[field];
  return typeof value === 'string' ? value : undefined;
}

/** The seconds until an epoch-seconds reset, read against the answer's own Date (the provider's clock). */
function untilReset(answer: ErrorAnswer, resetHeader: string): number | undefined {
  const reset = Number(firstHeader(answer.headers, resetHeader));
  if (!Number.isFinite(reset) || reset <= 0) return undefined;
  const date = Date.parse(firstHeader(answer.headers, 'date') ?? '');
  const now = Number.isFinite(date) ? date : answer.wall;
  return Math.max(0, reset * 1000 - now);
}

const AWS_THROTTLING = new Set([
  'ThrottlingException',
  'Throttling',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'ProvisionedThroughputExceededException',
  'SlowDown',
]);
const GOOGLE_RATE_LIMITS = new Set(['rateLimitExceeded', 'userRateLimitExceeded']);

/** Treated as a 429: retried as retryOn says of a 429 (the body says retryable, as for any 429). */
const RATE_LIMITED = { as: 429, code: 'UPSTREAM_RATE_LIMITED', responsibility: 'client' } as const;

export const PROVIDER_RULES: readonly ProviderRule[] = [
  {
    name: 'should-retry-false',
    readsBody: false,
    answer: 'any status with `Stripe-Should-Retry: false` or `X-Should-Retry: false`',
    treatedAs: 'not retried',
    decide: (a) =>
      (firstHeader(a.headers, 'stripe-should-retry') ?? firstHeader(a.headers, 'x-should-retry'))?.toLowerCase() ===
      'false'
        ? { retryable: false }
        : undefined,
  },
  {
    name: 'should-retry-true',
    readsBody: false,
    answer: 'any status with `Stripe-Should-Retry: true` or `X-Should-Retry: true`',
    treatedAs: 'retried (within retry rules: methods, budget, deadline) even when its status is not in `retryOn`',
    decide: (a) =>
      (firstHeader(a.headers, 'stripe-should-retry') ?? firstHeader(a.headers, 'x-should-retry'))?.toLowerCase() ===
      'true'
        ? { retryable: true }
        : undefined,
  },
  {
    name: 'openai-insufficient-quota',
    statuses: [429],
    readsBody: true,
    answer: '429 with OpenAI `error.code` or `error.type` `insufficient_quota`',
    treatedAs:
      '`UPSTREAM_QUOTA_EXHAUSTED`: responsibility `client` (the account), not retryable, not a breaker failure, never paced',
    decide: (a) =>
      errorField(a.body, 'code') === 'insufficient_quota' || errorField(a.body, 'type') === 'insufficient_quota'
        ? {
            code: 'UPSTREAM_QUOTA_EXHAUSTED',
            responsibility: 'client',
            retryable: false,
            breakerFailure: false,
            pacing: 'never',
            hint: 'The OpenAI account has no quota or credit left: check its plan and billing (platform.openai.com/account/billing). Retrying will not help.',
          }
        : undefined,
  },
  {
    name: 'github-primary-rate-limit',
    statuses: [403],
    readsBody: false,
    answer: "403 with `X-RateLimit-Remaining: 0` (GitHub's primary limit)",
    treatedAs: 'a 429: `UPSTREAM_RATE_LIMITED`, retryable after `X-RateLimit-Reset`, pauses the pacer',
    decide: (a) =>
      firstHeader(a.headers, 'x-ratelimit-remaining') === '0'
        ? {
            ...RATE_LIMITED,
            delayMs: untilReset(a, 'x-ratelimit-reset'),
            pacing: 'pause',
            hint: "GitHub's primary rate limit for this token is spent until X-RateLimit-Reset; pace requests (upstreams.*.pacing) or use another token.",
          }
        : undefined,
  },
  {
    name: 'github-secondary-rate-limit',
    statuses: [403, 429],
    readsBody: true,
    answer: '403 or 429 whose message says "secondary rate limit" (GitHub)',
    treatedAs: 'a 429 with `Retry-After` (from the header, else 60 s)',
    decide: (a) =>
      /secondary rate limit/i.test(a.provider.message ?? (a.body.kind === 'json' ? '' : a.body.text))
        ? {
            ...RATE_LIMITED,
            delayMs: retryDelayOf(a.headers, a.wall) ?? 60_000,
            pacing: 'pause',
            hint: "GitHub's secondary rate limit: slow down (fewer concurrent requests, no bursts of writes) and wait for Retry-After.",
          }
        : undefined,
  },
  {
    name: 'aws-throttling',
    statuses: [400],
    readsBody: true,
    answer:
      '400 with AWS `__type`/`Code` `ThrottlingException`, `Throttling`, `TooManyRequestsException`, `RequestLimitExceeded`, `ProvisionedThroughputExceededException`, `SlowDown`',
    treatedAs: 'a 429: `UPSTREAM_RATE_LIMITED`, retryable with backoff',
    decide: (a) =>
      a.provider.code !== undefined && AWS_THROTTLING.has(a.provider.code.slice(a.provider.code.lastIndexOf('#') + 1))
        ? {
            ...RATE_LIMITED,
            hint: 'AWS is throttling this account or resource; retry with backoff, or raise the service quota.',
          }
        : undefined,
  },
  {
    name: 'google-rate-limit',
    statuses: [403],
    readsBody: true,
    answer: '403 with Google `errors[0].reason` `rateLimitExceeded` or `userRateLimitExceeded`',
    treatedAs: 'a 429: `UPSTREAM_RATE_LIMITED`, retryable with backoff',
    decide: (a) => {
      const errors =
        a.body.kind === 'json' && isObject(a.body.value) && isObject(a.body.value.error)
          ? a.body.value.error.errors
          : undefined;
      const reason = Array.isArray(errors) && isObject(errors[0]) ? errors[0].reason : undefined;
      return typeof reason === 'string' && GOOGLE_RATE_LIMITS.has(reason)
        ? {
            ...RATE_LIMITED,
            hint: "Google's API rate limit for this project or user is exceeded; retry with backoff, or raise the quota in the Cloud console.",
          }
        : undefined;
    },
  },
  {
    name: 'anthropic-overloaded',
    statuses: [529],
    readsBody: false,
    answer: '529 (Anthropic "overloaded_error")',
    treatedAs: 'a 503: `UPSTREAM_UNAVAILABLE`, retryable, a breaker failure',
    decide: () => ({
      as: 503,
      code: 'UPSTREAM_UNAVAILABLE',
      responsibility: 'upstream',
      retryable: true,
      breakerFailure: true,
      hint: 'Anthropic is overloaded (529); retry with backoff, or fail over to another target.',
    }),
  },
  {
    name: 'stripe-card-error',
    statuses: [402],
    readsBody: true,
    answer: '402 Stripe `card_declined` and other `card_error` types',
    treatedAs:
      "`UPSTREAM_CLIENT_ERROR` with the provider's code in `provider.code`, not retryable, never a breaker failure",
    decide: (a) =>
      errorField(a.body, 'type') === 'card_error' || errorField(a.body, 'code') === 'card_declined'
        ? {
            code: 'UPSTREAM_CLIENT_ERROR',
            responsibility: 'client',
            retryable: false,
            breakerFailure: false,
            hint: 'The card was declined or is invalid (provider.code says why); ask the customer for another payment method. Retrying will not help.',
          }
        : undefined,
  },
];
