// A bounded cache with least-recently-used eviction, approximated by two generations of Maps.

/**
 * Entries live in `young` or `old`; a hit in `old` moves the entry to `young`; when `young` holds half the
 * capacity (or half the cost) it becomes `old` and the previous `old` is dropped whole. Every operation is O(1) with
 * no Map deletes on the hot path: a Map that is constantly deleted from and re-inserted into keeps tombstones that
 * made eviction scans slow.
 */
export class Lru<K, V> {
  private young = new Map<K, V>();
  private old = new Map<K, V>();
  private readonly half: number;
  private readonly halfCost: number;
  /** Summed cost of what `young` holds (a key put again while young is charged again: it only turns over early). */
  private youngCost = 0;

  /** At most `capacity` entries and at most `maxCost` (plus one entry) as `costOf` counts them, e.g. characters. */
  constructor(
    capacity: number,
    maxCost = Infinity,
    private readonly costOf: (key: K, value: V) => number = () => 0,
  ) {
    this.half = Math.max(0, Math.ceil(capacity / 2));
    this.halfCost = maxCost / 2;
  }

  get size(): number {
    return this.young.size + this.old.size;
  }

  get(key: K): V | undefined {
    const hit = this.young.get(key);
    if (hit !== undefined) return hit;
    const aging = this.old.get(key);
    if (aging !== undefined) this.set(key, aging);
    return aging;
  }

  set(key: K, value: V): void {
    if (this.half === 0) return;
    this.young.set(key, value);
    this.youngCost += this.costOf(key, value);
    if (this.young.size >= this.half || this.youngCost >= this.halfCost) {
      this.old = this.young;
      this.young = new Map();
      this.youngCost = 0;
    }
  }

  delete(key: K): void {
    const value = this.young.get(key);
    if (value !== undefined) {
      this.young.delete(key);
      this.youngCost -= this.costOf(key, value);
    }
    this.old.delete(key);
  }

  clear(): void {
    this.young.clear();
    this.old.clear();
    this.youngCost = 0;
  }
}
