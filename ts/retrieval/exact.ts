// Exact top-k over a vocabulary that arrives in shards (the native scan:
// screened low-precision scores or fused GEMM + selection tiles), with the
// running merge across shards.
import type { ProgressOptions } from '../abort.js';
import type { PreparedArrays, ScanKernel, ScoreArithmetic } from '../engine/addon.js';
import { PreparedScreen, TopKScan, type FileRowsRef } from '../engine/topk.js';
import { argError, requireOptions } from '../errors.js';
import { rowsOf } from '../matrix.js';

export type { ScanKernel, ScoreArithmetic, FileRowsRef, PreparedArrays };
/** Score of a row against a query: inner product, or cosine (both normalised by the kernel). */
export type Metric = 'ip' | 'cosine';

/** Options of {@link exactSearch} and {@link ExactTopK}; progress counts rows scanned. */
export interface TopKOptions extends ProgressOptions {
  /** Results per query, at least 1 and at most the rows scanned. */
  k: number;
  /** 'ip' (inner product, default) or 'cosine' (rows and queries normalised by the kernel). */
  metric?: Metric;
  /** FALCON's chunk-local scoring: softmax(T·score) within each chunk (shard) when > 0 (default 0: plain scores). */
  softmaxTemperature?: number;
  /** 'cuda' runs the GPU kernel (engine built with nvcc, a device present). */
  device?: 'cpu' | 'cuda';
  /**
   * CPU scan: 'sgemm' (fp32 GEMM tiles), or screening in 'int8' (AVX512-VNNI)
   * or 'bf16' (AVX512-BF16): low-precision scores with a certified error
   * bound, fp32 re-scoring of the rows that could rank, so the same results
   * at two to four times the multiply rate. 'auto' picks int8, then bf16,
   * where the CPU has them, except for softmax scoring.
   */
  kernel?: ScanKernel;
}

/** The k best rows per query. */
export interface SearchResult {
  /** nq × k, each row best first; ties go to the lower id. */
  ids: BigInt64Array;
  /** nq × k scores matching `ids` (softmax probabilities with `softmaxTemperature`). */
  scores: Float32Array;
  /** Queries. */
  nq: number;
  /** Results per query. */
  k: number;
  /**
   * What computed the scores of this scan (which screening format 'auto' took, or 'fp32'); absent where results of
   * several scans were merged.
   */
  scoredBy?: ScoreArithmetic;
}

/**
 * Rows prepared once for the screened exact scan: the screening frame fitted over all of them, every row rounded once
 * (int8, or bf16 where the CPU lacks AVX512-VNNI) with its error bounds, and 1/‖row‖ for cosine. Searches given it
 * ({@link ExactTopK.addPrepared}, `exactSearch(..., { prepared })`) read the rounded copy instead of rounding every
 * row on every call, and re-score candidates from the exact rows: the same ids and scores as without it.
 */
export class PreparedRows {
  private constructor(/** @internal */ readonly screen: PreparedScreen) {}

  /**
   * Prepares rows × dim rows (fp32, or fp16 bits) on the compute pool. `invNorms`: the 1/‖row‖ searches would pass
   * to {@link ExactTopK.add}, kept as they are (default: computed as the scan computes them).
   */
  static async prepare(vectors: Float32Array | Uint16Array, dim: number, opts: ProgressOptions & { invNorms?: Float32Array } = {}): Promise<PreparedRows> {
    const rows = rowsOf(vectors, dim, 'vectors');
    return new PreparedRows(await PreparedScreen.prepare(vectors, rows, dim, opts.invNorms ?? null, opts));
  }

  /**
   * A prepared copy from its arrays (as {@link PreparedRows.arrays} gave them), checked: shapes, finite terms,
   * power-of-two frame scales.
   * @throws ConceptLensError ERR_DTYPE / ERR_SHAPE / ERR_ARG naming the array that does not fit.
   */
  static async fromArrays(a: PreparedArrays): Promise<PreparedRows> {
    return new PreparedRows(await PreparedScreen.fromArrays(a));
  }

  /** The screening format ('int8' or 'bf16'), or null where this CPU screens in neither (then only the norms are kept). */
  get format(): 'int8' | 'bf16' | null {
    return this.screen.native.format;
  }

  /** Rows prepared. */
  get rows(): number {
    return this.screen.native.rows;
  }

  /** Their dimension. */
  get dim(): number {
    return this.screen.native.dim;
  }

  /** Bytes of the screening copy's packed values, what a search streams (0 without a format). */
  get screeningBytes(): number {
    return this.screen.native.packedBytes;
  }

