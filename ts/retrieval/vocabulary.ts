// A concept vocabulary: texts (optional) plus an embedding matrix held as
// shards on disk (fp16 or fp32), with optional L2 normalisation,
// mean-centring and caption de-duplication. Searches hand whole shard files
// to the exact top-k kernel, which reads them a cache-sized tile at a time
// (or stream bounded blocks through it when rows are dropped or rewritten),
// so a vocabulary larger than memory is never loaded whole. prepare() makes
// it resident instead, with its screening copy rounded once (or reloaded from
// its store) for every later search.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { throttled, throwIfAborted, type ProgressOptions } from '../abort.js';
import { argError, ConceptLensError, fileError } from '../errors.js';
import type { FloatRows } from '../engine/addon.js';
import { engineInfo } from '../engine/info.js';
import { TextHashSet } from '../engine/vocab.js';
import { readLines } from '../io/text.js';
import { requireArray, requireFiniteRows, rowsOf } from '../matrix.js';
import { ExactTopK, PreparedRows, type FileRowsRef, type Metric, type ScanKernel, type SearchResult } from './exact.js';
import { ArrayTexts, SubsetTexts, textRuns, type Texts } from './texts.js';
import { DEFAULT_BLOCK_BYTES, meanRow, readBlocks, restateRow, Scratch, transformBlock, type Shard, type Transforms } from './vocab-blocks.js';
import { isLaionDir, openLaionDir, openNpy, type Source } from './vocab-sources.js';
import { MANIFEST, readPrepared, readStore, storeBytes, verifyStore, VERIFY_ON_OPEN_BYTES, writePreparedInto, writeStore, type VocabContent } from './vocab-store.js';

/** Options of {@link Vocabulary.open} and {@link Vocabulary.fromArray}; progress reports the mean pass that `center` needs. */
export interface OpenOptions extends ProgressOptions {
  /** Names of a single .npy's rows: a file (one per line) or the names themselves. */
  names?: string | readonly string[];
  /** L2-normalise rows as they are read (default false; a store keeps the setting it was built with). */
  normalize?: boolean;
  /**
   * Subtract the mean row (of the normalised rows with `normalize`) as they are read; costs one pass over the data
   * (default false).
   */
  center?: boolean;
  /** Keep the first occurrence of each caption; ids still refer to the original rows. */
  dedupe?: boolean;
  /**
   * Keep only these original rows (ascending): a de-duplication computed elsewhere, such as the sharded one of
   * `distributedDedupe`; ids still refer to the original rows. Not with `dedupe`, nor for a store.
   */
  keepRows?: Float64Array;
  /**
   * Re-hash a store's files against the sha256 its manifest records: true
   * always, false never; by default only stores up to 256 MiB (larger ones
   * cost ~0.7 s per GB to hash), so damage to a store is refused, not searched.
   */
  verify?: boolean;
  /** Upper bound on the bytes of one streamed block (default 64 MiB). */
  blockBytes?: number;
}

/** Options of {@link Vocabulary.search}; progress counts vocabulary rows scanned. */
export interface VocabSearchOptions extends ProgressOptions {
  /** Results per query, from 1 to the vocabulary's rows. */
  k: number;
  /** Score of a row against a query (default 'ip'). */
  metric?: Metric;
  /** FALCON's chunk-local scoring: softmax(T·score) within each source shard. */
  softmaxTemperature?: number;
  /** Return the texts of the hits (default true when the vocabulary has texts). */
  texts?: boolean;
  /** The CPU scan's kernel (see TopKOptions.kernel). */
  kernel?: ScanKernel;
  /** 'cuda' scans on the GPU (engine built with nvcc, a device present). */
  device?: 'cpu' | 'cuda';
}

/** Options of {@link Vocabulary.scan}: a search's, less texts, with the source shards to scan. */
export interface VocabScanOptions extends Omit<VocabSearchOptions, 'texts'> {
  /** Scan only the rows of these source shards (the `chunk` of each {@link Shard}); ids stay vocabulary rows. */
  chunks?: readonly number[];
}

