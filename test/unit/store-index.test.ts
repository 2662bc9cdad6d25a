/**
 * The store's path index (upstream/stale-store.ts): an unsafe method drops
 * every caller's answers of one path without scanning the store (a client
 * POSTing to a route whose cache holds many entries costs one lookup), and
 * the index follows evictions, replacements and clears.
 */
import { describe, expect, it } from 'vitest';
import { StaleStore } from '../../src/upstream/stale-store.js';

const entry = (body = 'x') => ({
  status: 200,
  headers: {},
  body: Buffer.from(body),
  storedAt: 0,
  target: 't',
  vary: [],
});

describe('the store’s path index', () => {
  it('drops every caller’s answers of the path and nothing else', () => {
    const store = new StaleStore({ maxStale: 0, maxEntries: 100, maxEntryBytes: 1024, maxBytes: 1e6 }, true);
    for (const caller of ['a', 'b', 'c']) {
      store.store(`${caller} /doc`, entry(), {});
      store.store(`${caller} /doc/child`, entry(), {});
    }
    store.dropPath('/doc');
    expect(['a', 'b', 'c'].map((caller) => store.match(`${caller} /doc`, {}))).toEqual([
      undefined,
      undefined,
      undefined,
    ]);
    expect(store.size()).toBe(3);
    expect(store.paths()).toBe(1);
  });

  it('stays bounded by the entries: evictions, replacements and clear leave no path behind', () => {
    const store = new StaleStore({ maxStale: 0, maxEntries: 50, maxEntryBytes: 1024, maxBytes: 1e6 }, true);
    for (let i = 0; i < 5000; i++) store.store(`k /items/${i}`, entry(), {});
    expect(store.size()).toBe(50);
    expect(store.paths()).toBe(50);
    store.replace('k /items/4999', { ...entry('y'), maxStale: 0, varyValues: '' });
    expect(store.paths()).toBe(50);
    store.dropPath('/items/4999');
    expect(store.paths()).toBe(49);
    store.clear();
    expect(store.paths()).toBe(0);
  });
});
