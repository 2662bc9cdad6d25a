/**
 * The retry budget (SPEC §3 `retry.budget`, Linkerd's semantics): over a
 * sliding 10 s window, retries may not exceed `ratio` x requests +
 * `minPerSecond` x 10. Each request deposits, each retry withdraws; a retry
 * the budget cannot cover is skipped. The window is ten one-second buckets.
 *
 * The counts are kept per upstream and shared by every route to it, as
 * Envoy keeps its retry budget per cluster and the Gateway API (GEP-3388)
 * per backend: N routes to one failing provider share one floor of
 * `minPerSecond` retries, not N of them. Each route applies its own ratio
 * and floor to the shared counts (with the usual `defaults`, the same). A
 * forward-proxy route, which has no upstream block, counts on its own.
 */
const WINDOW_SECONDS = 10;

/** The requests and retries of the last 10 s: one per upstream (runtime/upstreams.ts), handed over on reload with it. */
export interface RetryCounts {
  /** Counts a request (once per request, before its retries). */
  deposit(): void;
  /** Counts a retry when `allowed(requests)` (retries the window may hold) leaves room for it; false otherwise. */
  withdraw(allowed: (requests: number) => number): boolean;
}

export interface RetryBudget {
  /** Counts a request (call once per request, before its retries). */
  deposit(): void;
  /** Takes one retry from the budget; false when it is spent. */
  tryWithdraw(): boolean;
}

export function createRetryCounts(now: () => number): RetryCounts {
  const requests = new Float64Array(WINDOW_SECONDS);
  const retries = new Float64Array(WINDOW_SECONDS);
  let currentSecond = Math.floor(now() / 1000);

  const advance = () => {
    const second = Math.floor(now() / 1000);
    if (second === currentSecond) return;
    const steps = Math.min(WINDOW_SECONDS, second - currentSecond);
    for (let i = 1; i <= steps; i++) {
      const slot = (currentSecond + i) % WINDOW_SECONDS;
      requests[slot] = 0;
      retries[slot] = 0;
    }
    currentSecond = second;
  };
  const sum = (buckets: Float64Array) => buckets.reduce((total, value) => total + value, 0);

  return {
    deposit() {
      advance();
      requests[currentSecond % WINDOW_SECONDS]! += 1;
    },
    withdraw(allowed) {
      advance();
      if (sum(retries) + 1 > allowed(sum(requests))) return false;
      retries[currentSecond % WINDOW_SECONDS]! += 1;
      return true;
    },
  };
}

/** A route's budget: its ratio and floor over `counts` (its upstream's, shared; its own without one). */
export function createRetryBudget(
  ratio: number,
  minPerSecond: number,
  now: () => number,
  counts: RetryCounts = createRetryCounts(now),
): RetryBudget {
  const allowed = (requests: number) => ratio * requests + minPerSecond * WINDOW_SECONDS;
  return { deposit: () => counts.deposit(), tryWithdraw: () => counts.withdraw(allowed) };
}
