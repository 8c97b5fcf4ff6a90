// Approximate nearest-neighbour indexes behind one interface: FAISS (Flat,
// IVF-Flat, IVF-PQ, HNSW) through the native engine, and hnswlib-node's HNSW
// in a worker thread. Every kind returns similarities, best first: the inner
// product, or the cosine when the metric is 'cosine' (rows and queries are
// normalised). save() writes the index and a JSON sidecar `<path>.json`
// (kind, dim, metric, build parameters) that loadIndex() reads back.
import { existsSync } from 'node:fs';
import type { ProgressOptions } from '../abort.js';
import { FaissHandle } from '../engine/faiss.js';
import { argError, ConceptLensError, fileError, requireOptions } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { requireArray, requireFiniteRows, rowsOf } from '../matrix.js';
import { INDEX_KINDS, type AnnBackend, type AnnMeta, type AnnMetric, type IndexKind, type SearchParams } from './ann-types.js';
import { HnswBackend } from './hnsw.js';
import { readJson } from '../io/text.js';

export { INDEX_KINDS } from './ann-types.js';
export type { AnnMeta, AnnMetric, IndexKind } from './ann-types.js';

/** Options of {@link buildIndex}; progress counts rows added. */
export interface BuildOptions extends ProgressOptions {
  /** Similarity the index ranks by. */
  metric: AnnMetric;
  /** Inverted lists (faiss-ivf, faiss-ivfpq). Default 4·√n, capped at n/39 (FAISS's minimum points per centroid). */
  nlist?: number;
  /** PQ sub-quantizers of 8 bits each (faiss-ivfpq), a divisor of dim. Default the largest divisor ≤ dim/4. */
  m?: number;
  /** HNSW graph degree (hnsw, faiss-hnsw). Default 16. */
  M?: number;
  /** HNSW construction beam (hnsw, faiss-hnsw). Default 200. */
  efConstruction?: number;
  /** Seeds k-means, the training sample and HNSW levels. Default 1234. */
  seed?: number;
}

/** Options of {@link AnnIndex.search} (exported as `AnnSearchOptions`). */
export interface SearchOptions extends ProgressOptions {
  /** IVF lists probed per query (faiss-ivf, faiss-ivfpq). Default ⌈√nlist⌉. */
  nprobe?: number;
  /** HNSW search beam (hnsw, faiss-hnsw), raised to k when smaller. Default 64. */
  efSearch?: number;
  /**
   * An IVF probe can find fewer than k rows for a query. By default that is
   * an error (ERR_ARG) saying how many were found; with `allowMissing` the
   * missing places hold id -1 and score -Infinity.
   */
  allowMissing?: boolean;
}

/** An approximate nearest-neighbour index over fp32 rows. */
export interface AnnIndex {
  /** Index type. */
  readonly kind: IndexKind;
  /** Row width. */
  readonly dim: number;
  /** Similarity it ranks by. */
  readonly metric: AnnMetric;
  /** Rows indexed. */
  readonly size: number;
  /** Appends rows; their ids continue from size. On abort, rows added before it stay. */
  add(vectors: Float32Array, opts?: ProgressOptions): Promise<void>;
  /** nq × k similarities (inner product, or cosine), each row best first. */
  search(queries: Float32Array, k: number, opts?: SearchOptions): Promise<{ ids: BigInt64Array; scores: Float32Array }>;
  /** Writes the index and its sidecar `<path>.json` (kind, dim, metric, parameters). */
  save(path: string): Promise<void>;
}

const SIDECAR_FORMAT = 'conceptlens-ann/1';
const DEFAULT_EF_SEARCH = 64;
const PQ_MIN_TRAIN = 256;  // one training row per centroid of an 8-bit codebook
const FAISS_POINTS_PER_CENTROID = 39;  // FAISS's advised minimum of training rows per k-means centroid
const PQ_ADVISED_TRAIN = FAISS_POINTS_PER_CENTROID * PQ_MIN_TRAIN;

function factoryString(meta: AnnMeta): string {
  const p = meta.params;
  switch (meta.kind) {
    case 'faiss-flat': return 'Flat';
    case 'faiss-ivf': return `IVF${p.nlist},Flat`;
    case 'faiss-ivfpq': return `IVF${p.nlist},PQ${p.m}`;
    case 'faiss-hnsw': return `HNSW${p.M}`;
    case 'hnsw': throw argError('kind', 'a FAISS kind', 'hnsw');
  }
}

class FaissBackend implements AnnBackend {
  constructor(private readonly index: FaissHandle) {}

  static create(meta: AnnMeta): FaissBackend {
    return new FaissBackend(FaissHandle.create(meta.dim, factoryString(meta), 'ip', meta.metric === 'cosine',
      meta.params.seed ?? 1234, meta.params.efConstruction ?? 0));
  }