  /** The copy as arrays (copied), for persisting. */
  arrays(): Promise<PreparedArrays> {
    return this.screen.arrays();
  }
}

/**
 * A running exact top-k: add() shards in turn (one at a time), then result(). An aborted add leaves part of its rows
 * scanned: start a new ExactTopK.
 */
export class ExactTopK {
  private readonly scan: TopKScan;
  /** One past the highest id added: where ids continue by default. */
  private rowsSeen = 0;
  /** Rows added, whatever their ids: what can fill the top k. */
  private rowsAdded = 0;

  constructor(queries: Float32Array, readonly nq: number, readonly dim: number, readonly options: TopKOptions) {
    requireOptions(options, 'k');
    this.scan = new TopKScan(queries, nq, dim, {
      k: options.k, metric: options.metric ?? 'ip', softmaxTemperature: options.softmaxTemperature ?? 0,
      device: options.device ?? 'cpu', kernel: options.kernel ?? 'auto',
    });
  }

  /** Adds rows whose ids continue from the rows added so far (or from idOffset). */
  async add(vectors: Float32Array | Uint16Array, rows: number, opts: ProgressOptions & { idOffset?: number; invNorms?: Float32Array } = {}): Promise<void> {
    const offset = opts.idOffset ?? this.rowsSeen;
    await this.scan.add(vectors, rows, offset, opts.invNorms ?? null,
      { signal: opts.signal ?? this.options.signal, onProgress: opts.onProgress ?? this.options.onProgress });
    this.counted(offset, rows);
  }

  /**
   * Adds rows [first, first + rows) of a row-major array stored in a file (an .npy's data from `dataOffset`), read by
   * the engine a tile at a time into cache-sized buffers; ids continue as for add(). CPU only.
   */
  async addFile(file: FileRowsRef, opts: ProgressOptions & { idOffset?: number } = {}): Promise<void> {
    const offset = opts.idOffset ?? this.rowsSeen;
    await this.scan.addFile(file, offset, { signal: opts.signal ?? this.options.signal, onProgress: opts.onProgress ?? this.options.onProgress });
    this.counted(offset, file.rows);
  }

  /**
   * Adds rows [first, first + rows) of a prepared vocabulary, `vectors` being its exact rows there (fp32 or fp16
   * bits, read only to re-score candidates): the same result as add(vectors), without rounding them again. CPU only.
   * Where this scan does not screen in the copy's format (kernel 'sgemm', softmax scoring) it is add(vectors).
   */
  async addPrepared(prepared: PreparedRows, vectors: Float32Array | Uint16Array, opts: ProgressOptions & { first?: number; idOffset?: number } = {}): Promise<void> {
    const rows = rowsOf(vectors, this.dim, 'vectors'), offset = opts.idOffset ?? this.rowsSeen;
    await this.scan.addPrepared(prepared.screen, vectors, rows, opts.first ?? 0, offset,
      { signal: opts.signal ?? this.options.signal, onProgress: opts.onProgress ?? this.options.onProgress });
    this.counted(offset, rows);
  }

  private counted(offset: number, rows: number): void {
    this.rowsSeen = Math.max(this.rowsSeen, offset + rows);
    this.rowsAdded += rows;
  }

  /** Closes a softmax chunk; the next add() starts a new one. */
  endChunk(): void {
    this.scan.endChunk();
  }

  /**
   * The top k of every row added so far, per query.
   * @throws ConceptLensError ERR_ARG when fewer than k rows were added.
   */
  async result(): Promise<SearchResult> {
    if (this.rowsAdded < this.options.k) throw argError('k', `at most ${this.rowsAdded} (the rows scanned)`, this.options.k);
    const r = await this.scan.result();
    return { ids: r.ids, scores: r.scores, nq: this.nq, k: this.options.k, scoredBy: r.scoredBy };
  }
}

/**
 * One-shot exact search of queries (nq × dim) against one in-memory matrix (rows × dim, fp32 or fp16 bits); with
 * `prepared`, that matrix's {@link PreparedRows} (same results, no per-call rounding).
 */
export async function exactSearch(queries: Float32Array, vectors: Float32Array | Uint16Array, dim: number,
  options: TopKOptions & { prepared?: PreparedRows }): Promise<SearchResult> {
  const nq = rowsOf(queries, dim, 'queries'), rows = rowsOf(vectors, dim, 'vectors');
  const s = new ExactTopK(queries, nq, dim, options);
  if (options.prepared) await s.addPrepared(options.prepared, vectors, { idOffset: 0 });
  else await s.add(vectors, rows);
  return s.result();
}
