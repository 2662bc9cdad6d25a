/**
 * The one bounded map of the code base: a Map in least-recently-used order
 * with a cap. When a new key would go past the cap, the least recently
 * used entries that are not busy are evicted (and `onEvict` runs for each)
 * until there is room; busy entries are never evicted, so the map may
 * outgrow its cap while everything in it is in use (rate-limit keys with
 * requests queued, forward targets with open sockets, pacers with requests
 * in flight). Without `busy`, the least recently used entry goes.
 *
 * `getOrCreateWithin` is the hard-capped form, for keys a client chooses
 * (rate-limit key values): it never grows past the cap, and it looks at no
 * more than {@link SCAN} entries to make room, so a flood of new keys costs
 * each request the same small time however full the map is of busy entries.
 *
 * Why not lru-cache: its eviction cannot skip entries in use.
 */

/** Entries `getOrCreateWithin` looks at, at most, to make room for one. */
export const SCAN = 32;

export interface BoundedMapOptions<K, V> {
  readonly max: number;
  /** An entry that must not be evicted now. */
  readonly busy?: (value: V, key: K) => boolean;
  /** Runs for each evicted entry (close what it holds). */
  readonly onEvict?: (value: V, key: K) => void;
}

export class BoundedMap<K, V> {
  private readonly entries = new Map<K, V>();

  constructor(private readonly options: BoundedMapOptions<K, V>) {}

  /** The entry, made the most recently used. */
  get(key: K): V | undefined {
    const value = this.entries.get(key);
    if (value !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, value);
    }
    return value;
  }

  /** The entry, without touching its recency. */
  peek(key: K): V | undefined {
    return this.entries.get(key);
  }

  /** The entry for `key`, created by `create` (making room first) when absent; made the most recently used. */
  getOrCreate(key: K, create: () => V): V {
    const existing = this.get(key);
    if (existing !== undefined) return existing;
    const value = create();
    this.set(key, value);
    return value;
  }

  /**
   * The entry for `key`, created when absent if there is room or room can be
   * made: among the {@link SCAN} least recently used entries, those not busy
   * are evicted until there is. Busy ones looked at move to the most recent
   * end, so the next call looks at others (the cost of a full map is spread,
   * never repeated). Undefined, with nothing created, when no room was made:
   * the map never holds more than `max` entries this way.
   */
  getOrCreateWithin(key: K, create: () => V): V | undefined {
    const existing = this.get(key);
    if (existing !== undefined) return existing;
    if (this.entries.size >= this.options.max && !this.makeRoom()) return undefined;
    const value = create();
    this.entries.set(key, value);
    return value;
  }

  /** Sets `key` as the most recently used entry, making room first when it is new. */
  set(key: K, value: V): void {
    if (this.entries.has(key)) this.entries.delete(key);
    else if (this.entries.size >= this.options.max) this.evict();
    this.entries.set(key, value);
  }

  delete(key: K): boolean {
    return this.entries.delete(key);
  }

  get size(): number {
    return this.entries.size;
  }

  values(): IterableIterator<V> {
    return this.entries.values();
  }

  [Symbol.iterator](): IterableIterator<[K, V]> {
    return this.entries[Symbol.iterator]();
  }

  /** Removes every entry (without onEvict: the caller is closing them). */
  clear(): void {
    this.entries.clear();
  }

  /** True once the map is below its cap, after looking at SCAN entries at most. */
  private makeRoom(): boolean {
    const { max, busy, onEvict } = this.options;
    let looked = 0;
    for (const [key, value] of this.entries) {
      if (this.entries.size < max || looked++ === SCAN) break;
      this.entries.delete(key);
      if (busy?.(value, key)) this.entries.set(key, value);
      else onEvict?.(value, key);
    }
    return this.entries.size < max;
  }

  private evict(): void {
    const { max, busy, onEvict } = this.options;
    for (const [key, value] of this.entries) {
      if (this.entries.size < max) return;
      if (busy?.(value, key)) continue;
      this.entries.delete(key);
      onEvict?.(value, key);
    }
  }
}
