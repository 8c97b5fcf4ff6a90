// The worker thread behind kind 'hnsw': hnswlib-node's calls are synchronous
// per vector, so every HNSW index of the process lives here (by handle) and
// requests run one at a time, off the main event loop.
import { parentPort } from 'node:worker_threads';
import { rmSync } from 'node:fs';
import hnswlib from 'hnswlib-node';
import type { HnswReply, HnswRequest } from './hnsw.js';
import { commitTemp, tempPath } from '../io/atomic.js';
type Hnsw = InstanceType<typeof hnswlib.HierarchicalNSW>;

const port = parentPort!;
const indexes = new Map<number, Hnsw>();

function get(handle: number): Hnsw {
  const index = indexes.get(handle);
  if (!index) throw new Error(`hnsw: index ${handle} was freed or never created`);
  return index;
}

function aborted(cancel: Int32Array | null): void {
  if (cancel && Atomics.load(cancel, 0) !== 0) {
    const e = new Error('The operation was aborted');
    e.name = 'AbortError';
    throw e;
  }
}

/** Calls fn(i) for i in [0, n), checking the cancel flag and reporting progress every 64 items. */
function loop(id: number, n: number, cancel: Int32Array | null, fn: (i: number) => void): void {
  let last = 0;
  for (let i = 0; i < n; i++) {
    if ((i & 63) === 0) {
      aborted(cancel);
      const now = Date.now();
      if (now - last >= 100) {
        last = now;
        port.postMessage({ id, type: 'progress', done: i, total: n } satisfies HnswReply);
      }
    }
    fn(i);
  }
  port.postMessage({ id, type: 'progress', done: n, total: n } satisfies HnswReply);
}

function run(req: HnswRequest): { value?: unknown; transfer?: ArrayBuffer[] } {
  switch (req.op) {
    case 'create': {
      const index = new hnswlib.HierarchicalNSW(req.space, req.dim);
      index.initIndex({ maxElements: Math.max(1, req.maxElements), m: req.M, efConstruction: req.efConstruction, randomSeed: req.seed });
      indexes.set(req.handle, index);
      return {};
    }
    case 'load': {
      const index = new hnswlib.HierarchicalNSW(req.space, req.dim);
      index.readIndexSync(req.path);
      indexes.set(req.handle, index);
      return {};
    }
    case 'add': {
      const index = get(req.handle), d = index.getNumDimensions(), n = req.vectors.length / d;
      const start = index.getCurrentCount();
      if (start + n > index.getMaxElements()) index.resizeIndex(start + n);
      loop(req.id, n, req.cancel, (i) => index.addPoint(Array.from(req.vectors.subarray(i * d, (i + 1) * d)), start + i));
      return {};
    }
    case 'search': {
      const index = get(req.handle), d = index.getNumDimensions(), nq = req.queries.length / d, k = req.k;
      index.setEf(Math.max(req.efSearch, k));
      const ids = new BigInt64Array(nq * k).fill(-1n), scores = new Float32Array(nq * k).fill(-Infinity);
      loop(req.id, nq, req.cancel, (i) => {
        const r = index.searchKnn(Array.from(req.queries.subarray(i * d, (i + 1) * d)), k);
        // 'ip' and 'cosine' spaces return 1 - similarity, closest first.
        r.neighbors.forEach((label, j) => {
          ids[i * k + j] = BigInt(label);
          scores[i * k + j] = 1 - r.distances[j];
        });
      });
      return { value: { ids, scores }, transfer: [ids.buffer, scores.buffer] };
    }
    case 'save': {
      const tmp = tempPath(req.path);
      try {
        get(req.handle).writeIndexSync(tmp);
        commitTemp(tmp, req.path);
      } catch (e) {
        rmSync(tmp, { force: true });
        throw e;
      }
      return {};
    }
    case 'free':
      indexes.delete(req.handle);
      return {};
  }
}

port.on('message', (req: HnswRequest) => {
  const size = () => indexes.get(req.handle)?.getCurrentCount() ?? 0;
  try {
    const { value, transfer } = run(req);
    port.postMessage({ id: req.id, type: 'done', value, size: size() } satisfies HnswReply, transfer ?? []);
  } catch (e) {
    const err = e as Error;
    port.postMessage({ id: req.id, type: 'error', name: err.name, message: err.message, size: size() } satisfies HnswReply);
  }
});
