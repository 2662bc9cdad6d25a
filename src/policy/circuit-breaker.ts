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
import type { CircuitBreakerConfig } from '../config/types.js';
import type { AttemptResult } from './context.js';
import type { BreakerDeps, BreakerScope, CircuitState, UpstreamBreaker } from './breaker-types.js';

export type { BreakerDeps, BreakerScope, BreakerStatus, CircuitState, UpstreamBreaker } from './breaker-types.js';
import { compileConditions } from './conditions.js';
import { CallWindow, openRefusal, RecentCalls, shedRefusal } from './breaker-window.js';
import { HeldCalls, MIN_PROBE_MS } from './breaker-held.js';
import type { Signal } from '../lib/signal.js';

/** Probes in flight at once when half-open (one more per success), and the successes that close it. */
export const PROBES = 3;
/** Calls held at once per upstream; beyond it, refused at once (memory bound). */
const MAX_HELD = 10_000;

/**
 * How a call got through: a probe carries its generation (> 0), any other
 * call minus the epoch it was admitted in (< 0). Results from an older
 * generation or epoch (a call that outlived an opening or a closing) are
 * not counted.
 */
type Admission = number;

export function createUpstreamBreaker(upstream: string, config: CircuitBreakerConfig, deps: BreakerDeps): UpstreamBreaker {
  const { metrics, now } = deps;
  const random = deps.random ?? Math.random;
  const isFailure = compileConditions(config.failOn);
  // failureRate 100 turns the breaker off: it never opens and never sheds.
  const canOpen = config.failureRate < 100;
  const canShed = canOpen && config.shedding.enabled;
  const recentSize = config.minimumRequests;
  /** Strictly above failureRate %; the tolerance keeps a product like 18.4 x 375 (6899.999...) from opening at exactly 18.4 %. */
  const opensAt = (failures: number) => failures * 100 - config.failureRate * recentSize > 1e-9 * recentSize;

  // The last `minimumRequests` calls, and the shedding window (breaker-window.ts).
  const recent = new RecentCalls(recentSize);
  const calls = new CallWindow(config.window, { enabled: canShed, k: config.shedding.k, minimumRequests: config.minimumRequests }, now());

  let state: CircuitState = 'closed';
  /** When the current episode (closed -> ... -> closed) first opened. */
  let episodeStart = 0;
  let openUntil = 0;
  let openPeriod = config.openFor;
  /** Failed probes since the outage outlasted `hold`: the open period doubles with each. */
  let reopenedPastHold = 0;
  let openedWith = 0;
  /** Bumped on every opening: results of older probes are ignored. */
  let generation = 0;
  /** Bumped on every closing: results of calls admitted before the outage are ignored. */
  let epoch = 1;
  let probesInFlight = 0;
  let probeSuccesses = 0;
  let probeFailures = 0;
  /** The breaker was dropped (reload, evicted target): calls pass straight through. */
  let dropped = false;

  /** Calls waiting for the circuit in the first seconds of an outage (breaker-held.ts). */
  const held = new HeldCalls<Admission>(now, () => pump());

  /** Closed, shedding or not: calls are counted in the window and nothing is held. */
  const isClosed = () => state === 'closed' || state === 'shedding';

  const enter = (next: CircuitState) => {
    if (next === state) return;
    state = next;
    metrics.circuitTransitions.inc({ upstream, to: next });
  };

  /** Moves the window on; a closed circuit starts or stops shedding with it. */
  const advance = (at: number) => {
    if (!calls.advance(at)) return;
    if (state === 'closed' && calls.shedProbability > 0) enter('shedding');
    else if (state === 'shedding' && calls.shedProbability === 0) enter('closed');
  };

  const clearWindow = () => {
    calls.clear();
    recent.clear();
  };

  /** `since`: when the outage began (the oldest failure that opened it); `hold` counts from there. */
  const open = (at: number, since = at) => {
    if (isClosed()) {
      episodeStart = since;
      openPeriod = config.openFor;
      reopenedPastHold = 0;
    } else if (at - episodeStart >= config.hold) {
      // openFor, then twice as long after each further failed probe.
      openPeriod = Math.min(config.maxOpenFor, config.openFor * 2 ** reopenedPastHold++);
    }
    // Jittered down by up to a quarter, never above the configured bound.
    openUntil = at + openPeriod * (1 - 0.25 * random());
    generation++;
    probesInFlight = 0;
    probeSuccesses = 0;
    probeFailures = 0;
    enter('open');
    schedule();
  };

  const close = () => {
    clearWindow();
    epoch++;
    enter('closed');
    pump();
  };

  /** A call may go now (see {@link Admission}), or not (undefined). */
  const admit = (at: number, mayShed: boolean): Admission | undefined => {
    if (state === 'open') {
      if (at < openUntil) return undefined;
      enter('half_open');
    }
    if (state === 'half_open') {
      if (probesInFlight >= PROBES + probeSuccesses) return undefined;
      probesInFlight++;
      return generation;
    }
    advance(at);
    if (mayShed && calls.shedProbability > 0 && random() < calls.shedProbability) return undefined;
    return -epoch;
  };

  const record = (admission: Admission, didFail: boolean, at: number) => {
    if (admission > 0) {
      if (admission !== generation || state !== 'half_open') return;
      probesInFlight--;
      // Down means nearly every call fails: a failed probe reopens it before
      // any probe succeeded, or when PROBES probes in a row failed since the
      // last success (a crash loop that answers once, then dies); not on an
      // ordinary failure of an upstream that answers most calls, which would
      // otherwise be held shut by them.
      if (didFail) {
        if (probeSuccesses === 0 || ++probeFailures >= PROBES) open(at);
        else pump();
      } else {
        probeFailures = 0;
        if (++probeSuccesses >= PROBES) close();
        else pump();
      }
      return;
    }
    // A call from before it opened, or from before the outage it recovered from.
    if (-admission !== epoch || !isClosed()) return;
    advance(at);
    calls.record(didFail);
    recent.record(didFail, at);
    if (didFail && canOpen && opensAt(recent.failures) && recent.fresh(at, config.window)) {
      openedWith = recent.failures;
      open(at, recent.firstFailure());
    }
  };

  /** A probe that ended without a verdict (the client left): its slot is free again. */
  const release = (admission: Admission) => {
    if (admission > 0 && admission === generation && state === 'half_open') {
      probesInFlight--;
      pump();
    }
  };

  /** When the circuit may admit its next call (a probe), for held calls. */
  const nextProbeAt = () => (state === 'open' ? openUntil : Infinity);

  /** Lets held calls go, in arrival order, as far as the circuit admits them; refuses those held too long. */
  const pump = (): void =>
    // Too close to its deadline to be a useful probe: it could only time out.
    held.pump((deadline, at) => (!isClosed() && deadline - at < MIN_PROBE_MS ? undefined : admit(at, false)), nextProbeAt());

  /** Arms the timer when the circuit opens while calls are held. */
  const schedule = (): void => {
    if (held.size > 0) pump();
  };

  /** May this call wait for the circuit, and until when? */
  const mayHold = (ctx: BreakerScope, at: number): boolean =>
    config.hold > 0 && !isClosed() && at - episodeStart < config.hold && held.waiting < MAX_HELD && (ctx.deadline ?? Infinity) - at >= MIN_PROBE_MS;

  const wait = (deadline: number, at: number, signal: Signal): Promise<Admission | undefined> => held.hold(Math.min(at + config.hold, deadline), deadline, signal, nextProbeAt());

  const refuse = (ctx: BreakerScope, at: number): never => {
    metrics.circuitRejections.inc({ upstream });
    ctx.flags.add('CIRCUIT_OPEN');
    throw isClosed() ? shedRefusal(upstream, calls) : openRefusal(upstream, { halfOpen: state === 'half_open', openUntil, episodeStart, openedWith, recentSize }, at);
  };

  const run = async <C extends BreakerScope>(ctx: C, signal: Signal, next: (ctx: C, signal: Signal) => Promise<AttemptResult>): Promise<AttemptResult> => {
    if (dropped) return next(ctx, signal);
    let at = now();
    let admission = admit(at, true);
    if (admission === undefined) {
      if (!mayHold(ctx, at)) refuse(ctx, at);
      admission = await wait(ctx.deadline ?? Infinity, at, signal);
      at = now();
      if (admission === undefined) refuse(ctx, at);
    }
    let result: AttemptResult;
    try {
      result = await next(ctx, signal);
    } catch (error) {
      release(admission!);
      throw error;
    }
    const failed = isFailure(result.classification);
    at = now();
    record(admission!, failed, at);
    // A failed probe of an upstream down for longer than `hold`: a retry
    // would wait its backoff only to be refused; the app gets this answer now.
    if (failed && admission! > 0 && state === 'open' && at - episodeStart >= config.hold) return { ...result, final: true };
    return result;
  };

  /** The state as of now: the window advanced, and an open period that ran out shown as half_open even with no call to probe. */
  const current = (at: number): CircuitState => {
    if (isClosed()) advance(at);
    else if (state === 'open' && at >= openUntil) enter('half_open');
    return state;
  };

  return {
    upstream,
    state: () => current(now()),
    failureRate: () => {
      advance(now());
      return calls.failureRate();
    },
    status: () => {
      const at = now();
      current(at);
      return {
        state,
        failureRate: calls.failureRate(),
        shedRate: state === 'shedding' ? calls.shedProbability : 0,
        held: held.waiting,
        openForMs: state === 'open' ? Math.max(0, Math.ceil(openUntil - at)) : 0,
      };
    },
    policy: { run, close() {} },
    call: (scope, signal, attempt) => run(scope, signal, attempt),
    close() {
      dropped = true;
      // Held calls go on to the upstream: the breaker is being replaced, not the request.
      held.releaseAll(-epoch);
    },
  };
}
