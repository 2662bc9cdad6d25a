/**
 * Series created at zero when a config loads (SPEC §6), for the families
 * whose label values take some working out.
 */
import type { Config } from '../config/types.js';
import type { FastCounter } from './fast-metrics.js';

/** The `breakwater_shed_total` series a route can count (SPEC §13): per class (`""` without classes) and reason where it waits. */
export function zeroShed(shed: FastCounter<'route' | 'priority' | 'reason'>, config: Config, route: string, queued: boolean, paced: boolean): void {
  const classes = config.priorities?.classes ?? [{ name: '', quotaFloor: null }];
  for (const { name: priority, quotaFloor } of classes) {
    const reasons = [
      ...(queued ? ['queue_full', 'queue_timeout'] : []),
      ...(queued && config.priorities ? ['displaced'] : []),
      ...(paced ? ['max_wait'] : []),
      ...(paced && quotaFloor !== null ? ['quota_floor'] : []),
    ];
    for (const reason of reasons) shed.inc({ route, priority, reason }, 0);
  }
}

/** `breakwater_forward_requests_total` (SPEC §19.3): per caller (`""`: none matched) and the decisions its mode can make. */
export function zeroForward(forwardRequests: FastCounter<'caller' | 'decision'>, config: Config): void {
  const { forwardProxy } = config;
  if (!forwardProxy.enabled) return;
  for (const { name, mode } of [{ name: '', mode: forwardProxy.mode }, ...forwardProxy.callers]) {
    for (const decision of ['allowed', 'denied', ...(mode === 'report' ? ['would_deny'] : [])]) forwardRequests.inc({ caller: name, decision }, 0);
  }
}
