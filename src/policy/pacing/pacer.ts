/**
 * Proactive pacing (SPEC §3 `upstreams.*.pacing`, §15): slow down before the
 * provider answers 429, from the quota it announces on every response.
 *
 * One pacer per (upstream, scope, key), tracking every dimension answers
 * announce (requests, tokens, ...; quota.ts): a request goes at the latest
 * time each dimension allows for its cost (`pacing.cost`). Below
 * `engageBelow` a dimension spreads its effective remaining (remaining -
 * cost in flight - `reserve` x limit) over the time to its reset; a cost it
 * cannot hold waits for the reset, and one above its whole window is
 * refused at once. Quotas that name no reset (Shopify, Salesforce) go at
 * the refill rate measured; a 429 or 503 with Retry-After pauses the pacer;
 * without quota headers, AIMD on 429s. A wait past `maxWait` is refused.
 *
 * `scope: header:<name>` names the quota a response counted against (GitHub's
 * `x-ratelimit-resource`), learned per route and first path segment (key.ts).
 *
 * Releases are scheduled on a virtual clock per dimension, so concurrent requests queue in order
 * without a timer per pacer. With `shared: true` the clocks and the quota live in Redis (store.ts).
 * `mode: report` takes the slot but never waits (SPEC §19.2).
 */
import { BoundedMap } from '../../lib/bounded-map.js';
import { RankCounts } from '../../lib/rank-counts.js';
import { TurnsByKey, type Turns } from '../../lib/turns.js';
import { observeSlept, refuseNeverFits, refusePaced, reportPaced } from './refusal.js';
import { answeredIdOf, pacerKeyOf, type PacerKey } from './key.js';
import type { PacingConfig } from '../../config/types.js';
import type { AttemptResult, Next, Policy, RequestContext } from '../context.js';
import type { Signal } from '../../lib/signal.js';
import { MAX_PACERS, othersThan, snapshotOf, type PacingSnapshot } from './store.js';
import { released, reserveWithin, type Reservation, type Tickets } from './quota.js';
import { NO_COSTS, pacingCostReaders, type CostInput, type Costs } from '../cost.js';
import { PacerStates } from './states.js';
import type { PacingDeps, UpstreamPacing } from './types.js';
import { Sleepers, type Plan } from './preemption.js';

export { MAX_PACERS, type PacingSnapshot } from './store.js';
export type { PacingDeps, UpstreamPacing } from './types.js';

/** When the starvation guard (SPEC §13) makes a request that began waiting at `started` the highest class. */
const promotedAt = (ctx: RequestContext, started: number): number | null =>
  ctx.priority?.promoteAfterMs == null ? null : started + ctx.priority.promoteAfterMs;

/** A reservation decided without Redis under `onError: allow`: no wait. */
const NO_WAIT: Reservation = { wait: 0, floor: false, askAgainIn: null, ticket: null };

export function createUpstreamPacing(
  upstream: string,
  config: PacingConfig,
  retryAfterMaxMs: number,
  deps: PacingDeps,
): UpstreamPacing {
  return new Pacing(upstream, config, retryAfterMaxMs, deps);
}

class Pacing implements UpstreamPacing {
  /** Per pacer id, with priority classes: whose turn it is to sleep towards a slot (lib/turns.ts). */
  private readonly turns = new TurnsByKey();
  /** Per pacer id, with priority classes: the turn's holder asleep towards its slot, which a higher class may take. */
  private readonly sleepers = new Sleepers();
  /** Per pacer id, with priority classes: requests waiting for their slot or turn, by rank (/status). */
  private readonly waiting = new RankCounts();
  /** The pacers' states, here or in Redis, and this process's requests in flight (states.ts). */
  private readonly states: PacerStates;
  /** Scope learned per route and first path segment; bounded like the pacers. */
  private readonly scopes = new BoundedMap<string, string>({ max: MAX_PACERS });
  /** What a request costs per dimension (`pacing.cost`); null: 1 per attempt in each. */
  private readonly costsOf: ((input: CostInput) => Costs) | null;

  constructor(
    private readonly upstream: string,
    private readonly config: PacingConfig,
    private readonly retryAfterMaxMs: number,
    private readonly deps: PacingDeps,
  ) {
    this.states = new PacerStates(upstream, config.shared ? deps.shared : undefined, deps);
    this.costsOf = pacingCostReaders(config.cost);
  }

