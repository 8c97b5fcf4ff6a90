// The texts of a vocabulary's rows (concept names, captions), wherever they
// live: in memory, in per-shard files read on demand (LAION captions), or in
// a store's UTF-8 blob. Lookups are asynchronous so a shard's captions are
// read only when one of its rows is asked for, and none are kept.
import { ConceptLensError } from '../errors.js';

/** The texts (concept names, captions) of a vocabulary's rows, wherever they live; read on demand. */
export interface Texts {
  /** Number of texts (one per vocabulary row). */
  readonly length: number;
  /** Texts of the given row ids, in that order. */
  lookup(ids: readonly number[]): Promise<string[]>;
  /** Every text in row order, in consecutive parts. */
  parts(): AsyncIterable<string[]>;
}

function checkIds(ids: readonly number[], length: number): void {
  for (const id of ids)
    if (!Number.isInteger(id) || id < 0 || id >= length)
      throw new ConceptLensError('ERR_ARG', `text id: expected an integer in [0, ${length}), got ${id}`);
}

export class ArrayTexts implements Texts {
  constructor(private readonly a: readonly string[]) {}
  get length(): number {
    return this.a.length;
  }
  async lookup(ids: readonly number[]): Promise<string[]> {
    checkIds(ids, this.length);
    return ids.map((i) => this.a[i]);
  }
  async *parts(): AsyncIterable<string[]> {
    yield [...this.a];
  }
}

/** A run of consecutive rows whose texts one file holds. */
export interface TextPart {
  first: number;
  rows: number;
  /** Reads the part's texts (exactly `rows` of them, or an error naming the file). */
  load(): Promise<string[]>;
}

/** Texts in consecutive parts (one per shard file, or one file for all), loaded per lookup. */
export class PartTexts implements Texts {
  readonly length: number;

  constructor(private readonly list: readonly TextPart[]) {
    this.length = list.reduce((a, p) => a + p.rows, 0);
  }

  async lookup(ids: readonly number[]): Promise<string[]> {
    checkIds(ids, this.length);
    const out = new Array<string>(ids.length), byPart = new Map<number, number[]>();
    ids.forEach((id, j) => {
      let lo = 0, hi = this.list.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (this.list[mid].first <= id) lo = mid;
        else hi = mid - 1;
      }
      byPart.set(lo, [...(byPart.get(lo) ?? []), j]);
    });
    for (const [p, js] of byPart) {
      const texts = await this.list[p].load();
      for (const j of js) out[j] = texts[ids[j] - this.list[p].first];
    }
    return out;
  }

  async *parts(): AsyncIterable<string[]> {
    for (const p of this.list) yield await p.load();
  }
}

/** Texts of the kept rows only (de-duplication): row i is `source` row ids[i]. */
export class SubsetTexts implements Texts {
  constructor(private readonly source: Texts, private readonly ids: Float64Array) {}
  get length(): number {
    return this.ids.length;
  }
  lookup(ids: readonly number[]): Promise<string[]> {
    checkIds(ids, this.length);
    return this.source.lookup(ids.map((i) => this.ids[i]));
  }
  async *parts(): AsyncIterable<string[]> {
    let at = 0, k = 0;
    for await (const part of this.source.parts()) {
      const kept: string[] = [];
      for (; k < this.ids.length && this.ids[k] < at + part.length; k++) kept.push(part[this.ids[k] - at]);
      at += part.length;
      yield kept;
    }
  }
}
