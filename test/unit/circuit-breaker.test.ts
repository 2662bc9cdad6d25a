/**
 * The breaker's state machine on a virtual clock (src/policy/breaker/circuit-breaker.ts):
 * opening on the last calls, shedding the excess of a partly failing
 * upstream, holding calls while an outage is young, failing fast after it,
 * the growing open period and the half-open ramp. Integration tests on real
 * sockets are in test/integration/circuit-breaker.test.ts.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { CircuitBreakerConfig } from '../../src/config/types.js';
import { resolveConfig } from '../../src/config/resolve.js';
import { BreakwaterError } from '../../src/errors/breakwater-error.js';
import type { AttemptResult, RequestContext } from '../../src/policy/context.js';
import { createUpstreamBreaker, PROBES } from '../../src/policy/breaker/circuit-breaker.js';
import { Cancellation } from '../../src/lib/signal.js';
import { createMetrics } from '../../src/observe/metrics.js';
import { classifyStatus } from '../../src/upstream/classify.js';

/** The built-in defaults, as the config resolves them (failureRate 90, 20 calls, 10 s, 250 ms, 1 s, hold 2 s, k 2). */
const BASE: CircuitBreakerConfig = resolveConfig({ version: 1, routes: [{ name: 'r' }] }, '.').forwardProxy
  .circuitBreaker;

let clock = 1_000_000;
const ok = async (): Promise<AttemptResult> => ({ classification: classifyStatus(200) });
const fail = async (): Promise<AttemptResult> => ({ classification: classifyStatus(503) });
const ctx = (deadline = Infinity) => ({ flags: new Set(), deadline }) as unknown as RequestContext;

