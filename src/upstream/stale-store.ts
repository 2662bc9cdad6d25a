/**
 * A route's stored answers: for stale fallback (SPEC §8.2), a route's last
 * good answers to GETs, served while its upstream fails; for its cache
 * (§17), the same answers with their freshness, served while fresh and
 * revalidated after. One store per route, whichever uses it. An LRU
 * (lru-cache) bounded by `maxEntries` and by `maxBytes` of bodies.
 *
 * What is stored: a complete 200 to a GET, body at most `maxEntryBytes`,
 * unless the upstream said `Cache-Control: no-store` or `private` (stored
 * when the route has a cache: its key is per caller), sent
 * `Set-Cookie` or `Vary: *`, or the request said `Cache-Control: no-store`.
 * The key: the path and query as sent upstream (with the host, on a
 * forward-proxy route) and a hash of the request's credential headers
 * (`Authorization`, `Cookie`, the usual API-key headers; never the values); the headers the answer
 * `Vary`s on are kept with it and must match. One variant per key: a
 * caller whose Vary'd headers differ gets no stale answer, never another's.
 */
import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { LRUCache } from 'lru-cache';
import type { Freshness } from './cache-rules.js';

/** A store's bounds; `maxStale` is the oldest a stale fallback serves (0: no stale fallback). */
export interface StoreLimits {
  readonly maxStale: number;
  readonly maxEntries: number;
  readonly maxEntryBytes: number;
  readonly maxBytes: number;
}

export interface StaleEntry {
  readonly status: number;
  /** The upstream's headers as received (hop-by-hop headers are dropped when it is served). */
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  /** Monotonic ms when stored. */
  readonly storedAt: number;
  /** The oldest it may be served (maxStale, capped by stale-if-error). */
  readonly maxStale: number;
  /** The target that answered. */
  readonly target: string;
  /** Request headers named by Vary, lower case, and the values they had. */
  readonly vary: readonly string[];
  readonly varyValues: string;
  /** Its freshness, on a route with a cache (SPEC §17). */
  readonly freshness?: Freshness;
}

/** Cache-Control directives of a header, lower case, with their values. */
export function cacheControl(value: string | string[] | undefined): Map<string, string> {
  const directives = new Map<string, string>();
  const text = Array.isArray(value) ? value.join(',') : (value ?? '');
  for (const part of text.split(',')) {
    const [name, arg] = part.split('=', 2);
    const key = name!.trim().toLowerCase();
    if (key) directives.set(key, (arg ?? '').trim().replace(/^"|"$/g, ''));
  }
  return directives;
}

function headerText(value: string | string[] | undefined): string {
  return Array.isArray(value) ? value.join(', ') : (value ?? '');
}

/** A request that asked not to get a stored answer, or not to have its answer stored. */
export function refusesStale(request: IncomingHttpHeaders): boolean {
  const directives = cacheControl(request['cache-control']);
  return (
    directives.has('no-cache') ||
    directives.has('no-store') ||
    headerText(request.pragma).toLowerCase().includes('no-cache')
  );
}

/** Paths whose drops are remembered (an answer older than the drop is then not stored); the oldest forgotten first. */
const REMEMBERED_DROPS = 10_000;

export class StaleStore {
  private readonly entries: LRUCache<string, StaleEntry>;
  /** Drops so far, and the last drop of each recent path (an unsafe method's success, SPEC §17). */
  private drops = 0;
  private readonly droppedAt = new LRUCache<string, number>({ max: REMEMBERED_DROPS });

  constructor(
    readonly config: StoreLimits,
    /** The route has a cache (SPEC §17): `private` answers are stored (the key is per caller). */
    private readonly keepsPrivate = false,
  ) {
    this.entries = new LRUCache<string, StaleEntry>({
      max: config.maxEntries,
      maxSize: config.maxBytes,
      sizeCalculation: (entry) => Math.max(1, entry.body.length),
      // Evicted, dropped or replaced: out of the path index too (set() indexes the new one after).
      dispose: (_entry, key) => this.unindex(key),
    });
  }

  /** Every stored key of a path (what keyOf puts after the space): an unsafe method drops them without a scan. */
  private readonly byPath = new Map<string, Set<string>>();

  private index(key: string): void {
    const path = key.slice(key.indexOf(' ') + 1);
    let keys = this.byPath.get(path);
    if (!keys) this.byPath.set(path, (keys = new Set()));
    keys.add(key);
  }

  private unindex(key: string): void {
    const path = key.slice(key.indexOf(' ') + 1);
    const keys = this.byPath.get(path);
    if (!keys) return;
    keys.delete(key);
    if (keys.size === 0) this.byPath.delete(path);
  }

  /** Paths with a stored answer (the index follows the entries: bounded by maxEntries). */
  paths(): number {
    return this.byPath.size;
  }

