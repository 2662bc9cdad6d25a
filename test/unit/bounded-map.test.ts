import { describe, expect, it } from 'vitest';
import { BoundedMap, SCAN } from '../../src/lib/bounded-map.js';

describe('BoundedMap', () => {
  it('evicts the least recently used entry when full, and reads refresh recency', () => {
    const evicted: string[] = [];
    const map = new BoundedMap<string, number>({ max: 3, onEvict: (_, key) => evicted.push(key) });
    map.set('a', 1);
    map.set('b', 2);
    map.set('c', 3);
    expect(map.get('a')).toBe(1); // a is now the most recent
    map.set('d', 4);
    expect(evicted).toEqual(['b']);
    expect([...map].map(([key]) => key)).toEqual(['c', 'a', 'd']);
    expect(map.peek('c')).toBe(3);
    map.set('e', 5);
    expect(evicted).toEqual(['b', 'c']); // peek did not refresh c
  });

  it('never evicts a busy entry: it evicts the next idle one, or grows past the cap when all are busy', () => {
    const busy = new Set(['a', 'b']);
    const map = new BoundedMap<string, string>({ max: 2, busy: (_, key) => busy.has(key) });
    map.set('a', 'A');
    map.set('b', 'B');
    map.set('c', 'C');
    expect(map.size).toBe(3);
    busy.delete('a');
    // Back under the cap: every idle entry in LRU order goes until there is room (a and c), b stays.
    map.set('d', 'D');
    expect([...map].map(([key]) => key)).toEqual(['b', 'd']);
    expect(map.getOrCreate('d', () => 'new')).toBe('D');
    expect(map.getOrCreate('e', () => 'E')).toBe('E');
    expect([...map].map(([key]) => key)).toEqual(['b', 'e']);
  });

  it('getOrCreateWithin never grows past the cap: with every entry busy it creates nothing and says so', () => {
    const busy = new Set(['a', 'b']);
    const evicted: string[] = [];
    const map = new BoundedMap<string, string>({
      max: 2,
      busy: (_, key) => busy.has(key),
      onEvict: (_, key) => evicted.push(key),
    });
    expect(map.getOrCreateWithin('a', () => 'A')).toBe('A');
    expect(map.getOrCreateWithin('b', () => 'B')).toBe('B');
    let created = 0;
    expect(
      map.getOrCreateWithin('c', () => {
        created += 1;
        return 'C';
      }),
    ).toBeUndefined();
    expect(created).toBe(0);
    expect(map.size).toBe(2);
    expect(map.getOrCreateWithin('a', () => 'new')).toBe('A'); // present entries are still found
    busy.delete('b');
    expect(map.getOrCreateWithin('c', () => 'C')).toBe('C');
    expect(evicted).toEqual(['b']);
    expect([...map].map(([key]) => key)).toEqual(['a', 'c']);
  });

  it('getOrCreateWithin looks at no more than SCAN entries per call, and moves the busy ones it saw to the back', () => {
    const max = SCAN * 3;
    let looked = 0;
    const idle = new Set<number>();
    const map = new BoundedMap<number, number>({
      max,
      busy: (_, key) => {
        looked += 1;
        return !idle.has(key);
      },
    });
    for (let i = 0; i < max; i++) map.getOrCreateWithin(i, () => i);
    // Only the last-used entry is idle: the first call looks at SCAN busy ones and gives up.
    idle.add(max - 1);
    expect(map.getOrCreateWithin(-1, () => -1)).toBeUndefined();
    expect(looked).toBe(SCAN);
    // The next calls look at the entries the first did not see, and find the idle one on the third.
    looked = 0;
    expect(map.getOrCreateWithin(-2, () => -2)).toBeUndefined();
    expect(map.getOrCreateWithin(-3, () => -3)).toBe(-3);
    expect(looked).toBe(SCAN * 2);
    expect(map.peek(max - 1)).toBeUndefined();
    expect(map.size).toBe(max);
  });
});