/** The k best vocabulary rows per query, from {@link Vocabulary.search}. */
export interface VocabSearchResult {
  /** Queries. */
  nq: number;
  /** Results per query. */
  k: number;
  /** nq × k original row ids, best first. */
  ids: BigInt64Array;
  /** nq × k scores matching `ids`. */
  scores: Float32Array;
  /** nq × k texts of those rows, when the vocabulary has texts. */
  texts?: string[];
}

type Kept = Pick<VocabContent, 'shards' | 'ids' | 'texts' | 'rows'>;

/** A prepared vocabulary: its rows held in memory (as stored, before transforms) and their screening copy. */
interface Resident {
  rows: FloatRows;
  prepared: PreparedRows;
  source: 'store' | 'computed';
  /** Written into the store this vocabulary was opened from. */
  persisted?: boolean;
}

/**
 * First occurrence of each text wins: kept rows per shard and their original ids. The texts are compared by 128-bit
 * hashes of their UTF-8 bytes, read a page at a time: memory is under 43 bytes per distinct text for the hashes (8 GiB
 * for 400M distinct captions) plus 12 bytes per kept row for the ids, never the texts themselves.
 */
async function dedupe(src: Source, path: string, signal?: AbortSignal): Promise<Kept> {
  if (!src.texts) throw new ConceptLensError('ERR_ARG', `${path}: dedupe needs captions or names, and this vocabulary has none`);
  const seen = new TextHashSet(src.texts.length);
  let ids: Float64Array = new Float64Array(1 << 16), kept = 0, g = 0;
  for await (const r of textRuns(src.texts)) {
    throwIfAborted(signal);
    const first = seen.add(r.bytes, r.start, r.length, r.start.length);
    if (kept + first.length > ids.length) ids = grown(ids, kept + first.length);
    for (let i = 0; i < first.length; i++, g++) if (first[i]) ids[kept++] = g;
  }
  return keepRows(src, ids.subarray(0, kept), g);
}

/** A copy of a with room for at least n values (doubling, so appends stay linear). */
function grown(a: Float64Array, n: number): Float64Array {
  const out = new Float64Array(Math.max(n, 2 * a.length));
  out.set(a);
  return out;
}

/** The source with only the original rows `ids` (ascending) of its `total` rows kept. */
function keepRows(src: Source, ids: Float64Array, total: number): Kept {
  let k = 0, first = 0;
  const shards = src.shards.map((s) => {
    const keep: number[] = [];
    for (; k < ids.length && ids[k] < first + s.rows; k++) keep.push(ids[k] - first);
    first += s.rows;
    return { ...s, rows: keep.length, keep: keep.length === s.rows ? undefined : Int32Array.from(keep) };
  });
  if (ids.length === total) return { shards, rows: total, ids: undefined, texts: src.texts };
  return { shards, rows: ids.length, ids, texts: src.texts && new SubsetTexts(src.texts, ids) };
}

/** The read block size a vocabulary streams its rows in: opts.blockBytes (whole bytes, at least 1) or the default. */
function blockBytesOf(opts: OpenOptions): number {
  const b = opts.blockBytes ?? DEFAULT_BLOCK_BYTES;
  if (!(Number.isInteger(b) && b >= 1)) throw argError('blockBytes', 'an integer number of bytes >= 1', b);
  return b;
}

/** Checks a keepRows option against the source's rows (ascending, in range) before it shapes the vocabulary. */
function requireKeepRows(ids: Float64Array, total: number, path: string): Float64Array {
  for (let i = 0; i < ids.length; i++)
    if (!Number.isInteger(ids[i]) || ids[i] < 0 || ids[i] >= total || (i > 0 && ids[i] <= ids[i - 1]))
      throw argError(`${path}: keepRows[${i}]`, `ascending row ids in [0, ${total})`, ids[i]);
  return ids;
}

/** How a block reaches the kernel: as stored, as stored with a per-query score shift, or rewritten. */
type ScanMode = 'raw' | 'shift' | 'rewrite';