  policy(route: string, pathPrefix = '/'): Policy {
    const prefixLength = pathPrefix === '/' ? 0 : pathPrefix.length;
    // A shared reservation decided without Redis is flagged and counted like a rate-limit decision (SPEC §9).
    const degraded = (ctx: RequestContext) => {
      ctx.flags.add('RATE_LIMIT_DEGRADED');
      this.deps.metrics.rateLimitDegraded.inc({ route });
    };
    return {
      run: (ctx, signal, next) => this.run(ctx, signal, next, this.keyOf(ctx, route, prefixLength), route, degraded),
      close() {},
    };
  }

  snapshot(): PacingSnapshot[] {
    return snapshotOf(
      this.upstream,
      this.states.shared ? [this.states.shared, this.states.local] : [this.states.local],
      this.states.shared,
      this.states.countOf,
      (id) => this.waiting.of(id),
    );
  }

  close(): void {
    this.states.close();
    this.scopes.clear();
  }

  private keyOf(ctx: RequestContext, route: string, prefixLength: number): PacerKey {
    return pacerKeyOf(this.config, (learnKey) => this.scopes.get(learnKey), ctx, route, prefixLength);
  }

  private async run(
    ctx: RequestContext,
    signal: Signal,
    next: Next,
    key: PacerKey,
    route: string,
    degraded: (ctx: RequestContext) => void,
  ): Promise<AttemptResult> {
    const { id } = key;
    const costs = this.costsOf ? this.costsOf(ctx) : NO_COSTS; // each attempt charged again (SPEC §15)
    // Counted from the reservation on: a request waiting for its slot will spend quota as surely as one sent.
    this.states.count(id, 1, costs);
    let done = false;
    let published = false;
    let sent: ReturnType<PacerStates['sent']>;
    const finish = () => {
      if (!done) this.states.count(id, -1, costs, sent);
      done = true;
    };
    try {
      // A closure per request only where Redis can fail: local pacing allocates none.
      await this.waitForSlot(ctx, signal, id, costs, this.states.shared ? () => degraded(ctx) : undefined, route);
      sent = this.states.sent(id, costs);
      const result = await next(ctx, signal);
      // Counted in flight until what it learned is in the state (with it, in one update): a reservation in
      // between would see neither.
      if (result.response?.headers) published = await this.learn(key, result, finish, sent?.at);
      return result;
    } finally {
      finish();
      // Shared: this replica's in-flight count for the pacer is rewritten with every update;
      // a request that ended without one (refused, aborted, no answer) publishes it now, best effort.
      if (this.states.shared && !published) void this.states.update(id, () => undefined, undefined);
    }
  }

  /**
   * Reserves the request's slot and waits for it; refuses a wait past
   * maxWait or the deadline. A request given no slot (held by its class's
   * quota floor, SPEC §13, or beyond the coming window) sleeps, then asks again.
   */
  private async waitForSlot(
    ctx: RequestContext,
    signal: Signal,
    id: string,
    costs: Costs,
    degraded: (() => void) | undefined,
    route: string,
  ): Promise<void> {
    const { config, deps } = this;
    const floor = ctx.priority?.quotaFloor ?? null;
    // Like a rate-limit queue, a pacing wait never runs past the request's deadline.
    const started = deps.now();
    const limitAt = started + Math.min(config.maxWait, ctx.deadline - started);
    // With classes, requests that come while one sleeps towards its slot wait their turn by class (lib/turns.ts).
    const turns = ctx.priority ? this.turns.of(id) : undefined;
    let holding = false;
    // Counted among the pacer's waiters by class (/status) while it waits for its turn or sleeps; only with classes.
    const rank = ctx.priority?.rank;
    let waiting = false;
    let slept = 0;
    /** Its places among the resets' waiters, to ask again with. */
    let ticket: Tickets | null = null;
    const asHolder = { rank: rank!, costs, promoteAt: promotedAt(ctx, started), limitAt };
    try {
      // A lower class asleep towards its slot does not make a higher one wait for the turn (preemption.ts).
      if (turns?.busy && config.mode === 'enforce' && !this.mayPreempt(turns, id, rank!)) {
        waiting = this.waiting.enter(id, rank, waiting);
        holding = await this.takeTurn(turns, id, costs, ctx, signal, route, limitAt - deps.now());
      }
      for (;;) {
        const limitMs = limitAt - deps.now();
        const reserved = this.states.update(
          id,
          (state, t, counted) =>
            reserveWithin(state, t, othersThan(counted, costs), config, deps.random, limitMs, floor, ticket, costs),
          NO_WAIT,
          degraded,
        );
        const {
          wait,
          floor: held,
          askAgainIn,
          tooBig,
          ...rest
        } = reserved instanceof Promise ? await reserved : reserved;
        ticket = rest.ticket;
        if (tooBig && config.mode === 'enforce') refuseNeverFits(this.upstream, tooBig);
        // Report mode (SPEC §19.2): the slot is taken, as enforcing would; the wait or refusal is only reported.
        if (config.mode === 'report' && (tooBig || wait > 0 || askAgainIn !== null)) {
          reportPaced(deps.metrics, ctx, route);
          break;
        }
        if (wait > limitMs) refusePaced(this.deps.metrics, this.upstream, config.maxWait, ctx, route, wait, held);
        // Held by its class's floor, it holds no turn (a higher class may go meanwhile); waiting for a slot, it does.
        if (held && holding) holding = this.giveTurn(id);
        const now = deps.now();
        let plan: Plan = { at: now + (askAgainIn ?? wait), goAt: now + wait, ask: askAgainIn !== null, ticket };
        if (plan.at > now) {
          // SPEC §13: a lower class asleep towards an earlier slot gives it to this request (preemption.ts).
          if (turns && !held && !holding) plan = this.sleepers.exchange(id, rank!, costs, plan, now);
          if (turns && !holding && !held) holding = turns.claim();
          waiting = this.waiting.enter(id, rank, waiting);
          ctx.flags.add('PACED');
          if (holding) plan = await this.sleepers.sleep(id, { ...asHolder, plan }, signal, deps);
          else await this.sleepFor(plan.at - now, signal, id, costs, held);
          slept += Math.max(0, plan.at - now);
          ctx.trace?.wait('pacing', Math.max(0, plan.at - now));
          ticket = plan.ticket;
        }
        if (!plan.ask) break;
      }
    } finally {
      if (holding) this.turns.give(id);
      if (waiting) this.waiting.add(id, rank!, -1);
      if (slept > 0) observeSlept(deps.metrics, this.upstream, ctx, slept);
    }
    // The release counters live in the state: bumped here locally, with the response's update when shared.
    if (!this.states.shared) this.states.local.update(id, (state, t) => released(state, t));
  }

