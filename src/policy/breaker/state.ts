/**
 * The circuit's state machine (the rules are in circuit-breaker.ts's
 * header): which calls it admits, what their results do to it. No timers
 * and no I/O; the breaker (circuit-breaker.ts) holds calls and refuses
 * them around it, and is told through `onChange` when held calls may go.
 */
import type { CircuitBreakerConfig } from '../../config/types.js';
import type { Metrics } from '../../observe/metrics.js';
import type { CircuitState } from './types.js';
import { CallWindow, RecentCalls } from './window.js';

/** Probes in flight at once when half-open (one more per success), and the successes that close it. */
export const PROBES = 3;

/**
 * How a call got through: a probe carries its generation (> 0), any other
 * call minus the epoch it was admitted in (< 0). Results from an older
 * generation or epoch (a call that outlived an opening or a closing) are
 * not counted.
 */
export type Admission = number;

export interface CircuitDeps {
  readonly upstream: string;
  readonly metrics: Metrics;
  readonly random: () => number;
  /** Called when the circuit opened, closed or freed a probe slot: held calls may go, or must wait longer. */
  readonly onChange: () => void;
}

export class Circuit {
  state: CircuitState = 'closed';
  /** When the current episode (closed -> ... -> closed) first opened. */
  episodeStart = 0;
  openUntil = 0;
  /** Failures among the last `minimumRequests` calls when it opened. */
  openedWith = 0;
  /** The last `minimumRequests` calls, and the shedding window (window.ts). */
  readonly recent: RecentCalls;
  readonly calls: CallWindow;
  readonly recentSize: number;

  private readonly canOpen: boolean;
  private openPeriod: number;
  /** Failed probes since the outage outlasted `hold`: the open period doubles with each. */
  private reopenedPastHold = 0;
  /** Bumped on every opening: results of older probes are ignored. */
  private generation = 0;
  /** Bumped on every closing: results of calls admitted before the outage are ignored. */
  private epoch = 1;
  private probesInFlight = 0;
  private probeSuccesses = 0;
  private probeFailures = 0;

  constructor(
    private readonly config: CircuitBreakerConfig,
    private readonly deps: CircuitDeps,
    at: number,
  ) {
    // failureRate 100 turns the breaker off: it never opens and never sheds.
    this.canOpen = config.failureRate < 100;
    this.recentSize = config.minimumRequests;
    this.openPeriod = config.openFor;
    this.recent = new RecentCalls(this.recentSize);
    this.calls = new CallWindow(
      config.window,
      {
        enabled: this.canOpen && config.shedding.enabled,
        k: config.shedding.k,
        minimumRequests: config.minimumRequests,
      },
      at,
    );
  }

  /** Closed, shedding or not: calls are counted in the window and nothing is held. */
  isClosed(): boolean {
    return this.state === 'closed' || this.state === 'shedding';
  }

  /** The admission a call gets when the breaker is dropped and its held calls pass. */
  passThrough(): Admission {
    return -this.epoch;
  }

  /** A call may go now (see {@link Admission}), or not (undefined). */
  admit(at: number, mayShed: boolean): Admission | undefined {
    if (this.state === 'open') {
      if (at < this.openUntil) return undefined;
      this.enter('half_open');
    }
    if (this.state === 'half_open') {
      if (this.probesInFlight >= PROBES + this.probeSuccesses) return undefined;
      this.probesInFlight++;
      return this.generation;
    }
    this.advance(at);
    if (mayShed && this.calls.shedProbability > 0 && this.deps.random() < this.calls.shedProbability) return undefined;
    return -this.epoch;
  }

  record(admission: Admission, didFail: boolean, at: number): void {
    if (admission > 0) return this.recordProbe(admission, didFail, at);
    // A call from before it opened, or from before the outage it recovered from.
    if (-admission !== this.epoch || !this.isClosed()) return;
    this.advance(at);
    this.calls.record(didFail);
    this.recent.record(didFail, at);
    if (didFail) this.openIfDue(at);
  }

