// FALCON step 6: the top captions of each image from a caption vocabulary
// of any size, streamed shard by shard through the exact top-k engine, with
// the reference's per-shard softmax(100·cos) scoring.
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { ProgressOptions } from '../../abort.js';
import { readNpyHeader, type NpyHeader } from '../../io/npy.js';
import { readParquetStrings } from '../../io/parquet.js';
import { ExactTopK } from '../../retrieval/exact.js';
import type { ImageCaptions } from './concepts.js';

export interface VocabBlock {
  /** Valid until the block after next is requested (the reader reuses two buffers). */
  vectors: Float32Array | Uint16Array;
  rows: number;
  /** The last block of a chunk (a shard: the unit of the per-shard softmax). */
  endOfChunk: boolean;
}

/** What FALCON needs of a caption vocabulary (the project's Vocabulary can be adapted to it). */
export interface CaptionVocabulary {
  readonly name: string;
  readonly dim: number;
  readonly rows: number;
  /** All rows in id order, in blocks small enough to stream. */
  blocks(signal?: AbortSignal): AsyncIterable<VocabBlock>;
  /** Caption texts of the given row ids. */
  captions(ids: number[]): Promise<string[]>;
}

interface NpyShard {
  header: NpyHeader;
  first: number;
  texts: () => Promise<string[]>;
}

function readLines(path: string): string[] {
  const lines = readFileSync(path, 'utf8').split(/\r\n|\r|\n/);
  if (lines.at(-1) === '') lines.pop();
  return lines;
}

function embeddingHeader(path: string): NpyHeader {
  const h = readNpyHeader(path);
  if (h.shape.length !== 2 || (h.dtype !== 'float32' && h.dtype !== 'float16'))
    throw new Error(`${path}: expected a 2-D float16 or float32 caption embedding array, got ${h.dtype} of shape [${h.shape.join(', ')}]`);
  return h;
}

function readFully(fd: number, dst: Uint8Array, pos: number, path: string): void {
  for (let done = 0; done < dst.length;) {
    const got = readSync(fd, dst, done, dst.length - done, pos + done);
    if (got === 0) throw new Error(`${path}: truncated at byte ${pos + done}`);
    done += got;
  }
}

function checkedTexts(path: string, texts: string[], rows: number, of: string): string[] {
  if (texts.length !== rows) throw new Error(`${path}: ${texts.length} captions, expected ${rows} (the rows of ${of})`);
  return texts;
}

/** .npy shards (each its own softmax chunk) whose caption texts are loaded on demand. */
class NpyCaptionVocabulary implements CaptionVocabulary {
  readonly dim: number;
  readonly rows: number;

  constructor(readonly name: string, private readonly shards: NpyShard[], private readonly blockBytes = 64 * 2 ** 20) {
    const last = shards.at(-1);
    this.rows = last ? last.first + last.header.shape[0] : 0;
    if (this.rows === 0) throw new Error(`${name}: the caption vocabulary is empty (0 rows); captions need at least one`);
    this.dim = shards[0].header.shape[1];
    const odd = shards.find((s) => s.header.shape[1] !== this.dim || s.header.dtype !== shards[0].header.dtype);
    if (odd) throw new Error(`${odd.header.path}: ${odd.header.dtype} × ${odd.header.shape[1]}, expected ${shards[0].header.dtype} × ${this.dim} like ${shards[0].header.path}`);
  }

  // Two reused buffers: fresh large allocations page-fault on every block, which costs more than the read.
  async *blocks(signal?: AbortSignal): AsyncIterable<VocabBlock> {
    const bytesPerRow = this.dim * (this.shards[0].header.dtype === 'float16' ? 2 : 4);
    const step = Math.max(1, Math.floor(this.blockBytes / bytesPerRow));
    const bufs = [new ArrayBuffer(step * bytesPerRow), new ArrayBuffer(step * bytesPerRow)];
    let turn = 0;
    for (const s of this.shards) {
      const n = s.header.shape[0], fd = openSync(s.header.path, 'r');
      try {
        for (let r0 = 0; r0 < n; r0 += step) {
          signal?.throwIfAborted();
          const rows = Math.min(step, n - r0), buf = bufs[turn++ & 1];
          readFully(fd, new Uint8Array(buf, 0, rows * bytesPerRow), s.header.dataOffset + r0 * bytesPerRow, s.header.path);
          const len = rows * this.dim;
          yield { vectors: s.header.dtype === 'float16' ? new Uint16Array(buf, 0, len) : new Float32Array(buf, 0, len), rows, endOfChunk: r0 + rows >= n };
        }
      } finally {
        closeSync(fd);
      }
    }
  }

  /** Loads each shard's texts once per call and keeps none, so memory stays at one shard's captions. */
  async captions(ids: number[]): Promise<string[]> {
    const out = new Array<string>(ids.length);
    const byShard = new Map<number, number[]>();
    ids.forEach((id, j) => {
      if (!Number.isInteger(id) || id < 0 || id >= this.rows) throw new RangeError(`caption id: expected an integer in [0, ${this.rows}), got ${id}`);
      let si = this.shards.length - 1;
      while (this.shards[si].first > id) si--;
      byShard.set(si, [...(byShard.get(si) ?? []), j]);
    });
    for (const [si, js] of byShard) {
      const texts = await this.shards[si].texts();
      for (const j of js) out[j] = texts[ids[j] - this.shards[si].first];
    }
    return out;
  }
}

