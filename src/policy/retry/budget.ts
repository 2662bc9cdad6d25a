/**
 * A retry budget per route (SPEC §3 `retry.budget`, Linkerd's semantics):
 * over a sliding 10 s window, retries may not exceed `ratio` × requests +
 * `minPerSecond` × 10. Each request deposits, each retry withdraws; a retry
 * the budget cannot cover is skipped. The window is ten one-second buckets.
 */
const WINDOW_SECONDS = 10;

export interface RetryBudget {
  /** Counts a request (call once per request, before its retries). */
  deposit(): void;
  /** Takes one retry from the budget; false when it is spent. */
  tryWithdraw(): boolean;
}

export function createRetryBudget(ratio: number, minPerSecond: number, now: () => number): RetryBudget {
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
    tryWithdraw() {
      advance();
      const allowed = ratio * sum(requests) + minPerSecond * WINDOW_SECONDS;
      if (sum(retries) + 1 > allowed) return false;
      retries[currentSecond % WINDOW_SECONDS]! += 1;
      return true;
    },
  };
}
