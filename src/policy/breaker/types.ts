/**
 * What a circuit breaker (circuit-breaker.ts) shows the rest of the code:
 * its state and status, the policy layer, a call outside a pipeline.
 */
import type { Metrics } from '../../observe/metrics.js';
import type { CIRCUIT_STATES } from '../../observe/metric-families.js';
import type { Signal } from '../../lib/signal.js';
import type { Flag } from '../../observe/access-log.js';
import type { AttemptResult, Policy } from '../context.js';
import type { Classification } from '../../upstream/classify.js';

export type CircuitState = (typeof CIRCUIT_STATES)[number];

export interface BreakerStatus {
  readonly state: CircuitState;
  /** Failure rate over the window, 0..1. */
  readonly failureRate: number;
  /** Share of calls shed now, 0..1. */
  readonly shedRate: number;
  /** Calls waiting for the circuit. */
  readonly held: number;
  /** ms until the next probe while open, else 0. */
  readonly openForMs: number;
  /** `enforce` or `report` (SPEC §19.2); in report, `state` is the state enforcing would have. */
  readonly mode: 'enforce' | 'report';
}

export interface UpstreamBreaker {
  readonly upstream: string;
  /** `mode: report` (SPEC §19.2): it refuses nothing, so failover sees its target available whatever its state. */
  readonly reportOnly: boolean;
  state(): CircuitState;
  /** Failure rate over the current window, 0..1 (for /status). */
  failureRate(): number;
  status(): BreakerStatus;
  /** The policy layer that routes a route's attempts through this breaker. */
  readonly policy: BreakerPolicy;
  /** One call through the breaker outside a route's pipeline (a CONNECT tunnel's connection attempt). */
  call(scope: BreakerScope, signal: Signal, attempt: () => Promise<AttemptResult>): Promise<AttemptResult>;
  close(): void;
}

/** What the breaker reads and marks of the request it admits: its flags and its deadline. */
/** The breaker as a layer, and the one outcome it learns after its call returned. */
export interface BreakerPolicy extends Policy {
  /** The call answered and was counted, then failed as `classification` says (SPEC §16: a stream cut mid-body). */
  failedLate(classification: Classification): void;
}

export interface BreakerScope {
  readonly flags: Set<Flag>;
  /** The route a report is counted under (SPEC §19.2); '' outside one (a CONNECT tunnel). */
  readonly route?: string;
  readonly deadline?: number;
}

export interface BreakerDeps {
  readonly metrics: Metrics;
  /** Milliseconds on a monotonic clock. */
  readonly now: () => number;
  /** Uniform in [0, 1): shedding draws and open-period jitter. */
  readonly random?: () => number;
}