  static async load(meta: AnnMeta, path: string, opts: ProgressOptions): Promise<FaissBackend> {
    const index = await FaissHandle.load(path, meta.metric === 'cosine', opts);
    if (index.dim !== meta.dim) throw fileError(path, `index has dim ${index.dim}, its sidecar says ${meta.dim}`);
    return new FaissBackend(index);
  }

  get size(): number {
    return this.index.size;
  }

  train(vectors: Float32Array, rows: number, opts: ProgressOptions): Promise<void> {
    return this.index.train(vectors, rows, opts);
  }

  add(vectors: Float32Array, rows: number, opts: ProgressOptions): Promise<void> {
    return this.index.add(vectors, rows, opts);
  }

  search(queries: Float32Array, nq: number, k: number, params: SearchParams, opts: ProgressOptions) {
    return this.index.search(queries, nq, k, params.nprobe, params.efSearch, opts);
  }

  save(path: string): Promise<void> {
    return this.index.save(path);
  }
}

/** Rows of a Float32Array of width dim; errors name the argument. */
/** The rows of fp32 vectors or queries of width dim, all finite: an index would rank a NaN row anywhere. */
function f32Rows(v: Float32Array, dim: number, name: string): number {
  const rows = rowsOf(requireArray(v, Float32Array, name), dim, name);
  requireFiniteRows(v, dim, name);
  return rows;
}

function positiveInt(value: number, name: string, max = Infinity, why = ''): number {
  if (!Number.isInteger(value) || value < 1 || value > max) throw argError(name, `an integer in 1..${max}${why}`, value);
  return value;
}

/**
 * Default IVF list count for `rows` rows: 4·√rows rounded, capped at rows/39 (FAISS's minimum points per centroid), at
 * least 1.
 */
export function defaultNlist(rows: number): number {
  return Math.max(1, Math.min(Math.round(4 * Math.sqrt(rows)), Math.floor(rows / FAISS_POINTS_PER_CENTROID)));
}

/** Default PQ sub-quantizer count for width `dim`: its largest divisor ≤ dim/4 (1 when there is none above 1). */
export function defaultPqM(dim: number): number {
  for (let m = Math.max(1, Math.floor(dim / 4)); m > 1; m--) if (dim % m === 0) return m;
  return 1;
}

function resolveMeta(kind: IndexKind, dim: number, rows: number, o: BuildOptions): AnnMeta {
  if (!INDEX_KINDS.includes(kind)) throw argError('kind', `one of ${INDEX_KINDS.join(', ')}`, kind);
  if (o.metric !== 'ip' && o.metric !== 'cosine') throw argError('metric', "'ip' or 'cosine'", o.metric);
  const params: AnnMeta['params'] = { seed: o.seed ?? 1234 };
  if (kind === 'faiss-ivf' || kind === 'faiss-ivfpq')
    params.nlist = positiveInt(o.nlist ?? defaultNlist(rows), 'nlist', rows, ' (at most the number of training vectors)');
  if (kind === 'faiss-ivfpq') {
    params.m = positiveInt(o.m ?? defaultPqM(dim), 'm', dim);
    if (dim % params.m !== 0) throw argError('m', `a divisor of dim (${dim})`, params.m);
    if (rows < PQ_MIN_TRAIN) throw argError('vectors', `at least ${PQ_MIN_TRAIN} rows to train 8-bit PQ codebooks (faiss-ivfpq)`, rows, 'ERR_SHAPE');
  }
  if (kind === 'hnsw' || kind === 'faiss-hnsw') {
    params.M = positiveInt(o.M ?? 16, 'M');
    params.efConstruction = positiveInt(o.efConstruction ?? 200, 'efConstruction');
  }
  return { kind, dim, metric: o.metric, params };
}

/** An approximate search that returned fewer than k neighbours for some query says so. */
function requireFound(ids: BigInt64Array, k: number, kind: IndexKind, p: SearchParams): void {
  const at = ids.indexOf(-1n);
  if (at < 0) return;
  const q = Math.floor(at / k), row = ids.subarray(q * k, (q + 1) * k);
  const found = row.filter((id) => id >= 0n).length;
  throw new ConceptLensError('ERR_ARG', `k: the ${kind} index found only ${found} of the k = ${k} neighbours of query ${q}` +
    (kind.includes('ivf') ? ` with nprobe ${p.nprobe}; raise nprobe or lower k` : '; lower k') + ' (or pass allowMissing to accept -1 ids)' +
    ` (on the command line: ${kind.includes('ivf') ? '--nprobe, ' : ''}--k, --allow-missing)`);
}

class Ann implements AnnIndex {
  constructor(readonly meta: AnnMeta, private readonly backend: AnnBackend) {}

  get kind(): IndexKind {
    return this.meta.kind;
  }
  get dim(): number {
    return this.meta.dim;
  }
  get metric(): AnnMetric {
    return this.meta.metric;
  }
  get size(): number {
    return this.backend.size;
  }

  async add(vectors: Float32Array, opts: ProgressOptions = {}): Promise<void> {
    const rows = f32Rows(vectors, this.dim, 'vectors');
    if (rows > 0) await this.backend.add(vectors, rows, opts);
  }

