// Kind 'hnsw': hnswlib-node indexes held by one shared worker thread
// (hnsw-worker.ts). The worker is unref'd while idle, so it never keeps the
// process alive; an index freed by the garbage collector is freed there too.
import { Worker } from 'node:worker_threads';
import { withCancel, type ProgressOptions } from '../abort.js';
import { ConceptLensError, toConceptLensError } from '../errors.js';
import type { AnnBackend, AnnMeta, SearchParams } from './ann-types.js';

export type HnswRequest = { id: number; handle: number } & (
  | { op: 'create'; space: 'ip' | 'cosine'; dim: number; maxElements: number; M: number; efConstruction: number; seed: number }
  | { op: 'load'; space: 'ip' | 'cosine'; dim: number; path: string }
  | { op: 'add'; vectors: Float32Array; cancel: Int32Array | null }
  | { op: 'search'; queries: Float32Array; k: number; efSearch: number; cancel: Int32Array | null }
  | { op: 'save'; path: string }
  | { op: 'free' }
);

export type HnswReply =
  | { id: number; type: 'progress'; done: number; total: number }
  | { id: number; type: 'done'; value?: unknown; size: number }
  | { id: number; type: 'error'; name: string; code?: string; message: string; size: number };

interface Pending {
  resolve: (r: { value?: unknown; size: number }) => void;
  reject: (e: Error) => void;
  onProgress?: (done: number, total: number) => void;
}

// A request without its routing fields (Omit applied to each variant of the union).
type Body = HnswRequest extends infer R ? (R extends unknown ? Omit<R, 'id' | 'handle'> : never) : never;

class HnswHost {
  private worker?: Worker;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  call(handle: number, body: Body, onProgress?: (done: number, total: number) => void): Promise<{ value?: unknown; size: number }> {
    const worker = this.start();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      worker.ref();
      worker.postMessage({ ...body, id, handle } as HnswRequest);
    });
  }

  /** Fire and forget (used by the finalizer). */
  free(handle: number): void {
    this.worker?.postMessage({ op: 'free', id: 0, handle } satisfies HnswRequest);
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(new URL('./hnsw-worker.js', import.meta.url));
    w.on('message', (r: HnswReply) => this.settle(r));
    w.on('error', (e) => this.fail(new ConceptLensError('ERR_ENGINE', `hnsw worker failed: ${e.message}`)));
    w.on('exit', (code) => this.fail(new ConceptLensError('ERR_ENGINE', `hnsw worker exited (code ${code}); its indexes are lost`)));
    w.unref();
    this.worker = w;
    return w;
  }

  private settle(r: HnswReply): void {
    const p = this.pending.get(r.id);
    if (!p) return;
    if (r.type === 'progress') return p.onProgress?.(r.done, r.total);
    this.pending.delete(r.id);
    if (this.pending.size === 0) this.worker?.unref();
    if (r.type === 'done') return p.resolve({ value: r.value, size: r.size });
    p.reject(Object.assign(toConceptLensError(Object.assign(new Error(r.message), { name: r.name, code: r.code })), { size: r.size }));
  }

  private fail(e: Error): void {
    this.worker = undefined;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }
}

const host = new HnswHost();
let nextHandle = 1;
const finalizer = new FinalizationRegistry<number>((handle) => host.free(handle));

export class HnswBackend implements AnnBackend {
  private count = 0;

  private constructor(private readonly handle: number) {}

  private static async open(body: Body): Promise<HnswBackend> {
    const b = new HnswBackend(nextHandle++);
    b.count = (await host.call(b.handle, body)).size;
    finalizer.register(b, b.handle);
    return b;
  }

  static create(meta: AnnMeta, maxElements: number): Promise<HnswBackend> {
    const { M = 16, efConstruction = 200, seed = 1234 } = meta.params;
    return HnswBackend.open({ op: 'create', space: meta.metric, dim: meta.dim, maxElements, M, efConstruction, seed });
  }

  static load(meta: AnnMeta, path: string): Promise<HnswBackend> {
    return HnswBackend.open({ op: 'load', space: meta.metric, dim: meta.dim, path });
  }

  get size(): number {
    return this.count;
  }

  async add(vectors: Float32Array, _rows: number, opts: ProgressOptions): Promise<void> {
    try {
      // The count is taken as the add returns, before a late abort rejects it.
      await withCancel(opts.signal, async (cancel) => {
        this.count = (await host.call(this.handle, { op: 'add', vectors, cancel }, opts.onProgress)).size;
      });
    } catch (e) {
      // Rows added before an abort or failure stay in the index.
      this.count = (e as { size?: number }).size ?? this.count;
      throw e;
    }
  }

  async search(queries: Float32Array, _nq: number, k: number, params: SearchParams, opts: ProgressOptions) {
    const r = await withCancel(opts.signal, (cancel) =>
      host.call(this.handle, { op: 'search', queries, k, efSearch: params.efSearch, cancel }, opts.onProgress));
    return r.value as { ids: BigInt64Array; scores: Float32Array };
  }

  async save(path: string): Promise<void> {
    await host.call(this.handle, { op: 'save', path });
  }
}
