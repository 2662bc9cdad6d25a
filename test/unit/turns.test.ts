import { describe, expect, it } from 'vitest';
import { Turns, TurnsByKey } from '../../src/lib/turns.js';

const never = () => () => {};

describe('Turns', () => {
  it('is free until claimed; then hands the turn to the highest class waiting, FIFO within one, and is free again', async () => {
    const turns = new Turns();
    expect(turns.busy).toBe(false);
    expect(turns.claim()).toBe(true);
    expect(turns.claim()).toBe(false);
    const order: string[] = [];
    const wait = (name: string, rank: number) =>
      turns
        .take({ rank, promoteAfterMs: null }, 10_000, never, () => new Error('timeout'))
        .then(() => order.push(name));
    const all = [wait('b1', 2), wait('c1', 0), wait('b2', 2), wait('c2', 0)];
    for (let i = 0; i < 4; i++) {
      turns.give();
      await Promise.resolve();
    }
    await Promise.all(all);
    expect(order).toEqual(['c1', 'c2', 'b1', 'b2']);
    expect(turns.busy).toBe(true);
    turns.give();
    expect(turns.busy).toBe(false);
  });

  it('gives the turn to a lower-class waiter that has waited promoteAfter before a later higher one (the starvation guard)', async () => {
    const turns = new Turns();
    turns.claim();
    const order: string[] = [];
    const wait = (name: string, rank: number) =>
      turns.take({ rank, promoteAfterMs: 30 }, 10_000, never, () => new Error('timeout')).then(() => order.push(name));
    const all = [wait('b1', 2)];
    await new Promise((resolve) => setTimeout(resolve, 80));
    all.push(wait('c1', 0), wait('b2', 2));
    for (let i = 0; i < 3; i++) {
      turns.give();
      await Promise.resolve();
    }
    await Promise.all(all);
    expect(order).toEqual(['b1', 'c1', 'b2']);
  });

  it('gives a waiter up after its wait, and keeps per-key turns only while busy', async () => {
    const turns = new Turns();
    turns.claim();
    await expect(turns.take({ rank: 0, promoteAfterMs: null }, 10, never, () => new Error('gave up'))).rejects.toThrow(
      'gave up',
    );
    turns.give();
    expect(turns.busy).toBe(false);
    const byKey = new TurnsByKey();
    expect(byKey.of('a').claim()).toBe(true);
    expect(byKey.of('a').busy).toBe(true);
    byKey.give('a');
    expect(byKey.of('a').busy).toBe(false);
  });
});
