// What a worker opens once and reuses across the jobs of a run (a
// vocabulary, its queries, a concept dictionary): the few most recent, so a
// worker serving many runs does not grow. A promise that rejects is dropped,
// so the next job tries again instead of inheriting the failure.
/** The `size` most recently used values by key, made on first use. */
export class Recent<T> {
  private readonly map = new Map<string, T>();

  constructor(private readonly size: number) {}

  get(key: string, make: () => T): T {
    let v = this.map.get(key);
    if (v === undefined) {
      v = make();
      if (v instanceof Promise) v.catch(() => this.map.delete(key));
    }
    this.map.delete(key);  // re-inserted last: the most recent
    this.map.set(key, v);
    for (const old of this.map.keys()) if (this.map.size > this.size) this.map.delete(old);
    return v;
  }
}
