import { describe, expect, it } from 'vitest';
import { WaitQueue } from '../../src/lib/wait-queue.js';

const never = () => () => {};

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
});