function scanMode(t: Transforms, metric: Metric): ScanMode {
  if (!t.normalize && !t.center) return 'raw';
  // (x - μ)·q = x·q - μ·q: a per-query constant, so ranks (and softmax) are unchanged.
  if (t.center && !t.normalize && metric === 'ip') return 'shift';
  // The cosine kernel normalises rows itself.
  if (t.normalize && !t.center && metric === 'cosine') return 'raw';
  return 'rewrite';
}

/**
 * A concept vocabulary: embeddings held as shards on disk (or in memory) with optional texts, searched exactly
 * by streaming bounded blocks, so it never needs to fit in memory. Open one with {@link Vocabulary.open} or
 * {@link Vocabulary.fromArray}.
 */
export class Vocabulary implements VocabContent {
  readonly dim: number;
  readonly dtype: VocabContent['dtype'];
  readonly rows: number;
  readonly sourceRows: number;
  readonly transforms: Transforms;
  readonly mean?: Float64Array;
  readonly ids?: Float64Array;
  readonly texts?: Texts;
  readonly shards: Shard[];
  private resident?: Resident;

  private constructor(readonly source: string, c: VocabContent, private readonly blockBytes: number,
    private readonly storeDir?: string) {
    ({ dim: this.dim, dtype: this.dtype, rows: this.rows, sourceRows: this.sourceRows, transforms: this.transforms,
      mean: this.mean, ids: this.ids, texts: this.texts, shards: this.shards } = c);
  }

  /** Opens a .npy file, a LAION shard directory, or a store written by save(). */
  static async open(path: string, opts: OpenOptions = {}): Promise<Vocabulary> {
    if (!existsSync(path)) throw fileError(path, 'no such file or directory');
    const dir = statSync(path).isDirectory();
    if (dir && existsSync(join(path, MANIFEST))) {
      if (opts.verify ?? storeBytes(path) <= VERIFY_ON_OPEN_BYTES) await verifyStore(path);
      return new Vocabulary(path, storeWithOptions(path, opts), blockBytesOf(opts), path);
    }
    if (dir && opts.names !== undefined) throw new ConceptLensError('ERR_ARG', `${path}: names: is for a single .npy; a shard directory has its own captions`);
    return Vocabulary.fromSource(path, dir ? await laion(path) : openNpy(path, opts.names), opts);
  }

  /**
   * A vocabulary over rows held in memory (rows × dim, fp32 or fp16 bits),
   * with optional names; the same transforms as open(). The array is read in
   * place: do not change it while the vocabulary is in use.
   */
  static async fromArray(vectors: Float32Array | Uint16Array, dim: number,
    opts: Omit<OpenOptions, 'verify'> & { name?: string } = {}): Promise<Vocabulary> {
    if (!(vectors instanceof Float32Array) && !(vectors instanceof Uint16Array))
      throw argError('vectors', 'Float32Array (fp32) or Uint16Array (fp16 bits)', vectors, 'ERR_DTYPE');
    const rows = rowsOf(vectors, dim, 'vectors'), name = opts.name ?? '<memory>';
    if (rows === 0) throw new ConceptLensError('ERR_SHAPE', `vectors: ${name} has 0 rows; a vocabulary needs at least one`);
    requireFiniteRows(vectors, dim, 'vectors', (i) => `vectors: row ${i} of ${name}`);
    const dtype = vectors instanceof Float32Array ? 'float32' : 'float16';
    const header = { path: name, dtype, shape: [rows, dim], dataOffset: 0 } as const;
    const names = typeof opts.names === 'string' ? readLines(opts.names) : opts.names;
    if (names && names.length !== rows) throw new ConceptLensError('ERR_SHAPE', `names: expected ${rows} (one per row of ${name}), got ${names.length}`);
    const src: Source = { dim, dtype, shards: [{ header: { ...header, shape: [...header.shape] }, rows, chunk: 0, data: vectors }], texts: names && new ArrayTexts(names) };
    return Vocabulary.fromSource(name, src, opts);
  }

