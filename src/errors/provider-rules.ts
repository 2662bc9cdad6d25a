/**
 * Provider-aware decisions (SPEC §14): what a provider's error answer
 * means beyond its status. The built-in rules (provider-table.ts), and the
 * upstream's own `errorRules`, tried first. A decision
 * changes what Breakwater does (retry, breaker, pacer, the §5 body), never
 * the status the client sees.
 */

import type { ErrorRuleConfig } from '../config/types.js';

import { entryForCode, upstreamStatusEntry, type UpstreamStatusEntry } from './upstream-catalog.js';
import { firstHeader } from '../lib/headers.js';
import { PROVIDER_RULES, type ErrorAnswer, type ProviderRule, type RuleDecision } from './provider-table.js';

function userRule(config: ErrorRuleConfig, index: number): ProviderRule {
  const { when } = config;
  const headers = Object.entries(when.header ?? {}).map(
    ([name, value]) => [name.toLowerCase(), value.toLowerCase()] as const,
  );
  const message = when.message?.toLowerCase() ?? null;
  return {
    name: `errorRules[${index}]`,
    statuses: when.status !== null ? [when.status] : undefined,
    readsBody: when.code !== null || when.message !== null,
    answer: '',
    treatedAs: '',
    decide(a) {
      if (when.status !== null && a.status !== when.status) return undefined;
      if (when.code !== null && a.provider.code !== when.code) return undefined;
      if (headers.some(([name, value]) => firstHeader(a.headers, name)?.toLowerCase() !== value)) return undefined;
      if (
        message !== null &&
        !(a.provider.message ?? (a.body.kind === 'json' ? '' : a.body.text)).toLowerCase().includes(message)
      )
        return undefined;
      return {
        ...(config.as !== null && { as: config.as }),
        ...(config.retryable !== null && { retryable: config.retryable }),
        ...(config.breakerFailure !== null && { breakerFailure: config.breakerFailure }),
        ...(config.responsibility !== null && { responsibility: config.responsibility }),
      };
    },
  };
}

function definedOnly<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, field]) => field !== undefined)) as T;
}

/** The rules of one upstream: its own first, then the built-in table unless `providerRules: off`. */
export class ProviderRules {
  private readonly rules: readonly ProviderRule[];

  constructor(errorRules: readonly ErrorRuleConfig[], builtIn: boolean) {
    this.rules = [...errorRules.map(userRule), ...(builtIn ? PROVIDER_RULES : [])];
  }

  get empty(): boolean {
    return this.rules.length === 0;
  }

  /** Whether an answer with this status may meet a rule at all (a 2xx never does). */
  applies(status: number): boolean {
    return status >= 400 && this.rules.some((rule) => rule.statuses === undefined || rule.statuses.includes(status));
  }

  /** Whether deciding on this status needs the body read. */
  readsBody(status: number): boolean {
    return this.rules.some((rule) => rule.readsBody && (rule.statuses === undefined || rule.statuses.includes(status)));
  }

  /**
   * The decision for an answer: every matching rule in order, a field set
   * by an earlier one kept (so `X-Should-Retry` refines a provider rule
   * only where it said nothing); named by the first that says what the
   * answer is (`as` or `code`), else by the first match.
   */
  decide(answer: ErrorAnswer): RuleDecision | undefined {
    let decision: Omit<RuleDecision, 'rule'> | undefined;
    let named: string | undefined;
    let first: string | undefined;
    for (const rule of this.rules) {
      if (rule.statuses !== undefined && !rule.statuses.includes(answer.status)) continue;
      const found = rule.decide(answer);
      if (!found) continue;
      first ??= rule.name;
      if (named === undefined && (found.as !== undefined || found.code !== undefined)) named = rule.name;
      decision = { ...definedOnly(found), ...decision };
    }
    return decision ? { ...decision, rule: named ?? first! } : undefined;
  }
}

/**
 * The §5 fields of an answer a rule decided: its code (else the code of `as`, else of the status),
 * responsibility, retryable and hint.
 */
export function describeDecision(status: number, decision: RuleDecision): UpstreamStatusEntry {
  const base =
    decision.code !== undefined ? entryForCode(decision.code, status) : upstreamStatusEntry(decision.as ?? status);
  return {
    ...base,
    responsibility: decision.responsibility ?? base.responsibility,
    retryable: decision.retryable ?? base.retryable,
    hint: decision.hint ?? base.hint,
  };
}

/**
 * The §5 fields of an upstream's error answer: a rule's decision when one decided it, else its status's (what
 * `errors.normalize: all` says).
 */
export function answerEntry(status: number, decision: RuleDecision | undefined): UpstreamStatusEntry {
  return decision ? describeDecision(status, decision) : upstreamStatusEntry(status);
}
