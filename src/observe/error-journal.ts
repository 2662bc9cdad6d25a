/**
 * The error journal (SPEC §12): the last requests that ended in an error,
 * newest first, in a fixed ring. What goes in is built by the server's
 * Exchange, only for a request that failed, so the success path never
 * touches it; what comes out is `GET /errors` on the admin port.
 *
 * Entries carry what the operator needs to tell whose fault a failure was
 * without reproducing it: the problem's code, hint and responsibility, each
 * attempt, and what the provider said. Never request bodies, request header
 * values, query strings, cookies or credentials: the builder only ever reads
 * the normalized path and an allow-list of the upstream's response headers.
 */

/** One attempt upstream, as the journal shows it. */
export interface JournalAttempt {
  readonly target: string;
  /** The upstream's status, null when no response arrived. */
  readonly status: number | null;
  /** The error it amounts to (an upstream status's code, or UPSTREAM_TIMEOUT, ...); null for a success. */
  readonly code: string | null;
  /** Null for a first attempt that succeeded (a body that broke off later): it was not timed for the journal. */
  readonly durationMs: number | null;
}

/**
 * What the upstream itself said in its error answer, bounded whatever it sent (SPEC §20.7;
 * server/journal-entry.ts cuts it).
 */
export interface JournalProvider {
  readonly status: number;
  /** At most 128 characters. */
  readonly code: string | null;
  /** At most 1,024 characters, ending in `…` when cut. */
  readonly message: string | null;
  /**
   * Its body: parsed JSON when it fits in 4 KiB (as sent and written again), else the text cut at 4 KiB; null
   * when empty.
   */
  readonly body: unknown;
}

export interface JournalEntry {
  readonly time: string;
  readonly requestId: string;
  readonly method: string;
  readonly path: string;
  readonly route: string;
  readonly upstream: string | null;
  readonly target: string | null;
  /** A forward-proxy request's caller (SPEC §19.3), null when none matched; absent on other requests. */
  readonly caller?: string | null;
  /** The status sent to the client. */
  readonly status: number;
  readonly code: string;
  readonly source: 'proxy' | 'upstream';
  readonly responsibility: string;
  readonly retryable: boolean;
  readonly hint: string;
  /** Breakwater's own problems: the detail the client got. */
  readonly detail?: string;
  readonly durationMs: number;
  readonly attempts: readonly JournalAttempt[];
  readonly provider: JournalProvider | null;
  /**
   * The upstream's rate-limit, Retry-After and request-id headers, lower-case names; each value at most 256
   * characters.
   */
  readonly headers: Readonly<Record<string, string>>;
  /** Answered with a stored answer instead (SPEC §8.2): `code` is the failure it replaced. */
  readonly stale?: true;
}

export interface JournalFilter {
  readonly route?: string;
  readonly code?: string;
  readonly limit?: number;
}

/**
 * The ring, and how many entries it may take a second: at most `size`, so
 * that a storm of errors (every request a 404 or a 503) is sampled instead
 * of building an entry per request. Measured on an all-error load, building
 * every entry cost 17-19% of the throughput; sampled, it is within noise.
 */
export class ErrorJournal {
  private ring: (JournalEntry | undefined)[];
  /** Where the next entry goes. */
  private next = 0;
  private count = 0;
  /** Entries built since start (the ring keeps the last `size`). */
  recorded = 0;
  /** Failed requests not journaled since start: more than `size` a second. */
  skipped = 0;
  private tokens: number;
  private refilledAt: number;

  constructor(
    private capacity: number,
    /** Milliseconds on a monotonic clock (the rate of admission). */
    private readonly now: () => number,
  ) {
    this.ring = new Array<JournalEntry | undefined>(capacity);
    this.tokens = capacity;
    this.refilledAt = now();
  }

  private refill(): void {
    const at = this.now();
    this.tokens = Math.min(this.capacity, this.tokens + ((at - this.refilledAt) / 1000) * this.capacity);
    this.refilledAt = at;
  }

  /** Whether an entry would be admitted now (a failed answer's body is kept for it only then). */
  wants(): boolean {
    if (this.capacity === 0) return false;
    this.refill();
    return this.tokens >= 1;
  }

  /** Takes the right to build one entry; false (and counted as skipped) past `size` a second. */
  admit(): boolean {
    if (this.capacity === 0) return false;
    this.refill();
    if (this.tokens < 1) {
      this.skipped += 1;
      return false;
    }
    this.tokens -= 1;
    return true;
  }

  get size(): number {
    return this.capacity;
  }

  /** Whether entries are kept at all (size 0 keeps none: the Exchange then builds none). */
  get enabled(): boolean {
    return this.capacity > 0;
  }

  record(entry: JournalEntry): void {
    if (this.capacity === 0) return;
    this.recorded += 1;
    this.ring[this.next] = entry;
    this.next = (this.next + 1) % this.capacity;
    this.count = Math.min(this.count + 1, this.capacity);
  }

  /** Newest first, filtered; `limit` caps what is returned after filtering. */
  list(filter: JournalFilter = {}): JournalEntry[] {
    const out: JournalEntry[] = [];
    const limit = filter.limit ?? this.capacity;
    for (let i = 1; i <= this.count && out.length < limit; i++) {
      const entry = this.ring[(this.next - i + this.capacity) % this.capacity]!;
      if (filter.route !== undefined && entry.route !== filter.route) continue;
      if (filter.code !== undefined && entry.code !== filter.code) continue;
      out.push(entry);
    }
    return out;
  }

  /** A reload changed `observability.errorJournal.size`: keeps the newest entries that fit. */
  resize(capacity: number): void {
    if (capacity === this.capacity) return;
    this.tokens = Math.min(this.tokens, capacity);
    const kept = this.list({ limit: capacity }).reverse();
    this.capacity = capacity;
    this.ring = new Array<JournalEntry | undefined>(capacity);
    this.next = 0;
    this.count = 0;
    for (const entry of kept) {
      this.ring[this.next] = entry;
      this.next = (this.next + 1) % Math.max(1, capacity);
      this.count += 1;
    }
  }
}