  private static async fromSource(path: string, src: Source, opts: OpenOptions): Promise<Vocabulary> {
    const blockBytes = blockBytesOf(opts);
    // 'yes' or 0 would be taken as a choice the caller did not state.
    for (const key of ['normalize', 'center', 'dedupe'] as const)
      if (opts[key] !== undefined && typeof opts[key] !== 'boolean') throw argError(key, 'true or false', opts[key]);
    const rows = src.shards.reduce((a, s) => a + s.rows, 0);
    if (rows === 0) throw new ConceptLensError('ERR_SHAPE', `${path}: has 0 rows; a vocabulary needs at least one`);
    const base = { rows, ids: undefined, shards: src.shards, texts: src.texts };
    if (opts.dedupe && opts.keepRows) throw new ConceptLensError('ERR_ARG', `${path}: dedupe and keepRows both choose the rows kept; give one`);
    const kept = opts.dedupe ? await dedupe(src, path, opts.signal) : opts.keepRows ? keepRows(src, requireKeepRows(opts.keepRows, rows, path), rows) : base;
    if (kept.rows === 0) throw new ConceptLensError('ERR_ARG', `${path}: keepRows: keeps no rows; expected at least one`);
    const transforms = { normalize: !!opts.normalize, center: !!opts.center };
    const mean = transforms.center ? await meanRow(kept.shards, src.dim, transforms.normalize, { ...opts, blockBytes }) : undefined;
    return new Vocabulary(path, { ...kept, dim: src.dim, dtype: src.dtype, sourceRows: rows, transforms, mean }, blockBytes);
  }

  /**
   * Makes the vocabulary resident for repeated searches: its rows (as stored, before transforms) held in memory, and
   * their screening copy prepared once (frame fitted over all rows, every row rounded with its error bounds), or
   * reloaded from the store when it has one for this CPU's format and this engine's packing. Later searches scan the
   * copy instead of rounding every row again and re-score from the resident rows: the same ids and scores as before.
   * Searches whose rows must be rewritten (normalize or center under another metric than the store's raw scan) or
   * that run on the GPU still stream the shards. Calling it again returns the same copy. `persist`: a copy computed for a store is written
   * into it (atomically), so the next open() reuses it.
   */
  async prepare(opts: ProgressOptions & { persist?: boolean } = {}): Promise<PreparedRows> {
    if (!this.resident) {
      const rows = await this.residentRows(opts.signal);
      const stored = this.storeDir ? await readPrepared(this.storeDir) : undefined;
      const info = engineInfo();
      const reuse = stored && stored.rows === this.rows && stored.dim === this.dim && stored.format === (info.screening[0] ?? null) &&
        stored.layout === info.screenLayout;
      const prepared = reuse ? await PreparedRows.fromArrays(stored) : await PreparedRows.prepare(rows, this.dim, opts);
      this.resident = { rows, prepared, source: reuse ? 'store' : 'computed' };
    }
    if (opts.persist && this.storeDir && this.resident.source === 'computed' && !this.resident.persisted) {
      await writePreparedInto(this.storeDir, await this.resident.prepared.arrays());
      this.resident.persisted = true;
    }
    return this.resident.prepared;
  }

  /** The prepared copy and where it came from (its store, or computed by prepare()); undefined before prepare(). */
  get prepared(): { rows: PreparedRows; source: 'store' | 'computed' } | undefined {
    return this.resident && { rows: this.resident.prepared, source: this.resident.source };
  }

  /** All rows as stored (kept rows only), in one array: in place for a single in-memory shard, else read. */
  private async residentRows(signal?: AbortSignal): Promise<FloatRows> {
    const only = this.shards.length === 1 ? this.shards[0] : undefined;
    if (only?.data && !only.keep) return only.data;
    const out = this.dtype === 'float16' ? new Uint16Array(this.rows * this.dim) : new Float32Array(this.rows * this.dim);
    for await (const b of readBlocks(this.shards, this.blockBytes, signal)) out.set(b.data, b.start * this.dim);
    return out;
  }

  /** Original id of vocabulary row i. */
  originalId(i: number): number {
    return this.ids ? this.ids[i] : i;
  }

