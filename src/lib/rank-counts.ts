/**
 * Counts per key and rank (a priority class, SPEC §13), kept only while
 * non-zero: a pacer's waiting requests by class, for /status.
 */
export class RankCounts {
  private readonly byKey = new Map<string, number[]>();

  add(key: string, rank: number, by: number): void {
    let counts = this.byKey.get(key);
    if (!counts) this.byKey.set(key, (counts = []));
    counts[rank] = (counts[rank] ?? 0) + by;
    if (counts.every((count) => !count)) this.byKey.delete(key);
  }

  /** Counts one in at `rank` unless `already` (or without a rank: no classes); true once counted. */
  enter(key: string, rank: number | undefined, already: boolean): boolean {
    if (already || rank === undefined) return already;
    this.add(key, rank, 1);
    return true;
  }

  /** The counts of `key` by rank (a hole or a missing key reads as zero). */
  of(key: string): readonly number[] {
    return this.byKey.get(key) ?? [];
  }
}
