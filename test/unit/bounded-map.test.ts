import { describe, expect, it } from 'vitest';
import { BoundedMap } from '../../src/lib/bounded-map.js';

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
});