  /** Its holder sleeps in a lower class and nobody of `rank` or higher waits: no wait for the turn (SPEC §13). */
  private mayPreempt(turns: Turns, id: string, rank: number): boolean {
    return this.sleepers.lowerThan(id, rank, this.deps.now()) && !turns.waitingAtOrAbove(rank);
  }

  /** Gives up the pacer's turn; false (it holds it no more). */
  private giveTurn(id: string): false {
    this.turns.give(id);
    return false;
  }

  /**
   * Sleeps towards its slot or its next ask. Held by its class's floor, it
   * is not in flight meanwhile: it spends nothing before the reset, and
   * counting it would hold back a higher class that may go now (SPEC §13).
   */
  private sleepFor(ms: number, signal: Signal, id: string, costs: Costs, held: boolean): Promise<void> {
    const sleep = () => this.deps.sleep(ms, signal);
    return held ? this.states.uncounted(id, costs, sleep) : sleep();
  }

  /** Waits for the pacer's turn by class, within what is left of maxWait; true once it holds it. */
  private async takeTurn(
    turns: Turns,
    id: string,
    costs: Costs,
    ctx: RequestContext,
    signal: Signal,
    route: string,
    waitMs: number,
  ): Promise<boolean> {
    const started = this.deps.now();
    // Waiting for a turn is not waiting for a slot: not counted in flight (it would shrink the quota the turn's
    // holder sees).
    const take = () =>
      turns.take(
        ctx.priority!,
        Math.max(0, waitMs),
        (listener) => signal.onAbort(listener),
        () => new Error(),
        ctx.flags,
      );
    try {
      await this.states.uncounted(id, costs, take);
      return true;
    } catch {
      if (signal.aborted) throw signal.reason;
      const waited = Math.max(waitMs, this.deps.now() - started) + 1;
      return refusePaced(this.deps.metrics, this.upstream, this.config.maxWait, ctx, route, waited, false);
    }
  }

  /**
   * Reads the quota the response announced into its pacer, ending the request's count (`finish`) in the same
   * update; true when that was the request's own pacer (its count published).
   */
  private async learn(key: PacerKey, result: AttemptResult, finish: () => void, sentAt?: number): Promise<boolean> {
    const { config } = this;
    const answeredId = answeredIdOf(config, result.response!.headers, key, (learnKey, scope) => {
      if (this.scopes.get(learnKey) !== scope) this.scopes.set(learnKey, scope);
    });
    const wall = this.deps.wall();
    const pending = this.states.learn(answeredId, result, finish, config, this.retryAfterMaxMs, wall, sentAt);
    const seen = pending instanceof Promise ? await pending : pending;
    if (seen?.paused) this.deps.metrics.pacingPauses.inc({ upstream: this.upstream });
    return answeredId === key.id;
  }
}
