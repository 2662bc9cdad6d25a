/**
 * Identical concurrent GETs share one upstream request (SPEC §17
 * `coalesce`, nginx's `proxy_cache_lock`). The first GET of a key to go
 * upstream (a miss or a revalidation) leads; a GET of the same key (route,
 * path, query and key headers) that comes while it is upstream waits and
 * gets its answer: the status, headers and body as they arrive (its own
 * request id, `X-Breakwater-Cache: coalesced`), the refreshed stored answer
 * after a 304, or the leader's error, each answered by the waiter's own
 * exchange. A waiter spends nothing (no token, slot, budget or breaker
 * call) and keeps its own deadline; one whose client leaves cancels
 * nothing. A waiter whose Vary'd headers differ from the leader's, or whose
 * leader ended without an answer it can pass on, goes its own way.
 *
 * A body is passed on to the waiters as it arrives, kept (for those who join
 * late) only up to the route's `maxEntryBytes`: past that, no one else joins.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { BreakwaterError } from '../errors/breakwater-error.js';
import type { RouteCache } from '../runtime/routes.js';
import type { UpstreamResponse } from '../upstream/response.js';
import type { StaleEntry } from '../upstream/stale-store.js';

/** What a waiter gets from its leader. */
export type SharedAnswer =
  /** The upstream's answer, streaming: `tap` replays what arrived and passes on the rest. */
  | {
      readonly kind: 'stream';
      readonly response: UpstreamResponse;
      readonly tap: BodyTap;
      /** The target that answered. */
      readonly target: string | null;
    }
  /** A 304 refreshed the stored answer: the waiter serves it. */
  | { readonly kind: 'stored'; readonly entry: StaleEntry }
  /** The leader failed with a problem: the waiter answers it with its own request id. */
  | { readonly kind: 'error'; readonly error: BreakwaterError }
  /** Nothing the waiter can pass on (the leader's client left first, a stale or rewritten answer): go alone. */
  | { readonly kind: 'alone' };

/** A body passed on to waiters as it arrives. */
export class BodyTap {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  /** The kept chunks stopped being the whole start of the body (past the cap): no one may join now. */
  overflowed = false;
  private readonly sinks = new Set<(chunk: Buffer | null, broken: boolean) => void>();
  ended: 'complete' | 'broken' | undefined;

  constructor(
    response: UpstreamResponse,
    private readonly cap: number,
  ) {
    response.on('data', (chunk: Buffer) => {
      if (!this.overflowed) {
        this.size += chunk.length;
        if (this.size > this.cap) {
          this.overflowed = true;
          this.chunks.length = 0;
        } else this.chunks.push(chunk);
      }
      for (const sink of this.sinks) sink(chunk, false);
    });
    response.once('end', () => this.end(response.complete ? 'complete' : 'broken'));
    response.once('close', () => this.end(response.complete ? 'complete' : 'broken'));
  }

  private end(how: 'complete' | 'broken'): void {
    if (this.ended) return;
    this.ended = how;
    for (const sink of this.sinks) sink(null, how === 'broken');
    this.sinks.clear();
  }

  /** Feeds `sink` the body from its start; false when it can no longer (past the cap). */
  join(sink: (chunk: Buffer | null, broken: boolean) => void): boolean {
    if (this.overflowed) return false;
    for (const chunk of this.chunks) sink(chunk, false);
    if (this.ended) sink(null, this.ended === 'broken');
    else this.sinks.add(sink);
    return true;
  }

  leave(sink: (chunk: Buffer | null, broken: boolean) => void): void {
    this.sinks.delete(sink);
  }

  /** Waiters taking the body now. */
  readers(): number {
    return this.sinks.size;
  }
}

/** One upstream request that identical GETs share. */
export class Shared {
  private waiters = 0;
  private answer: SharedAnswer | undefined;
  private readonly listeners: ((answer: SharedAnswer) => void)[] = [];

  constructor(
    private readonly cache: RouteCache,
    readonly key: string,
    /** The leader's Vary'd request headers are compared once its answer says what it varies on. */
    readonly leaderHeaders: IncomingHttpHeaders,
  ) {}

  /** Clients waiting on it now. */
  waiting(): number {
    return this.waiters;
  }

  /** Clients waiting on it or taking its body: while any are, its upstream request goes on. */
  listening(): number {
    return this.waiters + (this.answer?.kind === 'stream' ? this.answer.tap.readers() : 0);
  }

  /** Waits for the leader's answer, or undefined when `signal` (the waiter's deadline or its client) ends first. */
  wait(signal: { onAbort(listener: () => void): () => void; aborted: boolean }): Promise<SharedAnswer | undefined> {
    if (this.answer) return Promise.resolve(this.answer);
    this.waiters += 1;
    return new Promise((resolve) => {
      const stop = signal.onAbort(() => {
        this.waiters -= 1;
        resolve(undefined);
      });
      this.listeners.push((answer) => {
        stop();
        this.waiters -= 1;
        resolve(answer);
      });
    });
  }

  /** The leader's outcome (once; later calls do nothing). A stream stays joinable until its body outgrows the cap. */
  settle(answer: SharedAnswer): void {
    if (this.answer) return;
    this.answer = answer;
    for (const listener of this.listeners.splice(0)) listener(answer);
    if (answer.kind !== 'stream') this.release();
    else {
      const tap = answer.tap;
      const done = () => this.release();
      answer.response.once('close', done);
      answer.response.once('end', done);
      if (tap.overflowed) done();
    }
  }

  /** Joinable: no answer yet, or a stream whose kept start is still whole. */
  joinable(): boolean {
    return !this.answer || (this.answer.kind === 'stream' && !this.answer.tap.overflowed && !this.answer.tap.ended);
  }

  private release(): void {
    if (this.cache.shared.get(this.key) === this) this.cache.shared.delete(this.key);
  }
}

/** The shared request a GET of `key` may join, if one is upstream. */
export function sharedFor(cache: RouteCache, key: string): Shared | undefined {
  const shared = cache.shared.get(key) as Shared | undefined;
  return shared?.joinable() ? shared : undefined;
}

/** Registers the GET about to go upstream for `key` as the one identical GETs wait for. */
export function lead(cache: RouteCache, key: string, headers: IncomingHttpHeaders): Shared {
  const shared = new Shared(cache, key, headers);
  cache.shared.set(key, shared);
  return shared;
}

/** Whether a waiter's Vary'd headers are the leader's (an answer that varies on `*` matches no one). */
export function sameVariant(
  response: UpstreamResponse,
  leader: IncomingHttpHeaders,
  waiter: IncomingHttpHeaders,
): boolean {
  const vary = response.headers.vary;
  const names = (Array.isArray(vary) ? vary.join(',') : (vary ?? ''))
    .split(',')
    .map((name) => name.trim().toLowerCase())
    .filter(Boolean);
  if (names.includes('*')) return false;
  const text = (value: string | string[] | undefined) => (Array.isArray(value) ? value.join(', ') : (value ?? ''));
  return names.every((name) => text(leader[name]) === text(waiter[name]));
}