  /** A probe that ended without a verdict (the client left): its slot is free again. */
  /**
   * A call already recorded as a success failed after its answer began (SPEC §16: a stream cut for its
   * silence): the newest success in the window is amended in place, so the failure rate is what it would have
   * been (when none is left in the window, a failure is counted now); it may open the circuit.
   * Only while closed: probes and calls of an older episode were settled with their answer.
   */
  amendLate(at: number): void {
    if (!this.isClosed()) return;
    this.advance(at);
    if (this.recent.amend(at, this.config.window)) this.calls.amend();
    else {
      // Its success has left the window (a stream that flowed for longer): the failure counts now.
      this.calls.record(true);
      this.recent.record(true, at);
    }
    this.openIfDue(at);
  }

  /** Opens when enough of the last calls failed, all within the window. */
  private openIfDue(at: number): void {
    if (this.canOpen && this.opensAt(this.recent.failures) && this.recent.fresh(at, this.config.window)) {
      this.openedWith = this.recent.failures;
      this.open(at, this.recent.firstFailure());
    }
  }

  release(admission: Admission): void {
    if (admission > 0 && admission === this.generation && this.state === 'half_open') {
      this.probesInFlight--;
      this.deps.onChange();
    }
  }

  /** Was this the failed probe of an upstream down for longer than `hold`? */
  downPastHold(admission: Admission, at: number): boolean {
    return admission > 0 && this.state === 'open' && at - this.episodeStart >= this.config.hold;
  }

  /** When the circuit may admit its next call (a probe), for held calls. */
  nextProbeAt(): number {
    return this.state === 'open' ? this.openUntil : Infinity;
  }

  /**
   * The state as of now: the window advanced, and an open period that ran out shown as half_open even with no
   * call to probe.
   */
  current(at: number): CircuitState {
    if (this.isClosed()) this.advance(at);
    else if (this.state === 'open' && at >= this.openUntil) this.enter('half_open');
    return this.state;
  }

  /** Moves the window on; a closed circuit starts or stops shedding with it. */
  advance(at: number): void {
    if (!this.calls.advance(at)) return;
    if (this.state === 'closed' && this.calls.shedProbability > 0) this.enter('shedding');
    else if (this.state === 'shedding' && this.calls.shedProbability === 0) this.enter('closed');
  }

  /**
   * Strictly above failureRate %; the tolerance keeps a product like 18.4 x 375 (6899.999...) from opening at
   * exactly 18.4 %.
   */
  private opensAt(failures: number): boolean {
    return failures * 100 - this.config.failureRate * this.recentSize > 1e-9 * this.recentSize;
  }

  private recordProbe(admission: Admission, didFail: boolean, at: number): void {
    if (admission !== this.generation || this.state !== 'half_open') return;
    this.probesInFlight--;
    // Down means nearly every call fails: a failed probe reopens it before
    // any probe succeeded, or when PROBES probes in a row failed since the
    // last success (a crash loop that answers once, then dies); not on an
    // ordinary failure of an upstream that answers most calls, which would
    // otherwise be held shut by them.
    if (didFail) {
      if (this.probeSuccesses === 0 || ++this.probeFailures >= PROBES) this.open(at);
      else this.deps.onChange();
    } else {
      this.probeFailures = 0;
      if (++this.probeSuccesses >= PROBES) this.close();
      else this.deps.onChange();
    }
  }

  private enter(next: CircuitState): void {
    if (next === this.state) return;
    this.state = next;
    this.deps.metrics.circuitTransitions.inc({ upstream: this.deps.upstream, to: next });
  }

  /** `since`: when the outage began (the oldest failure that opened it); `hold` counts from there. */
  private open(at: number, since = at): void {
    const { config } = this;
    if (this.isClosed()) {
      this.episodeStart = since;
      this.openPeriod = config.openFor;
      this.reopenedPastHold = 0;
    } else if (at - this.episodeStart >= config.hold) {
      // openFor, then twice as long after each further failed probe.
      this.openPeriod = Math.min(config.maxOpenFor, config.openFor * 2 ** this.reopenedPastHold++);
    }
    // Jittered down by up to a quarter, never above the configured bound.
    this.openUntil = at + this.openPeriod * (1 - 0.25 * this.deps.random());
    this.generation++;
    this.probesInFlight = 0;
    this.probeSuccesses = 0;
    this.probeFailures = 0;
    this.enter('open');
    this.deps.onChange();
  }

  private close(): void {
    this.calls.clear();
    this.recent.clear();
    this.epoch++;
    this.enter('closed');
    this.deps.onChange();
  }
}
