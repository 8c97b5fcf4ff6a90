// topk_binding.cpp: the running exact top-k accumulator.
import type { ProgressOptions } from '../abort.js';
import { engine, type Device, type FloatRows, type NativePreparedVocab, type NativeTopK, type PreparedArrays, type ScanKernel, type ScanResult } from './addon.js';
import { nativeCall, nativeSync } from './call.js';

export interface TopKScanOptions {
  k: number;
  metric: 'ip' | 'cosine';
  softmaxTemperature: number;
  device: Device;
  kernel: ScanKernel;
}

/** Rows [first, first + rows) of a row-major array stored in a file from byte dataOffset. */
export interface FileRowsRef {
  path: string;
  dataOffset: number;
  dtype: 'float32' | 'float16';
  cols: number;
  first: number;
  rows: number;
}

/** Queries scanned against rows that arrive in blocks; one add() at a time. */
export class TopKScan {
  private readonly scan: NativeTopK;

  constructor(queries: Float32Array, nq: number, d: number, o: TopKScanOptions) {
    this.scan = nativeSync(() => new (engine().TopK)(queries, nq, d, o.k, o.metric, o.softmaxTemperature, o.device, o.kernel));
  }

  /** Scans `rows` rows with ids idOffset + row; invNorms (cosine) saves computing the row norms. */
  add(vectors: FloatRows, rows: number, idOffset: number, invNorms: Float32Array | null, opts: ProgressOptions = {}): Promise<void> {
    return nativeCall(opts, (onProgress, cancel) => this.scan.add(vectors, rows, idOffset, invNorms, onProgress, cancel));
  }

  /** Scans rows [first, first + rows) of a row-major file (an .npy's data from dataOffset), read by the engine itself; ids idOffset + i. */
  addFile(f: FileRowsRef, idOffset: number, opts: ProgressOptions = {}): Promise<void> {
    return nativeCall(opts, (onProgress, cancel) =>
      this.scan.addFile(f.path, f.dataOffset, f.dtype, f.cols, f.first, f.rows, idOffset, onProgress, cancel));
  }

  /** Scans rows [first, first + rows) of a prepared vocabulary; `vectors` are its exact rows there (for re-scoring). */
  addPrepared(p: PreparedScreen, vectors: FloatRows, rows: number, first: number, idOffset: number, opts: ProgressOptions = {}): Promise<void> {
    return nativeCall(opts, (onProgress, cancel) => this.scan.addPrepared(p.native, vectors, rows, first, idOffset, onProgress, cancel));
  }

  /** Closes a softmax chunk (shard). */
  endChunk(): void {
    nativeSync(() => this.scan.endChunk());
  }

  /** nq × k scores and ids, each row best first (-Infinity / -1 where fewer than k rows were seen), and what computed them. */
  result(): Promise<ScanResult> {
    return nativeCall({}, () => this.scan.result());
  }
}

/** The engine's prepared screening copy of some rows (topk_prepared.h). */
export class PreparedScreen {
  private constructor(readonly native: NativePreparedVocab) {}

  /** Prepares rows × d rows on the compute pool; invNorms: the 1/‖row‖ searches would pass, kept as they are. */
  static async prepare(vectors: FloatRows, rows: number, d: number, invNorms: Float32Array | null, opts: ProgressOptions = {}): Promise<PreparedScreen> {
    return new PreparedScreen(await nativeCall(opts, (onProgress, cancel) => engine().PreparedVocab.prepare(vectors, rows, d, invNorms, onProgress, cancel)));
  }

  /** A copy from its arrays, checked (shapes, finite terms, frame scales). */
  static async fromArrays(a: PreparedArrays): Promise<PreparedScreen> {
    return new PreparedScreen(await nativeCall({}, () => engine().PreparedVocab.fromArrays(a)));
  }

  /** Its arrays (copies), for persisting. */
  arrays(): Promise<PreparedArrays> {
    return nativeCall({}, () => this.native.arrays());
  }
}
