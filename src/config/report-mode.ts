/**
 * Which policies of a route are in report mode (SPEC §19.2), as the
 * `policy` label of breakwater_policy_reports_total names them: what the
 * metrics create at zero when a config loads.
 */
import type { Config, RouteConfig } from './types.js';

export function reportingPolicies(config: Config, route: RouteConfig): string[] {
  const policies: string[] = [];
  if (route.rateLimit?.mode === 'report') policies.push('rate_limit');
  const upstream = route.upstream === null ? undefined : config.upstreams[route.upstream];
  if (upstream?.circuitBreaker.mode === 'report') policies.push('circuit_breaker');
  if (upstream?.pacing.enabled && upstream.pacing.mode === 'report') policies.push('pacing');
  return policies;
}