function breakerWith(overrides: Partial<CircuitBreakerConfig> = {}, random: () => number = () => 0) {
  const metrics = createMetrics({ defaultMetrics: false });
  const breaker = createUpstreamBreaker('api', { ...BASE, ...overrides }, { metrics, now: () => clock, random });
  const call = (attempt: () => Promise<AttemptResult>, context = ctx()) =>
    breaker.policy.run(context, new Cancellation(), attempt);
  const outcome = async (attempt: () => Promise<AttemptResult>, context = ctx()) => {
    try {
      return (await call(attempt, context)).classification.status;
    } catch (error) {
      return (error as BreakwaterError).code;
    }
  };
  return { breaker, call, outcome, metrics };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('opening', () => {
  it('opens when more than failureRate % of the last minimumRequests calls failed, not at the boundary', async () => {
    const { breaker, outcome } = breakerWith({ failureRate: 50, minimumRequests: 4 });
    await outcome(ok);
    await outcome(ok);
    await outcome(fail);
    await outcome(fail); // 2 of the last 4: 50 %, not above
    expect(breaker.state()).toBe('closed');
    await outcome(fail); // [ok, fail, fail, fail]: 75 %
    expect(breaker.state()).toBe('open');
  });

  it('does not open below minimumRequests calls, nor on calls older than the window', async () => {
    const { breaker, outcome } = breakerWith({ minimumRequests: 5 });
    for (let i = 0; i < 4; i++) await outcome(fail);
    expect(breaker.state()).toBe('closed');
    clock += 10_001; // the four failures leave the window
    await outcome(fail);
    expect(breaker.state()).toBe('closed');
    for (let i = 0; i < 4; i++) await outcome(fail);
    expect(breaker.state()).toBe('open');
  });

  it('never opens nor sheds with failureRate 100, however many calls fail', async () => {
    const { breaker, outcome } = breakerWith({ failureRate: 100 });
    const results = [];
    for (let i = 0; i < 1_000; i++) {
      clock += 25;
      results.push(await outcome(fail));
    }
    expect(results.every((status) => status === 503)).toBe(true);
    expect(breaker.state()).toBe('closed');
  });

  it('does not open a 60 %-failing upstream: 1,000 calls all reach it', async () => {
    let n = 0;
    const { breaker, outcome } = breakerWith({}, () => 0.999_999);
    const results = [];
    for (let i = 0; i < 1_000; i++) {
      clock += 25;
      results.push(await outcome(() => (n++ % 5 < 3 ? fail() : ok())));
    }
    expect(results.filter((r) => r === 'CIRCUIT_OPEN')).toHaveLength(0);
    expect(breaker.state()).not.toBe('open');
  });

  it('leaves a call that threw (the client left) out of its counts', async () => {
    const { breaker, call } = breakerWith({ minimumRequests: 2 });
    for (let i = 0; i < 10; i++)
      await expect(call(() => Promise.reject(new Error('client closed')))).rejects.toThrow('client closed');
    expect(breaker.failureRate()).toBe(0);
    expect(breaker.state()).toBe('closed');
  });
});

describe('shedding (adaptive throttling)', () => {
  /** Calls at 40/s to an upstream that accepts `share` of them; returns refusals among the last `measure` calls. */
  async function drive(share: number, k: number) {
    let n = 0;
    let draws = 0;
    // A deterministic uniform sequence for the shedding draws.
    const random = () => (draws++ * 0.618_033_988_75) % 1;
    // Opening needs 100 failures in a row here: only shedding acts.
    const { breaker, outcome } = breakerWith(
      { failureRate: 99.99, minimumRequests: 100, shedding: { enabled: true, k } },
      random,
    );
    let shed = 0;
    let offered = 0;
    for (let i = 0; i < 2_000; i++) {
      clock += 25;
      // Accepted or not by a low-discrepancy sequence: `share` of the calls, evenly spread.
      const result = await outcome(() => ((n++ * 0.754_877_666) % 1 < share ? ok() : fail()));
      if (i >= 1_000) {
        offered++;
        if (result === 'CIRCUIT_OPEN') shed++;
      }
    }
    return { shed: shed / offered, breaker };
  }

  it('sheds nothing while the upstream accepts at least 1/k of the calls', async () => {
    const { shed, breaker } = await drive(0.6, 2);
    expect(shed).toBe(0);
    expect(breaker.state()).toBe('closed');
  });

  it('sheds about the excess over k x accepts when most calls fail, and says so', async () => {
    const { shed, breaker } = await drive(0.2, 2);
    // Calls that go through: about k x 0.2 = 40 % of the offered; shed about 60 %.
    expect(shed).toBeGreaterThan(0.45);
    expect(shed).toBeLessThan(0.7);
    expect(breaker.state()).toBe('shedding');
    expect(breaker.status().shedRate).toBeGreaterThan(0.4);
  });

  it('refuses a shed call with CIRCUIT_OPEN, Retry-After 1 and the numbers', async () => {
    let n = 0;
    const { call } = breakerWith({ failureRate: 99.99, minimumRequests: 100 }, () => 0);
    for (let i = 0; i < 400; i++) {
      clock += 25;
      try {
        await call(() => (n++ % 10 === 0 ? ok() : fail()));
      } catch (error) {
        expect(error).toBeInstanceOf(BreakwaterError);
        expect((error as BreakwaterError).code).toBe('CIRCUIT_OPEN');
        expect((error as BreakwaterError).retryAfterSeconds).toBe(1);
        expect((error as BreakwaterError).detail).toMatch(
          /^Upstream 'api' failed \d+ of \d+ recent calls; Breakwater sheds \d+% of calls to it until more succeed\.$/,
        );
        return;
      }
    }
    throw new Error('nothing was shed');
  });

  it('does not shed with shedding.enabled false', async () => {
    let n = 0;
    const { outcome } = breakerWith(
      { failureRate: 99.99, minimumRequests: 100, shedding: { enabled: false, k: 2 } },
      () => 0,
    );
    const results = [];
    for (let i = 0; i < 500; i++) {
      clock += 25;
      results.push(await outcome(() => (n++ % 10 === 0 ? ok() : fail())));
    }
    expect(results.filter((r) => r === 'CIRCUIT_OPEN')).toHaveLength(0);
  });
});

describe('open, hold and half-open', () => {
  async function openIt(b: ReturnType<typeof breakerWith>) {
    for (let i = 0; i < 20; i++) await b.outcome(fail);
    expect(b.breaker.state()).toBe('open');
  }

  it('holds a call while the outage is young and lets it through when a probe succeeds', async () => {
    vi.useFakeTimers();
    const b = breakerWith();
    await openIt(b);
    let upstreamUp = false;
    const attempt = () => (upstreamUp ? ok() : fail());
    const held = b.outcome(attempt);
    // The held call itself is the first probe after openFor: it fails, and it is refused.
    clock += 250;
    await vi.advanceTimersByTimeAsync(250);
    await expect(held).resolves.toBe(503);
    expect(b.breaker.state()).toBe('open');
    const second = b.outcome(attempt);
    const third = b.outcome(attempt);
    expect(b.breaker.status().held).toBe(2);
    upstreamUp = true;
    clock += 250;
    await vi.advanceTimersByTimeAsync(250);
    await expect(second).resolves.toBe(200);
    await expect(third).resolves.toBe(200);
    expect(b.breaker.status().held).toBe(0);
  });

  it('refuses a held call when its hold runs out, and new calls at once once the outage is older than hold', async () => {
    vi.useFakeTimers();
    const b = breakerWith({ openFor: 5_000, maxOpenFor: 5_000 });
    await openIt(b);
    const held = b.outcome(fail);
    clock += 2_000;
    await vi.advanceTimersByTimeAsync(2_000);
    await expect(held).resolves.toBe('CIRCUIT_OPEN');
    // The outage is now 2 s old: no more waiting.
    await expect(b.outcome(ok)).resolves.toBe('CIRCUIT_OPEN');
    expect(b.breaker.status().held).toBe(0);
  });

  it('holds no call with hold 0, and never past the request deadline', async () => {
    vi.useFakeTimers();
    const noHold = breakerWith({ hold: 0 });
    await openIt(noHold);
    expect(await noHold.outcome(ok)).toBe('CIRCUIT_OPEN');
    const b = breakerWith({ openFor: 1_000 });
    await openIt(b);
    const held = b.outcome(ok, ctx(clock + 100));
    clock += 100;
    await vi.advanceTimersByTimeAsync(100);
    await expect(held).resolves.toBe('CIRCUIT_OPEN');
  });

  it('an aborted held call leaves the queue with its reason', async () => {
    vi.useFakeTimers();
    const b = breakerWith();
    await openIt(b);
    const cancellation = new Cancellation();
    const held = b.breaker.policy.run(ctx(), cancellation, ok);
    expect(b.breaker.status().held).toBe(1);
    cancellation.abort(new Error('client went away'));
    await expect(held).rejects.toThrow('client went away');
    expect(b.breaker.status().held).toBe(0);
  });

  it('probes every openFor while the outage is young, then doubles the open period up to maxOpenFor', async () => {
    const b = breakerWith({ hold: 1_000 });
    await openIt(b);
    const periods: number[] = [];
    for (let i = 0; i < 8; i++) {
      const openedAt = clock;
      periods.push(b.breaker.status().openForMs);
      clock += b.breaker.status().openForMs;
      expect(await b.outcome(fail)).toBe(503); // the probe
      expect(b.breaker.state()).toBe('open');
      expect(clock).toBeGreaterThan(openedAt);
    }
    expect(periods).toEqual([250, 250, 250, 250, 250, 500, 1_000, 1_000]);
  });

  it('shows half_open once the open period ran out, with no call to probe it', async () => {
    const b = breakerWith();
    await openIt(b);
    clock += 249;
    expect(b.breaker.state()).toBe('open');
    clock += 1;
    expect(b.breaker.state()).toBe('half_open');
    expect(b.breaker.status()).toMatchObject({ state: 'half_open', openForMs: 0, held: 0 });
  });

  it('jitters the open period down by at most a quarter', async () => {
    const b = breakerWith({}, () => 0.999);
    await openIt(b);
    const left = b.breaker.status().openForMs;
    expect(left).toBeGreaterThanOrEqual(187);
    expect(left).toBeLessThanOrEqual(250);
  });

  it('lets PROBES probes in flight half-open, one more per success, and closes after PROBES successes with a fresh window', async () => {
    const b = breakerWith();
    await openIt(b);
    clock += 250;
    const release: (() => void)[] = [];
    const slow = () =>
      new Promise<AttemptResult>((resolve) => release.push(() => resolve({ classification: classifyStatus(200) })));
    const noHold = () => ctx(clock); // a deadline now: refused instead of held
    expect(PROBES).toBe(3);
    const first = [b.call(slow, noHold()), b.call(slow, noHold()), b.call(slow, noHold())];
    expect(b.breaker.state()).toBe('half_open');
    expect(await b.outcome(ok, noHold())).toBe('CIRCUIT_OPEN'); // three in flight: a slow probe does not hold the others back
    release.shift()!();
    await first[0];
    const fourth = b.call(slow, noHold()); // its slot, and one more for the success
    const fifth = b.call(slow, noHold());
    expect(await b.outcome(ok, noHold())).toBe('CIRCUIT_OPEN');
    release.shift()!();
    release.shift()!();
    await Promise.all(first);
    expect(b.breaker.state()).toBe('closed');
    expect(b.breaker.failureRate()).toBe(0); // the failures that opened it are gone
    await expect(b.outcome(fail)).resolves.toBe(503); // one failure does not reopen it
    expect(b.breaker.state()).toBe('closed');
    release.splice(0).forEach((go) => go());
    await Promise.all([fourth, fifth]);
  });

  it('a failed probe reopens it, unless a probe already succeeded', async () => {
    const b = breakerWith({ hold: 0 });
    await openIt(b);
    clock += 250;
    expect(await b.outcome(fail)).toBe(503);
    expect(b.breaker.state()).toBe('open');
    clock += 250;
    expect(await b.outcome(ok)).toBe(200);
    expect(await b.outcome(fail)).toBe(503);
    expect(b.breaker.state()).toBe('half_open');
    expect(await b.outcome(ok)).toBe(200);
    expect(await b.outcome(ok)).toBe(200);
    expect(b.breaker.state()).toBe('closed');
  });

  it('counts the outage from the first failure that opened it, not from the opening', async () => {
    const b = breakerWith({ openFor: 5_000, maxOpenFor: 5_000 });
    await b.outcome(fail); // the outage begins
    clock += 1_500;
    for (let i = 0; i < 19; i++) await b.outcome(fail);
    expect(b.breaker.state()).toBe('open');
    clock += 600; // 2.1 s after the first failure, 0.6 s after opening
    expect(await b.outcome(ok)).toBe('CIRCUIT_OPEN'); // refused at once, not held
    expect(b.breaker.status().held).toBe(0);
  });

  it('does not hold a call whose request is already gone, so it cannot take a probe slot', async () => {
    vi.useFakeTimers();
    const b = breakerWith();
    await openIt(b);
    for (let i = 0; i < PROBES; i++) {
      const gone = new Cancellation();
      gone.abort(new Error('client left before'));
      await expect(b.breaker.policy.run(ctx(), gone, ok)).rejects.toThrow('client left before');
    }
    expect(b.breaker.status().held).toBe(0);
    clock += 250;
    await vi.advanceTimersByTimeAsync(250);
    for (let i = 0; i < PROBES; i++) expect(await b.outcome(ok)).toBe(200);
    expect(b.breaker.state()).toBe('closed');
  });

  it('reopens a half-open circuit whose upstream answers once and then fails again (a crash loop)', async () => {
    const b = breakerWith({ hold: 0 });
    await openIt(b);
    clock += 250;
    expect(await b.outcome(ok)).toBe(200);
    expect(await b.outcome(fail)).toBe(503);
    expect(await b.outcome(fail)).toBe(503);
    expect(b.breaker.state()).toBe('half_open'); // an upstream that answered is not down yet
    expect(await b.outcome(fail)).toBe(503);
    expect(b.breaker.state()).toBe('open'); // three in a row since the last success
  });

  it('keeps probing, not reopening, an upstream that answers most probes', async () => {
    const b = breakerWith({ hold: 0 });
    await openIt(b);
    clock += 250;
    for (const attempt of [ok, fail, fail, ok, fail]) await b.outcome(attempt);
    expect(b.breaker.state()).toBe('half_open');
    await b.outcome(ok);
    expect(b.breaker.state()).toBe('closed');
  });

  it('does not count a call admitted before the outage that ends after the recovery', async () => {
    const b = breakerWith({ hold: 0 });
    const finish: (() => void)[] = [];
    const hung = Array.from({ length: 20 }, () =>
      b.call(
        () =>
          new Promise<AttemptResult>((resolve) => finish.push(() => resolve({ classification: classifyStatus(504) }))),
      ),
    );
    await openIt(b);
    clock += 250;
    for (let i = 0; i < PROBES; i++) expect(await b.outcome(ok)).toBe(200);
    expect(b.breaker.state()).toBe('closed');
    for (const done of finish) done();
    await Promise.all(hung);
    expect(b.breaker.state()).toBe('closed');
    expect(b.breaker.failureRate()).toBe(0);
  });

  it('refuses a held call rather than make it a probe with too little time left', async () => {
    vi.useFakeTimers();
    const b = breakerWith({ openFor: 1_000 });
    await openIt(b);
    expect(await b.outcome(ok, ctx(clock + 50))).toBe('CIRCUIT_OPEN'); // not even held
    let called = 0;
    const held = b.outcome(
      () => {
        called++;
        return ok();
      },
      ctx(clock + 1_050),
    );
    clock += 1_000; // the probe time: 50 ms before its deadline
    await vi.advanceTimersByTimeAsync(1_000);
    await expect(held).resolves.toBe('CIRCUIT_OPEN');
    expect(called).toBe(0);
  });

  it('lets calls straight through once dropped (reload, evicted target)', async () => {
    const b = breakerWith({ hold: 0 });
    await openIt(b);
    b.breaker.close();
    expect(await b.outcome(ok)).toBe(200);
  });

  it('opens strictly above failureRate even where the product is not exact in floating point', async () => {
    // 375 x 18.4 / 100 = 69 exactly in decimal; 69 failures are 18.4 %, not above it.
    const b = breakerWith({ minimumRequests: 375, failureRate: 18.4 });
    for (let i = 0; i < 375 - 69; i++) await b.outcome(ok);
    for (let i = 0; i < 69; i++) await b.outcome(fail);
    expect(b.breaker.state()).toBe('closed');
    await b.outcome(fail);
    expect(b.breaker.state()).toBe('open');
  });

  it('counts transitions and rejections', async () => {
    const b = breakerWith({ hold: 0 });
    await openIt(b);
    await b.outcome(ok);
    await b.outcome(ok);
    const value = async (name: string, labels: Record<string, string>) =>
      (await b.metrics.registry.getSingleMetric(name)!.get()).values.find((v) =>
        Object.entries(labels).every(([k, x]) => v.labels[k] === x),
      )?.value;
    expect(await value('breakwater_circuit_transitions_total', { upstream: 'api', to: 'open' })).toBe(1);
    expect(await value('breakwater_circuit_rejections_total', { upstream: 'api' })).toBe(2);
  });

  it('does not time out a call itself, however long it takes', async () => {
    vi.useFakeTimers();
    const b = breakerWith({ minimumRequests: 1, failureRate: 50 });
    const slow = () =>
      new Promise<AttemptResult>((resolve) =>
        setTimeout(() => resolve({ classification: classifyStatus(200) }), 15_000),
      );
    const result = b.call(slow);
    await vi.advanceTimersByTimeAsync(15_000);
    await expect(result).resolves.toEqual({ classification: { outcome: 'success', status: 200 } });
    expect(b.breaker.state()).toBe('closed');
  });
});