  async search(queries: Float32Array, k: number, opts: SearchOptions = {}) {
    const nq = f32Rows(queries, this.dim, 'queries');
    if (this.size === 0) throw new ConceptLensError('ERR_ARG', `search: the ${this.kind} index is empty; add() vectors first`);
    positiveInt(k, 'k', this.size, ' (the index size)');
    if (nq === 0) return { ids: new BigInt64Array(0), scores: new Float32Array(0) };
    const nlist = this.meta.params.nlist;
    const params = {
      nprobe: opts.nprobe === undefined ? (nlist ? Math.ceil(Math.sqrt(nlist)) : 0) : positiveInt(opts.nprobe, 'nprobe'),
      efSearch: opts.efSearch === undefined ? DEFAULT_EF_SEARCH : positiveInt(opts.efSearch, 'efSearch'),
    };
    const r = await this.backend.search(queries, nq, k, params, opts);
    if (!opts.allowMissing) requireFound(r.ids, k, this.kind, params);
    return r;
  }

  async save(path: string): Promise<void> {
    await this.backend.save(path);
    writeFileAtomic(`${path}.json`, JSON.stringify({ format: SIDECAR_FORMAT, ...this.meta }, null, 2) + '\n');
  }
}

/** Builds (trains where needed) an index over rows of width dim; their ids are 0..n-1. */
export async function buildIndex(kind: IndexKind, vectors: Float32Array, dim: number, opts: BuildOptions): Promise<AnnIndex> {
  requireOptions(opts, "metric ('ip' or 'cosine')");
  const rows = f32Rows(vectors, positiveInt(dim, 'dim'), 'vectors');
  const meta = resolveMeta(kind, dim, rows, opts);
  if (kind === 'faiss-ivfpq' && rows < PQ_ADVISED_TRAIN)
    process.emitWarning(`faiss-ivfpq: ${rows} training vectors for 256-centroid PQ codebooks, FAISS advises at least ${PQ_ADVISED_TRAIN}: the codes will be coarse (recall drops); an exact search or faiss-ivf suits a vocabulary this small`,
      { code: 'CONCEPTLENS_PQ_FEW_TRAINING_ROWS' });
  const backend: AnnBackend = kind === 'hnsw' ? await HnswBackend.create(meta, rows) : FaissBackend.create(meta);
  if (backend.train) await backend.train(vectors, rows, { signal: opts.signal });
  const index = new Ann(meta, backend);
  await index.add(vectors, opts);
  return index;
}

function readMeta(path: string): AnnMeta {
  const side = `${path}.json`;
  if (!existsSync(side)) throw fileError(side, 'index sidecar not found (save() writes it beside the index)');
  let m: AnnMeta & { format?: string };
  try {
    m = readJson(side);
  } catch (e) {
    throw fileError(side, `not valid JSON (${(e as Error).message})`);
  }
  if (m.format !== SIDECAR_FORMAT) throw fileError(side, `expected format '${SIDECAR_FORMAT}', got '${m.format}'`);
  if (!INDEX_KINDS.includes(m.kind)) throw fileError(side, `unknown kind '${m.kind}'`);
  if (!Number.isInteger(m.dim) || m.dim < 1) throw fileError(side, `dim must be a positive integer, got ${m.dim}`);
  if (m.metric !== 'ip' && m.metric !== 'cosine') throw fileError(side, `metric must be 'ip' or 'cosine', got '${m.metric}'`);
  return { kind: m.kind, dim: m.dim, metric: m.metric, params: m.params ?? {} };
}

/** Opens an index written by AnnIndex.save(path). */
export async function loadIndex(path: string, opts: ProgressOptions = {}): Promise<AnnIndex> {
  const meta = readMeta(path);
  if (!existsSync(path)) throw fileError(path, 'index file not found (its sidecar exists)');
  const backend = meta.kind === 'hnsw' ? await HnswBackend.load(meta, path) : await FaissBackend.load(meta, path, opts);
  return new Ann(meta, backend);
}

/** Fraction of the exact neighbours (rows of k ids; -1 = none) that the approximate rows contain. */
export function recallAtK(approxIds: BigInt64Array, exactIds: BigInt64Array, nq: number, k: number): number {
  if (approxIds.length !== nq * k || exactIds.length !== nq * k)
    throw new ConceptLensError('ERR_SHAPE', `recallAtK: expected ${nq}×${k} = ${nq * k} ids in each array, got ${approxIds.length} (approx) and ${exactIds.length} (exact)`);
  let hits = 0, total = 0;
  for (let q = 0; q < nq; q++) {
    const truth = new Set<bigint>();
    for (let j = 0; j < k; j++) if (exactIds[q * k + j] >= 0n) truth.add(exactIds[q * k + j]);
    total += truth.size;
    for (let j = 0; j < k; j++) if (truth.delete(approxIds[q * k + j])) hits++;
  }
  return total === 0 ? 1 : hits / total;
}
