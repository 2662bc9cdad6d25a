/**
 * The pacers' states of one upstream (store.ts): here, or in Redis with
 * `shared: true`, decided here or not at all while Redis fails
 * (`redis.onError`); and this process's requests in flight per pacer,
 * which every reservation counts against the announced quota.
 */
import type { Logger } from '../../observe/logger.js';
import type { SharedLimits } from '../rate-limit/shared-limits.js';
import {
  addLoad,
  localStore,
  NO_LOAD,
  sharedStore,
  type Load,
  type PacerStore,
  type Sent,
  type StateFn,
} from './store.js';
import { NO_COSTS, type Costs } from '../cost.js';

import type { PacingConfig } from '../../config/types.js';
import type { AttemptResult } from '../context.js';
import { headerValue, observe, type Observed } from './announced.js';
import { released } from './quota.js';

export class PacerStates {
  readonly local: PacerStore;
  readonly shared: PacerStore | null;
  /** This process's requests in flight (waiting for a slot included) and their costs, per pacer id. */
  private readonly inFlight = new Map<string, Load>();
  private warnedAt = -Infinity;

  /** `redis`: the connection when the pacing is shared. */
  constructor(
    private readonly upstream: string,
    private readonly redis: SharedLimits | undefined,
    private readonly deps: { readonly now: () => number; readonly logger?: Logger },
  ) {
    this.local = localStore(deps.now, this.countOf);
    this.shared = redis ? sharedStore(redis.client, `breakwater:pacing:${upstream}:`, this.countOf, deps.now) : null;
  }

  readonly countOf = (id: string): Load => this.inFlight.get(id) ?? NO_LOAD;

  /** One request (`sign` 1) that costs `costs` is in flight on pacer `id`, or no longer (-1; `sent`: when it went). */
  count(id: string, sign: 1 | -1, costs: Costs = NO_COSTS, sent?: Sent): void {
    let load = this.inFlight.get(id);
    if (sent) (load?.sent as Set<Sent> | undefined)?.delete(sent);
    if (!load) {
      if (sign < 0) return;
      // Local pacing knows when each was sent (load.ts unseenIn); shared pacing counts replicas that it cannot.
      load = this.shared ? { requests: 0, costs: {} } : { requests: 0, costs: {}, sent: new Set<Sent>() };
      this.inFlight.set(id, load);
    }
    addLoad(load, { requests: 1, costs }, sign);
    if (load.requests <= 0) this.inFlight.delete(id);
  }

  /**
   * A request of `costs` counted on pacer `id` is sent now: local pacing notes when (what a later answer's
   * remaining counts of it), until count(-1) forgets it.
   */
  sent(id: string, costs: Costs): Sent | undefined {
    const sent = this.inFlight.get(id)?.sent as Set<Sent> | undefined;
    if (!sent) return undefined;
    const entry: Sent = { at: this.deps.now(), costs };
    sent.add(entry);
    return entry;
  }

  /** Runs `fn` with one request of `costs` on pacer `id` not counted in flight meanwhile. */
  async uncounted<T>(id: string, costs: Costs, fn: () => Promise<T>): Promise<T> {
    this.count(id, -1, costs);
    try {
      return await fn();
    } finally {
      this.count(id, 1, costs);
    }
  }

  /**
   * Runs a state update in Redis when shared, here otherwise, or here / not
   * at all while Redis fails (redis.onError). `degraded`: called when a
   * shared update is decided without Redis.
   */
  update<T>(id: string, fn: StateFn<T>, skipped: T, degraded?: () => void): T | Promise<T> {
    // Local state: synchronous, no promise on the request path.
    return this.shared ? this.sharedUpdate(this.shared, id, fn, skipped, degraded) : (this.local.update(id, fn) as T);
  }

  private async sharedUpdate<T>(
    store: PacerStore,
    id: string,
    fn: StateFn<T>,
    skipped: T,
    degraded?: () => void,
  ): Promise<T> {
    const redis = this.redis!;
    // redis.onError: here (local) or not at all (allow).
    const withoutRedis = () => {
      degraded?.();
      return redis.onError === 'local' ? (this.local.update(id, fn) as T) : skipped;
    };
    // While Redis fails, no request waits for it: decided here until the probe answers.
    if (!redis.healthy()) return withoutRedis();
    // The whole wait (behind this pacer's other updates from this process, and the compare-and-set rounds) is
    // bounded by redis.timeout, and ends as soon as Redis is reported failing: concurrent requests on one pacer
    // wait one timeout, not one each (SPEC §9).
    const updating = Promise.resolve(store.update(id, fn));
    // A failing Redis is reported whether or not this request still waits for it; a wait that only ran long
    // behind other requests is not a failure (a flood of requests on one pacer must not switch Redis off).
    updating.catch((error: unknown) => this.failing(redis, error));
    let timer: NodeJS.Timeout | undefined;
    let stopListening: (() => void) | undefined;
    const givenUp = new Promise<'late' | 'failing'>((resolve) => {
      timer = setTimeout(() => resolve('late'), redis.timeout);
      stopListening = redis.onFailure(() => resolve('failing'));
    });
    try {
      const outcome = await Promise.race([
        updating.then(
          (value) => ({ value }),
          () => 'failing' as const,
        ),
        givenUp,
      ]);
      return typeof outcome === 'object' ? outcome.value : withoutRedis();
    } finally {
      clearTimeout(timer);
      stopListening?.();
    }
  }

  /** Redis failed this update: reported (decisions go local until a probe answers), and logged once per 10 s. */
  private failing(redis: SharedLimits, error: unknown): void {
    redis.reportFailure(error);
    const at = this.deps.now();
    if (at - this.warnedAt <= 10_000) return;
    this.warnedAt = at;
    this.deps.logger?.warn(
      { upstream: this.upstream, err: (error as Error).message },
      `shared pacing unavailable: pacing per redis.onError=${redis.onError}`,
    );
  }

  /**
   * Reads what an answer announced into pacer `id`, ending the request's
   * count (`finish`) in the same update. A provider rule: `never` neither
   * pauses nor slows the pacer; `pause` pauses it for the delay the rule
   * knows (SPEC §14).
   */
  learn(
    id: string,
    result: AttemptResult,
    finish: () => void,
    config: PacingConfig,
    retryAfterMaxMs: number,
    wall: number,
    sentAt?: number,
  ): Observed | undefined | Promise<Observed | undefined> {
    const headers = result.response!.headers;
    const rule = result.classification.rule;
    const status = rule?.pacing === 'never' ? undefined : result.classification.status;
    const pauseMs = rule?.pacing === 'pause' ? rule.delayMs : undefined;
    const shared = this.shared !== null;
    return this.update(
      id,
      (state, t) => {
        finish();
        if (shared) released(state, t);
        if (config.scope) state.scope = headerValue(headers, config.scope);
        return observe(state, t, status, headers, config, retryAfterMaxMs, wall, pauseMs, shared ? undefined : sentAt);
      },
      undefined,
    );
  }

  close(): void {
    this.local.close();
    this.shared?.close();
  }
}
