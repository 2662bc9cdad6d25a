/**
 * What an upstream's pacing (pacer.ts) shows the rest of the code: a policy
 * layer per route, the pacers' snapshot for /status and the metrics, and
 * what it is built with.
 */
import type { Logger } from '../../observe/logger.js';
import type { Metrics } from '../../observe/metrics.js';
import type { Policy, PolicyDeps } from '../context.js';
import type { SharedLimits } from '../rate-limit/shared-limits.js';
import type { PacingSnapshot } from './store.js';

export interface UpstreamPacing {
  /** The policy layer for one route; `pathPrefix` finds the path segment a scope is learned by. */
  policy(route: string, pathPrefix?: string): Policy;
  snapshot(): PacingSnapshot[];
  close(): void;
}

export interface PacingDeps extends PolicyDeps {
  readonly metrics: Metrics;
  readonly logger?: Logger;
  /** The Redis connection, for `shared: true`. */
  readonly shared?: SharedLimits;
}
