/**
 * A Map with a size bound for per-client and per-topic caches on the publish path. When full, the
 * oldest insertion is evicted (Map iterates in insertion order), so memory stays bounded whatever
 * client ids or topics arrive. No LRU refresh on read: it would cost a delete + set per hit, and
 * a miss only costs one recomputation.
 */
export class BoundedMap<K, V> {
  readonly #max: number;
  readonly #map = new Map<K, V>();

  constructor(max: number) {
    if (!Number.isSafeInteger(max) || max < 1) throw new RangeError(`BoundedMap: max must be a positive integer, got ${max}`);
    this.#max = max;
  }

  get(key: K): V | undefined {
    return this.#map.get(key);
  }

  set(key: K, value: V): void {
    if (this.#map.size >= this.#max && !this.#map.has(key)) {
      const oldest = this.#map.keys().next();
      if (!oldest.done) this.#map.delete(oldest.value);
    }
    this.#map.set(key, value);
  }

  get size(): number {
    return this.#map.size;
  }
}
