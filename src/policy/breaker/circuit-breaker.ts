/**
 * One circuit breaker per upstream (SPEC §3 `circuitBreaker`). It exists to
 * fail fast when an upstream is down and to give it room to recover, never
 * to shut an upstream that still answers part of its calls. Every attempt,
 * retries included, is one call; a call fails when its outcome is one of
 * `failOn`.
 *
 * States (the `breakwater_circuit_state` label):
 * - `closed`: calls pass.
 * - `shedding`: the upstream accepts too few calls: client-side adaptive
 *   throttling (Google SRE book, "Handling Overload"; Envoy's admission
 *   control). Over `window`, with `requests` the calls sent and `accepts`
 *   those that did not fail, a call is refused with probability
 *   min(0.9, max(0, (requests - k x accepts) / (requests + 1))): only the
 *   excess over k times what the upstream accepts is shed. Shed calls are
 *   not counted as requests (as in Envoy), so the rate settles at
 *   1 - k x success rate: with k = 2 a 50 %-failing upstream sheds nothing,
 *   an 80 %-failing one sheds 60 %. Nothing is shed below
 *   `minimumRequests` calls sent in the window. Recomputed once per tenth of the window,
 *   so the state does not flap per call.
 * - `open`: the upstream looks down: more than `failureRate` % of the last
 *   `minimumRequests` calls failed, all of them within `window`. Open for
 *   `openFor`, then `half_open`. While the outage is younger than `hold`, a
 *   call that meets the open circuit waits for it (for at most `hold` and
 *   what is left of its deadline) instead of failing: a blip shorter than
 *   `hold` costs latency, not errors (linkerd2-proxy's fail-fast timeout).
 *   Past `hold`, the upstream is down, not blipping: new calls are refused
 *   at once, and each further failed probe doubles the open period (openFor,
 *   2 x openFor, ...) up to `maxOpenFor` (Linkerd's failure-accrual backoff,
 *   jittered down by up to a quarter so replicas do not probe in step).
 * - `half_open`: `PROBES` probes in flight (so that one slow answer does
 *   not hold the others back), one more for each success; after `PROBES`
 *   successes it closes, with a fresh window, and the calls it held go.
 *   A failed probe opens it again before any probe succeeded, or when
 *   `PROBES` failed in a row since the last success (a crash loop that
 *   answers once, then dies); an ordinary failure of an upstream that
 *   answers most calls does not.
 *
 * The outage's age, which `hold` is measured against, counts from the
 * oldest failure among the calls that opened the circuit, not from the
 * moment it opened.
 *
 * A refused call, shed or open, is CIRCUIT_OPEN 503 with `Retry-After`.
 * `failureRate: 100` turns the breaker off (it never opens, never sheds);
 * `shedding.enabled: false` never sheds.
 *
 * Why not opossum (used before): it keeps a timer per breaker (500
 * forward-proxy targets were 500 wake-ups a second), counts its own
 * rejections in its window (we cleared it by hand on close), cannot leave a
 * call out of its window (client-side errors counted as successes), and has
 * none of shedding, holding or a growing open period; this is a state
 * machine on a bucket ring, like the retry budget, with no timer unless a
 * call is held.
 */
import type { CircuitBreakerConfig } from '../../config/types.js';
import type { Signal } from '../../lib/signal.js';
import type { AttemptResult } from '../context.js';
import type { Classification } from '../../upstream/classify.js';
import type { BreakerDeps, BreakerScope, BreakerStatus, UpstreamBreaker } from './types.js';
import { compileConditions } from '../conditions.js';
import { openRefusal, shedRefusal } from './window.js';
import { HeldCalls, MIN_PROBE_MS } from './held.js';
import { Circuit, type Admission } from './state.js';

export type { BreakerDeps, BreakerScope, BreakerStatus, CircuitState, UpstreamBreaker } from './types.js';
export { PROBES } from './state.js';

/** Calls held at once per upstream; beyond it, refused at once (memory bound). */
const MAX_HELD = 10_000;

/** CIRCUIT_OPEN, worded for shedding or for an open circuit. */
function refusal(upstream: string, circuit: Circuit, at: number) {
  const { state, openUntil, episodeStart, openedWith, recentSize } = circuit;
  return circuit.isClosed()
    ? shedRefusal(upstream, circuit.calls)
    : openRefusal(upstream, { halfOpen: state === 'half_open', openUntil, episodeStart, openedWith, recentSize }, at);
}

function statusOf(circuit: Circuit, held: number, at: number, mode: BreakerStatus['mode']): BreakerStatus {
  const state = circuit.current(at);
  return {
    mode,
    state,
    failureRate: circuit.calls.failureRate(),
    shedRate: state === 'shedding' ? circuit.calls.shedProbability : 0,
    held,
    openForMs: state === 'open' ? Math.max(0, Math.ceil(circuit.openUntil - at)) : 0,
  };
}

/**
 * Report mode (SPEC §19.2): a call the circuit would refuse or hold is sent
 * at once, flagged and counted (once per request), and its outcome left out,
 * so state, probes and the metrics are what enforcing would give.
 */
