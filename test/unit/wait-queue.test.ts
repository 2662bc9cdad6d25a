import { describe, expect, it } from 'vitest';
import { WaitQueue } from '../../src/lib/wait-queue.js';

const never = () => () => {};
/** A place of class `rank`, without the starvation guard or with it after `promoteAfterMs`. */
const at = (rank: number, promoteAfterMs: number | null = null) => ({ rank, promoteAfterMs });

describe('WaitQueue', () => {
  it('hands values out in arrival order and says when nobody waits', async () => {
    const queue = new WaitQueue<number>();
    const first = queue.wait(10_000, never, () => new Error('timeout'));
    const second = queue.wait(10_000, never, () => new Error('timeout'));
    expect(queue.length).toBe(2);
    expect(queue.resolveHead(1)).toBe(true);
    expect(queue.resolveHead(2)).toBe(true);
    expect(queue.resolveHead(3)).toBe(false);
    expect(await Promise.all([first, second])).toEqual([1, 2]);
  });

  it('gives a waiter up after its own wait or when it is aborted, and the others keep their place', async () => {
    const queue = new WaitQueue<string>();
    let abort: () => void = () => {};
    const timedOut = queue.wait(20, never, () => new Error('timed out'));
    const aborted = queue.wait(
      10_000,
      (listener) => ((abort = listener), () => {}),
      () => new Error('aborted'),
    );
    const kept = queue.wait(10_000, never, () => new Error('timeout'));
    abort();
    await expect(aborted).rejects.toThrow('aborted');
    await expect(timedOut).rejects.toThrow('timed out');
    expect(queue.length).toBe(1);
    queue.resolveHead('ok');
    expect(await kept).toBe('ok');
  });

  it('rejects every waiter at once', async () => {
    const queue = new WaitQueue<number>();
    const waits = [queue.wait(10_000, never, () => 'timeout'), queue.wait(10_000, never, () => 'timeout')];
    queue.rejectAll(new Error('redis is failing'));
    for (const wait of waits) await expect(wait).rejects.toThrow('redis is failing');
    expect(queue.length).toBe(0);
  });

  it('hands values to the highest class first (rank 0), first come first served within a class', async () => {
    const queue = new WaitQueue<string>();
    const order: string[] = [];
    const join = (name: string, rank: number) =>
      queue.wait(10_000, never, () => new Error('timeout'), at(rank)).then(() => order.push(name));
    const all = [join('b1', 2), join('n1', 1), join('b2', 2), join('c1', 0), join('n2', 1), join('c2', 0)];
    for (let i = 0; i < 6; i++) queue.resolveHead('go');
    await Promise.all(all);
    expect(order).toEqual(['c1', 'c2', 'n1', 'n2', 'b1', 'b2']);
  });

  it('displaces the newest waiter of the lowest class below the newcomer, and nobody of its own class or above', async () => {
    const queue = new WaitQueue<string>();
    const settled: string[] = [];
    const join = (name: string, rank: number) =>
      queue
        .wait(10_000, never, () => new Error('timeout'), at(rank))
        .then(
          () => settled.push(`${name} served`),
          (error: Error) => settled.push(`${name} ${error.message}`),
        );
    const all = [join('n1', 1), join('b1', 2), join('b2', 2), join('n2', 1)];
    expect(queue.displace(2, () => new Error('displaced'))).toBe(false);
    expect(queue.displace(0, () => new Error('displaced'))).toBe(true);
    expect(queue.displace(1, () => new Error('displaced'))).toBe(true);
    expect(queue.displace(1, () => new Error('displaced'))).toBe(false);
    expect(queue.length).toBe(2);
    queue.resolveHead('go');
    queue.resolveHead('go');
    await Promise.all(all);
    expect(settled).toEqual(['b2 displaced', 'b1 displaced', 'n1 served', 'n2 served']);
  });

  it('releases a lower-class waiter that has waited promoteAfter as the highest class, after older ones of it, and counts it in its own class', async () => {
    const queue = new WaitQueue<string>();
    const order: string[] = [];
    const promoted: string[] = [];
    const join = (name: string, rank: number, promoteAfterMs: number | null = 30) =>
      queue
        .wait(10_000, never, () => new Error('timeout'), { rank, promoteAfterMs }, { add: () => promoted.push(name) })
        .then(() => order.push(name));
    const waits = [join('c0', 0), join('b1', 2), join('n1', 1), join('b-unguarded', 2, null)];
    // Past promoteAfter (the promotion timers, set first and shorter, fire before this one), then newer critical and batch waiters.
    await new Promise((resolve) => setTimeout(resolve, 80));
    waits.push(join('c1', 0), join('b2', 2), join('c2', 0));
    const byRank: number[] = [];
    queue.countRanks(byRank);
    expect(byRank).toEqual([3, 1, 3]);
    // A full queue still refuses the newest waiter of the lowest class (b2).
    expect(queue.displace(0, () => new Error('displaced'))).toBe(true);
    for (let i = 0; i < 6; i++) queue.resolveHead('go');
    await Promise.allSettled(waits);
    // b1 and n1 were promoted: after the older critical c0, before the newer c1 and c2; the unguarded batch one keeps its class.
    expect(order).toEqual(['c0', 'b1', 'n1', 'c1', 'c2', 'b-unguarded']);
    // Each went ahead of a waiting critical request.
    expect(promoted).toEqual(['b1', 'n1']);
  });

  it('promotes nobody before promoteAfter, says nothing when nobody of a higher class waits, and a waiter whose wait ends first gives up as before', async () => {
    const queue = new WaitQueue<string>();
    const order: string[] = [];
    const promoted: string[] = [];
    const join = (name: string, rank: number, promoteAfterMs: number, waitMs = 10_000) =>
      queue
        .wait(waitMs, never, () => new Error('timeout'), { rank, promoteAfterMs }, { add: () => promoted.push(name) })
        .then(
          () => order.push(name),
          () => order.push(`${name} gave up`),
        );
    const first = [join('b1', 2, 5_000), join('short', 2, 50, 20), join('c1', 0, 5_000)];
    await new Promise((resolve) => setTimeout(resolve, 80));
    queue.resolveHead('go');
    queue.resolveHead('go');
    await Promise.all(first);
    expect(order).toEqual(['short gave up', 'c1', 'b1']);
    // Promoted, but alone with its own class: released as before, and not said to have gone ahead.
    const alone = [join('b2', 2, 20), join('b3', 2, 20)];
    await new Promise((resolve) => setTimeout(resolve, 80));
    queue.resolveHead('go');
    queue.resolveHead('go');
    await Promise.all(alone);
    expect(order.slice(3)).toEqual(['b2', 'b3']);
    expect(promoted).toEqual([]);
  });
});