  /** Exact top-k of each query row (nq × dim fp32) over the whole vocabulary. */
  async search(queries: Float32Array, opts: VocabSearchOptions): Promise<VocabSearchResult> {
    return this.finish(queries, await this.scan(queries, opts), opts);
  }

  /**
   * The scan half of {@link Vocabulary.search}: the engine's top-k over the rows of the chosen source shards (all by
   * default), as vocabulary row ids and scores before centring's score shift. Because scores are per row (and the
   * softmax per source shard), the top-k lists of disjoint shard sets, merged by score and then lower id, are the
   * scan of their union: a sharded search scans shards apart and merges, then calls finish().
   */
  async scan(queries: Float32Array, opts: VocabScanOptions): Promise<SearchResult> {
    const nq = this.queryRows(queries), chosen = opts.chunks && new Set(opts.chunks);
    const inScan = chosen && ((s: Shard) => chosen.has(s.chunk));
    const rows = inScan ? this.shards.reduce((a, s) => a + (inScan(s) ? s.rows : 0), 0) : this.rows;
    if (!Number.isInteger(opts.k) || opts.k < 1 || opts.k > rows)
      throw argError('k', `an integer from 1 to the ${inScan ? 'scanned shards\'' : 'vocabulary\'s'} ${rows} rows`, opts.k);
    const metric = opts.metric ?? 'ip';
    const mode = scanMode(this.transforms, metric);
    const softmax = (opts.softmaxTemperature ?? 0) > 0;
    const acc = new ExactTopK(queries, nq, this.dim,
      { k: opts.k, metric, softmaxTemperature: opts.softmaxTemperature, kernel: opts.kernel, device: opts.device });
    const cpu = (opts.device ?? 'cpu') === 'cpu';
    // Resident rows scanned through their prepared copy, when the kernel reads the rows as stored.
    const resident = cpu && mode !== 'rewrite' ? this.resident : undefined;
    // Whole files the engine reads itself (no rows dropped, none rewritten): a tile at a time into cache-sized buffers.
    const direct = (s: Shard) => !s.data && !s.keep && mode !== 'rewrite' && cpu;
    let chunk: number | undefined, scanned = 0, start = 0;
    const scratch = new Scratch(), mean = this.mean32();
    const progress = (before: number) => opts.onProgress && ((d: number) => opts.onProgress!(before + d, rows));
    for (const [i, s] of this.shards.entries()) {
      const first = start;
      start += s.rows;
      if (inScan && !inScan(s)) continue;
      if (softmax && chunk !== undefined && s.chunk !== chunk) acc.endChunk();
      chunk = s.chunk;
      if (resident) {
        const rowsOfShard = resident.rows.subarray(first * this.dim, (first + s.rows) * this.dim);
        await acc.addPrepared(resident.prepared, rowsOfShard, { first, idOffset: first, signal: opts.signal, onProgress: progress(scanned) }).catch((e) => {
          throw restateRow(e, this.shards, { shard: i, start: first, local: s.keep, fileStart: 0 });
        });
        scanned += s.rows;
        continue;
      }
      if (direct(s)) {
        const h = s.header, file = { path: h.path, dataOffset: h.dataOffset, dtype: h.dtype as FileRowsRef['dtype'], cols: this.dim, first: 0, rows: s.rows };
        await acc.addFile(file, { idOffset: first, signal: opts.signal, onProgress: progress(scanned) }).catch((e) => {
          throw restateRow(e, this.shards, { shard: i, start: first, fileStart: 0 });
        });
        scanned += s.rows;
        continue;
      }
      for await (const b of readBlocks(this.shards, this.blockBytes, opts.signal, (x) => x === s)) {
        const data = mode === 'rewrite' ? await transformBlock(this.shards, b, this.dim, this.transforms, mean, scratch.take(b.data.length), opts.signal) : b.data;
        await acc.add(data, b.rows, { idOffset: b.start, signal: opts.signal, onProgress: progress(scanned) }).catch((e) => {
          throw restateRow(e, this.shards, b);
        });
        scanned += b.rows;
      }
    }
    return acc.result();
  }