function reported<C extends BreakerScope>(
  metrics: BreakerDeps['metrics'],
  ctx: C,
  signal: Signal,
  next: (ctx: C, signal: Signal) => Promise<AttemptResult>,
): Promise<AttemptResult> {
  if (!ctx.flags.has('WOULD_CIRCUIT_OPEN')) {
    ctx.flags.add('WOULD_CIRCUIT_OPEN');
    metrics.policyReports.inc({ route: ctx.route ?? '', policy: 'circuit_breaker' });
  }
  return next(ctx, signal);
}

/**
 * How a call the circuit did not admit at once gets in: held in `held`
 * while the circuit is not closed, within `hold` of the outage's start and
 * the call's deadline, until the circuit admits it; refused otherwise.
 */
function createGate(
  upstream: string,
  config: CircuitBreakerConfig,
  circuit: Circuit,
  held: HeldCalls<Admission>,
  deps: BreakerDeps,
) {
  const { metrics, now } = deps;
  /** Lets held calls go, in arrival order, as far as the circuit admits them; refuses those held too long. */
  const pump = (): void =>
    // Too close to its deadline to be a useful probe: it could only time out.
    held.pump(
      (deadline, at) => (!circuit.isClosed() && deadline - at < MIN_PROBE_MS ? undefined : circuit.admit(at, false)),
      circuit.nextProbeAt(),
    );

  /** May this call wait for the circuit? */
  const mayHold = (ctx: BreakerScope, at: number): boolean =>
    config.hold > 0 &&
    !circuit.isClosed() &&
    at - circuit.episodeStart < config.hold &&
    held.waiting < MAX_HELD &&
    (ctx.deadline ?? Infinity) - at >= MIN_PROBE_MS;

  const refuse = (ctx: BreakerScope, at: number): never => {
    metrics.circuitRejections.inc({ upstream });
    ctx.flags.add('CIRCUIT_OPEN');
    throw refusal(upstream, circuit, at);
  };

  /** A call the circuit did not admit at once: held until it is, or refused. */
  const holdOrRefuse = async (ctx: BreakerScope, signal: Signal, at: number): Promise<Admission> => {
    if (!mayHold(ctx, at)) refuse(ctx, at);
    const deadline = ctx.deadline ?? Infinity;
    const waited = await held.hold(Math.min(at + config.hold, deadline), deadline, signal, circuit.nextProbeAt());
    return waited ?? refuse(ctx, now());
  };
  return { pump, holdOrRefuse };
}

export function createUpstreamBreaker(
  upstream: string,
  config: CircuitBreakerConfig,
  deps: BreakerDeps,
): UpstreamBreaker {
  const { metrics, now } = deps;
  const isFailure = compileConditions(config.failOn);
  /** Calls waiting for the circuit in the first seconds of an outage (held.ts). */
  const held = new HeldCalls<Admission>(now, () => gate.pump());
  const circuit = new Circuit(
    config,
    { upstream, metrics, random: deps.random ?? Math.random, onChange: () => gate.pump() },
    now(),
  );
  const gate = createGate(upstream, config, circuit, held, deps);
  /** The breaker was dropped (reload, evicted target): calls pass straight through. */
  let dropped = false;

  const reportOnly = config.mode === 'report';

  const run = async <C extends BreakerScope>(
    ctx: C,
    signal: Signal,
    next: (ctx: C, signal: Signal) => Promise<AttemptResult>,
  ): Promise<AttemptResult> => {
    if (dropped) return next(ctx, signal);
    // Admitted at once on the common path: no promise, no await.
    const admission = circuit.admit(now(), true);
    if (admission === undefined && reportOnly) return reported(metrics, ctx, signal, next);
    const admitted = admission ?? (await gate.holdOrRefuse(ctx, signal, now()));
    let result: AttemptResult;
    try {
      result = await next(ctx, signal);
    } catch (error) {
      circuit.release(admitted);
      throw error;
    }
    // A provider rule's decision outranks failOn (SPEC §14). A 401 to an OAuth2 token is the token's matter, never
    // the upstream's failure, whatever failOn lists (SPEC §18).
    const failed =
      result.tokenRefused === true
        ? false
        : (result.classification.rule?.breakerFailure ?? isFailure(result.classification));
    const at = now();
    circuit.record(admitted, failed, at);
    // A failed probe of an upstream down for longer than `hold`: a retry
    // would wait its backoff only to be refused; the app gets this answer now.
    if (failed && circuit.downPastHold(admitted, at)) return { ...result, final: true };
    return result;
  };

  /** SPEC §16: a call that answered, then failed (a stream cut for its silence), under `failOn`. */
  const failedLate = (classification: Classification): void => {
    if (!dropped && isFailure(classification)) circuit.amendLate(now());
  };

  return {
    upstream,
    reportOnly,
    state: () => circuit.current(now()),
    failureRate: () => {
      circuit.advance(now());
      return circuit.calls.failureRate();
    },
    status: () => statusOf(circuit, held.waiting, now(), config.mode),
    policy: { run, close() {}, failedLate },
    call: (scope, signal, attempt) => run(scope, signal, attempt),
    close() {
      dropped = true;
      // Held calls go on to the upstream: the breaker is being replaced, not the request.
      held.releaseAll(circuit.passThrough());
    },
  };
}
