// A bounded cache with least-recently-used eviction, approximated by two generations of Maps.

/**
 * Entries live in `young` or `old`; a hit in `old` moves the entry to `young`; when `young` holds half the
 * capacity it becomes `old` and the previous `old` is dropped whole. Every operation is O(1) with no Map deletes:
 * a Map that is constantly deleted from and re-inserted into keeps tombstones that made eviction scans slow.
 */
export class Lru<K, V> {
  private young = new Map<K, V>();
  private old = new Map<K, V>();
  private readonly half: number;

  constructor(capacity: number) {
    this.half = Math.max(0, Math.ceil(capacity / 2));
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
    if (this.young.size >= this.half) {
      this.old = this.young;
      this.young = new Map();
    }
  }

  delete(key: K): void {
    this.young.delete(key);
    this.old.delete(key);
  }

  clear(): void {
    this.young.clear();
    this.old.clear();
  }
}
