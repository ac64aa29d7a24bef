import { describe, expect, it } from 'vitest';
import { Lru } from '../../src/guard/lru.js';

describe('Lru', () => {
  it('keeps recently used entries and stays within its capacity', () => {
    const lru = new Lru<number, number>(100);
    for (let i = 0; i < 1000; i++) {
      lru.set(i, i);
      expect(lru.get(0)).toBe(0); // used all along: never evicted
      expect(lru.size).toBeLessThanOrEqual(100);
    }
    expect(lru.get(999)).toBe(999);
    expect(lru.get(500)).toBeUndefined();
  });

  it('forgets a deleted entry in either generation', () => {
    const lru = new Lru<string, number>(4);
    lru.set('old', 1);
    lru.set('aging', 2); // young is full at half the capacity: both become the old generation
    lru.set('young', 3);
    lru.delete('old');
    lru.delete('young');
    expect([lru.get('old'), lru.get('aging'), lru.get('young')]).toEqual([undefined, 2, undefined]);
  });

  it('holds at most maxCost (plus one entry) of what it was charged, hits included, whatever the count allows', () => {
    const lru = new Lru<number, number>(1000, 100, () => 10);
    let held = 0;
    for (let i = 0; i < 500; i++) {
      lru.set(i, i);
      lru.get(i - 3); // hits move entries up uncharged
      held = Math.max(held, lru.size * 10);
    }
    expect(held).toBeLessThanOrEqual(110);
    expect(lru.get(499)).toBe(499);
    expect(lru.get(100)).toBeUndefined();
  });

  it('stores nothing with capacity 0', () => {
    const lru = new Lru<string, number>(0);
    lru.set('a', 1);
    expect(lru.get('a')).toBeUndefined();
  });
});
