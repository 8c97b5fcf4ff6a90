// The approximate-index contract shared by the facade (ann.ts) and each
// library's backend (FAISS in the engine, hnswlib in hnsw.ts).
import type { ProgressOptions } from '../abort.js';

/** Approximate index type: hnswlib's HNSW, or FAISS's flat (exact), IVF-flat, IVF-PQ or HNSW index. */
export type IndexKind = 'hnsw' | 'faiss-flat' | 'faiss-ivf' | 'faiss-ivfpq' | 'faiss-hnsw';
/** Every {@link IndexKind}. */
export const INDEX_KINDS: readonly IndexKind[] = ['hnsw', 'faiss-flat', 'faiss-ivf', 'faiss-ivfpq', 'faiss-hnsw'];
/** Similarity an index ranks by: inner product, or cosine. */
export type AnnMetric = 'ip' | 'cosine';

/** What the sidecar records: enough to reopen and to search with the same defaults. */
export interface AnnMeta {
  kind: IndexKind;
  dim: number;
  metric: AnnMetric;
  params: { nlist?: number; m?: number; M?: number; efConstruction?: number; seed?: number };
}

export interface SearchParams {
  nprobe: number;
  efSearch: number;
}

/** One library's index; the AnnIndex facade validates arguments before calling it. */
export interface AnnBackend {
  readonly size: number;
  train?(vectors: Float32Array, rows: number, opts: ProgressOptions): Promise<void>;
  add(vectors: Float32Array, rows: number, opts: ProgressOptions): Promise<void>;
  search(queries: Float32Array, nq: number, k: number, params: SearchParams, opts: ProgressOptions): Promise<{ ids: BigInt64Array; scores: Float32Array }>;
  save(path: string): Promise<void>;
}
