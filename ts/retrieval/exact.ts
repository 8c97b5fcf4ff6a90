// Exact top-k over a vocabulary that arrives in shards (the native scan:
// screened low-precision scores or fused GEMM + selection tiles), with the
// running merge across shards.
import { native, type NativeTopK, type ScanKernel } from '../native.js';
import { withCancel, type ProgressOptions } from '../abort.js';

export type { ScanKernel };
export type Metric = 'ip' | 'cosine';

export interface TopKOptions extends ProgressOptions {
  k: number;
  metric?: Metric;
  /** FALCON's chunk-local scoring: softmax(T·score) within each chunk (shard). */
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

export interface SearchResult {
  /** nq × k, each row best first; -1 where the vocabulary had fewer than k rows. */
  ids: BigInt64Array;
  scores: Float32Array;
  nq: number;
  k: number;
}

export class ExactTopK {
  private readonly acc: NativeTopK;
  private rowsSeen = 0;

  constructor(queries: Float32Array, readonly nq: number, readonly dim: number, readonly options: TopKOptions) {
    this.acc = new (native().TopK)(queries, nq, dim, options.k, options.metric ?? 'ip', options.softmaxTemperature ?? 0, options.device ?? 'cpu', options.kernel ?? 'auto');
  }

  /** Adds rows whose ids continue from the rows added so far (or from idOffset). */
  async add(vectors: Float32Array | Uint16Array, rows: number, opts: ProgressOptions & { idOffset?: number; invNorms?: Float32Array } = {}): Promise<void> {
    const offset = opts.idOffset ?? this.rowsSeen;
    const onProgress = opts.onProgress ?? this.options.onProgress;
    await withCancel(opts.signal ?? this.options.signal, (flag) =>
      this.acc.add(vectors, rows, offset, opts.invNorms ?? null, onProgress ? (d, t) => onProgress(d, t) : null, flag));
    this.rowsSeen = Math.max(this.rowsSeen, offset + rows);
  }

  /** Closes a softmax chunk; the next add() starts a new one. */
  endChunk(): void {
    this.acc.endChunk();
  }

  result(): SearchResult {
    if (this.rowsSeen < this.options.k)
      throw new RangeError(`k: expected at most ${this.rowsSeen} (the vocabulary's rows), got ${this.options.k}`);
    const r = this.acc.result();
    return { ids: r.ids, scores: r.scores, nq: this.nq, k: this.options.k };
  }
}

/** One-shot exact search of queries against one in-memory matrix. */
export async function exactSearch(queries: Float32Array, vectors: Float32Array | Uint16Array, dim: number, options: TopKOptions): Promise<SearchResult> {
  const nq = queries.length / dim, rows = vectors.length / dim;
  const s = new ExactTopK(queries, nq, dim, options);
  await s.add(vectors, rows);
  return s.result();
}