/** One embedding .npy with its captions: a text file, one per line, or the lines themselves. */
export function openNpyCaptions(npyPath: string, text: string | string[]): CaptionVocabulary {
  const header = embeddingHeader(npyPath);
  const what = typeof text === 'string' ? text : 'captions';
  const texts = async () => checkedTexts(what, typeof text === 'string' ? readLines(text) : text, header.shape[0], npyPath);
  return new NpyCaptionVocabulary(npyPath, header.shape[0] > 0 ? [{ header, first: 0, texts }] : []);
}

/**
 * A directory in the LAION layout: text_emb_{i}.npy with captions in
 * metadata_{i}.parquet (column `caption`) or captions_{i}.txt.
 */
export function openLaionCaptions(dir: string): CaptionVocabulary {
  const ids = readdirSync(dir).map((f) => /^text_emb_(\d+)\.npy$/.exec(f)?.[1]).filter((s): s is string => s !== undefined)
    .map(Number).sort((a, b) => a - b);
  const shards: NpyShard[] = [];
  let first = 0;
  for (const i of ids) {
    const header = embeddingHeader(join(dir, `text_emb_${i}.npy`));
    const parquet = join(dir, `metadata_${i}.parquet`), txt = join(dir, `captions_${i}.txt`);
    const texts = existsSync(parquet)
      ? async () => checkedTexts(parquet, await readParquetStrings(parquet, 'caption'), header.shape[0], header.path)
      : async () => {
        if (!existsSync(txt)) throw new Error(`${dir}: shard ${i} has no captions (expected metadata_${i}.parquet or captions_${i}.txt)`);
        return checkedTexts(txt, readLines(txt), header.shape[0], header.path);
      };
    if (header.shape[0] > 0) shards.push({ header, first, texts });
    first += header.shape[0];
  }
  if (ids.length === 0) throw new Error(`${dir}: the caption vocabulary is empty (no text_emb_{i}.npy shards)`);
  return new NpyCaptionVocabulary(basename(dir), shards);
}

/** A LAION-layout directory, or an .npy whose captions are `textPath` (default: the .npy path with .txt). */
export function openCaptions(path: string, textPath?: string): CaptionVocabulary {
  if (!existsSync(path)) throw new Error(`${path}: caption vocabulary not found`);
  if (statSync(path).isDirectory()) return openLaionCaptions(path);
  return openNpyCaptions(path, textPath ?? path.replace(/\.npy$/, '') + '.txt');
}

export interface CaptionOptions extends ProgressOptions {
  k?: number;
  /** > 0: scores are softmax(T·cos) within each shard (the reference uses 100); 0: plain cosine. */
  softmaxTemperature?: number;
  /** The vocabulary's rows are unit norm (as LAION's): score by inner product with normalised queries, skipping row norms. */
  unitRows?: boolean;
}

/** The n rows of an n × d matrix scaled to unit norm. */
export function normalisedRows(m: Float32Array, n: number, d: number): Float32Array {
  const out = new Float32Array(m.length);
  for (let i = 0; i < n; i++) {
    const row = m.subarray(i * d, (i + 1) * d), norm = Math.hypot(...row);
    for (let c = 0; c < d; c++) out[i * d + c] = row[c] / norm;
  }
  return out;
}

/** The top-k captions (best first) of each of n image embeddings (n × dim). */
export async function topCaptions(images: Float32Array, n: number, vocab: CaptionVocabulary, opts: CaptionOptions = {}): Promise<ImageCaptions[]> {
  if (images.length !== n * vocab.dim)
    throw new RangeError(`image embeddings: expected ${n}×${vocab.dim} (the caption vocabulary's dimension) = ${n * vocab.dim} values, got ${images.length}`);
  if (n === 0) return [];
  const k = Math.min(opts.k ?? 5, vocab.rows);
  const queries = opts.unitRows ? normalisedRows(images, n, vocab.dim) : images;
  const search = new ExactTopK(queries, n, vocab.dim, { k, metric: opts.unitRows ? 'ip' : 'cosine', softmaxTemperature: opts.softmaxTemperature ?? 100 });
  // The next block is read while the engine scans the current one.
  const it = vocab.blocks(opts.signal)[Symbol.asyncIterator]();
  let done = 0;
  for (let b = await it.next(); !b.done;) {
    const scan = search.add(b.value.vectors, b.value.rows, { signal: opts.signal }), next = it.next();
    await scan;
    if (b.value.endOfChunk) search.endChunk();
    done += b.value.rows;
    opts.onProgress?.(done, vocab.rows);
    b = await next;
  }
  const r = search.result();
  const ids = Array.from(r.ids, Number), found = ids.filter((id) => id >= 0);
  const texts = await vocab.captions(found);
  const out: ImageCaptions[] = [];
  let t = 0;
  for (let q = 0; q < n; q++) {
    const m = ids.slice(q * k, (q + 1) * k).filter((id) => id >= 0).length;
    out.push({ captions: texts.slice(t, t + m), scores: Array.from(r.scores.subarray(q * k, q * k + m)) });
    t += m;
  }
  return out;
}