  /**
   * The key of a request: path and query as sent upstream, and a hash of
   * the values of its key headers (the route's `keyHeaders`, lower case):
   * the headers that carry a caller's identity, so that no caller gets
   * another's answer whichever way it authenticates.
   */
  keyOf(upstreamPath: string, request: IncomingHttpHeaders, keyHeaders: readonly string[]): string {
    let credentials = '';
    let any = false;
    for (const name of keyHeaders) {
      const value = headerText(request[name]);
      if (value !== '') any = true;
      credentials += `${value}\u0000`;
    }
    const hash = any ? createHash('sha256').update(credentials).digest('base64url').slice(0, 22) : '-';
    return `${hash} ${upstreamPath}`;
  }

  /**
   * The Vary'd header names of an answer that may be stored (an empty list
   * when it varies on nothing), or null when it may not: not a 200, private,
   * no-store, Set-Cookie, Vary: *, or a body announced larger than the bound.
   */
  storable(status: number, response: IncomingHttpHeaders, request: IncomingHttpHeaders): string[] | null {
    if (status !== 200 || response['set-cookie'] !== undefined) return null;
    const directives = cacheControl(response['cache-control']);
    if (
      directives.has('no-store') ||
      (directives.has('private') && !this.keepsPrivate) ||
      cacheControl(request['cache-control']).has('no-store')
    )
      return null;
    const length = Number(response['content-length'] ?? 0);
    if (length > this.config.maxEntryBytes) return null;
    const vary = headerText(response.vary)
      .split(',')
      .map((name) => name.trim().toLowerCase())
      .filter((name) => name !== '');
    return vary.includes('*') ? null : vary;
  }

  /**
   * Stores a complete answer; `chunks` are its body as received. `since`: the mark taken when its request
   * started; an answer whose path was dropped after it is not stored.
   */
  store(
    key: string,
    entry: Omit<StaleEntry, 'maxStale' | 'varyValues'>,
    request: IncomingHttpHeaders,
    since = Infinity,
  ): void {
    if (since !== Infinity && this.droppedSince(key, since)) return;
    if (entry.body.length > this.config.maxEntryBytes || entry.body.length > this.config.maxBytes) return;
    const staleIfError = cacheControl(entry.headers['cache-control']).get('stale-if-error');
    const cap = staleIfError !== undefined && /^\d+$/.test(staleIfError) ? Number(staleIfError) * 1000 : Infinity;
    this.entries.set(key, {
      ...entry,
      maxStale: Math.min(this.config.maxStale, cap),
      varyValues: varyValues(entry.vary, request),
    });
    this.index(key);
  }

  /** The stored answer for a request, when there is one young enough whose Vary'd headers match. */
  lookup(key: string, request: IncomingHttpHeaders, at: number): StaleEntry | undefined {
    const entry = this.match(key, request);
    return entry && at - entry.storedAt <= entry.maxStale ? entry : undefined;
  }

  /** The stored answer for a request whose Vary'd headers match, however old (the cache judges its freshness). */
  match(key: string, request: IncomingHttpHeaders): StaleEntry | undefined {
    const entry = this.entries.get(key);
    return entry && varyValues(entry.vary, request) === entry.varyValues ? entry : undefined;
  }

  /** Whether a stored answer is the variant `request` gets (its Vary'd headers match). */
  fits(entry: StaleEntry, request: IncomingHttpHeaders): boolean {
    return varyValues(entry.vary, request) === entry.varyValues;
  }

  /** Replaces a stored answer by its refreshed self (a 304's headers, SPEC §17), keeping its place in the bounds. */
  replace(key: string, entry: StaleEntry): void {
    this.entries.set(key, entry);
    this.index(key);
  }

  drop(key: string): void {
    this.entries.delete(key);
  }

  /** Drops every caller's answer for `path` (what keyOf put after the space): an unsafe method changed it. */
  dropPath(path: string): void {
    this.drops += 1;
    this.droppedAt.set(path, this.drops);
    for (const key of [...(this.byPath.get(path) ?? [])]) this.entries.delete(key);
  }

  /** A mark to take when a request starts: an answer to it is stored only if its path was not dropped since. */
  mark(): number {
    return this.drops;
  }

  /** Whether the path of `key` was dropped after `mark` (the answer in hand predates the change). */
  droppedSince(key: string, mark: number): boolean {
    return (this.droppedAt.get(key.slice(key.indexOf(' ') + 1)) ?? 0) > mark;
  }

  size(): number {
    return this.entries.size;
  }

  bytes(): number {
    return this.entries.calculatedSize;
  }

  clear(): void {
    this.entries.clear();
    this.byPath.clear();
  }
}

function varyValues(names: readonly string[], request: IncomingHttpHeaders): string {
  return names.map((name) => headerText(request[name])).join('\u0000');
}
