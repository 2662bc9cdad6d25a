/**
 * `retryOn` and `failOn` words (SPEC §3) as predicates over the one attempt
 * classification, compiled once per route or upstream.
 */
import type { Condition } from '../config/types.js';
import type { Classification } from '../upstream/classify.js';

export type ConditionPredicate = (classification: Classification) => boolean;

const GATEWAY_ERRORS = new Set([502, 503, 504]);

function compileOne(condition: Condition): ConditionPredicate {
  switch (condition) {
    case '5xx':
      return (c) => c.outcome === 'http_5xx';
    case 'gateway-error':
      return (c) => c.status !== undefined && GATEWAY_ERRORS.has(c.status);
    case 'connect-failure':
      return (c) => c.outcome === 'connect_failure';
    case 'reset':
      return (c) => c.outcome === 'reset';
    case 'timeout':
      return (c) => c.outcome === 'timeout';
    default: {
      const status = Number(condition);
      return (c) => c.status === status;
    }
  }
}

/** True when any of the conditions holds. */
export function compileConditions(conditions: readonly Condition[]): ConditionPredicate {
  const predicates = conditions.map(compileOne);
  return (classification) => predicates.some((predicate) => predicate(classification));
}
