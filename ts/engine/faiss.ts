// faiss_binding.cpp: a FAISS index (any index_factory string) in the addon.
import type { ProgressOptions } from '../abort.js';
import { engine, type NativeFaissIndex, type FloatRows } from './addon.js';
import { nativeCall, nativeSync } from './call.js';

export class FaissHandle {
  private constructor(private readonly index: NativeFaissIndex) {}

  /** A new index; normalize: rows and queries are L2-normalised (cosine). */
  static create(dim: number, factory: string, metric: 'ip' | 'l2', normalize: boolean, seed: number, efConstruction: number): FaissHandle {
    return new FaissHandle(nativeSync(() => new (engine().FaissIndex)(dim, factory, metric, normalize, seed, efConstruction)));
  }

  static async load(path: string, normalize: boolean, opts: ProgressOptions = {}): Promise<FaissHandle> {
    return new FaissHandle(await nativeCall(opts, (onProgress, cancel) => engine().FaissIndex.load(path, normalize, onProgress, cancel)));
  }

  get dim(): number {
    return this.index.dim;
  }
  get size(): number {
    return this.index.size;
  }

  train(vectors: FloatRows, rows: number, opts: ProgressOptions = {}): Promise<void> {
    return nativeCall(opts, (onProgress, cancel) => this.index.train(vectors, rows, onProgress, cancel));
  }

  add(vectors: FloatRows, rows: number, opts: ProgressOptions = {}): Promise<void> {
    return nativeCall(opts, (onProgress, cancel) => this.index.add(vectors, rows, onProgress, cancel));
  }

  search(queries: FloatRows, nq: number, k: number, nprobe: number, efSearch: number, opts: ProgressOptions = {}) {
    return nativeCall(opts, (onProgress, cancel) => this.index.search(queries, nq, k, nprobe, efSearch, onProgress, cancel));
  }

  save(path: string): Promise<void> {
    return nativeCall({}, () => this.index.save(path));
  }
}