  /** The finishing half of {@link Vocabulary.search}: a scan's result with centring's score shift, original ids and texts. */
  async finish(queries: Float32Array, r: SearchResult, opts: Pick<VocabSearchOptions, 'metric' | 'softmaxTemperature' | 'texts'>): Promise<VocabSearchResult> {
    const softmax = (opts.softmaxTemperature ?? 0) > 0;
    if (scanMode(this.transforms, opts.metric ?? 'ip') === 'shift' && !softmax) this.shiftScores(queries, r.scores, r.k);
    const ids = r.ids.map((id) => BigInt(this.originalId(Number(id))));
    const texts = this.texts && opts.texts !== false ? await this.texts.lookup(Array.from(r.ids, Number)) : undefined;
    return { nq: r.nq, k: r.k, ids, scores: r.scores, texts };
  }

  /** All rows, transformed, as one fp32 matrix (for the approximate indexes, which hold vectors in memory). */
  async toFloat32(opts: ProgressOptions = {}): Promise<Float32Array> {
    const out = new Float32Array(this.rows * this.dim), mean = this.mean32(), progress = throttled(opts.onProgress);
    for await (const b of readBlocks(this.shards, this.blockBytes, opts.signal)) {
      await transformBlock(this.shards, b, this.dim, this.transforms, mean, out.subarray(b.start * this.dim, (b.start + b.rows) * this.dim), opts.signal);
      progress(b.start + b.rows, this.rows);
    }
    return out;
  }

  /**
   * Writes the compact store (atomically) that open() reopens without a data pass; with the prepared screening copy
   * beside the vectors when the vocabulary is prepared (or `prepare` asks for it), so prepare() on the reopened store
   * reloads it instead of computing it.
   */
  async save(out: string, opts: ProgressOptions & { prepare?: boolean } = {}): Promise<void> {
    if (opts.prepare) await this.prepare(opts);
    const prepared = this.resident && (await this.resident.prepared.arrays());
    await writeStore(this, out, { ...opts, blockBytes: this.blockBytes, prepared });
  }

  private mean32(): Float32Array | undefined {
    return this.mean && Float32Array.from(this.mean);
  }

  private queryRows(queries: Float32Array): number {
    requireArray(queries, Float32Array, 'queries');
    if (queries.length === 0 || queries.length % this.dim !== 0)
      throw new ConceptLensError('ERR_SHAPE', `queries: ${queries.length} values are not a whole number of rows of the vocabulary's dimension ${this.dim}`);
    return queries.length / this.dim;
  }

  /** Centring under 'ip': score -= μ·q for each query's row of scores. */
  private shiftScores(queries: Float32Array, scores: Float32Array, k: number): void {
    const d = this.dim;
    for (let q = 0; q < queries.length / d; q++) {
      let mq = 0;
      for (let j = 0; j < d; j++) mq += this.mean![j] * queries[q * d + j];
      for (let j = 0; j < k; j++) scores[q * k + j] -= mq;
    }
  }
}

async function laion(dir: string): Promise<Source> {
  if (!isLaionDir(dir)) throw fileError(dir, `neither a vocabulary store (${MANIFEST}) nor a LAION shard directory (text_emb_{i}.npy)`);
  return openLaionDir(dir);
}

/** A store's transforms are fixed when it is built; asking for others is an error, not a silent no-op. */
function storeWithOptions(path: string, opts: OpenOptions): VocabContent {
  const c = readStore(path);
  if (opts.names !== undefined) throw new ConceptLensError('ERR_ARG', `${path}: a store keeps its own texts; names: is for a .npy source`);
  if (opts.dedupe || opts.keepRows) throw new ConceptLensError('ERR_ARG', `${path}: a store's de-duplication is fixed when it is built (vocab build --dedupe)`);
  for (const t of ['normalize', 'center'] as const)
    if (opts[t] !== undefined && opts[t] !== c.transforms[t])
      throw new ConceptLensError('ERR_ARG', `${path}: store was built with ${t}=${c.transforms[t]}, asked for ${t}=${opts[t]}; rebuild it with vocab build`);
  return c;
}
