// Streams a vocabulary's shards in bounded blocks (reading the next block
// while the caller works on the current one), drops de-duplicated rows, and
// applies the row transforms (L2 normalisation, mean-centring).
import { existsSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { throttled, throwIfAborted } from '../abort.js';
import type { FloatRows } from '../engine/addon.js';
import { transformRows } from '../engine/vocab.js';
import { ConceptLensError, fileError } from '../errors.js';
import { makeTyped, readNpyRows, type NpyHeader } from '../io/npy.js';
import { requireFiniteRows } from '../matrix.js';


/** One embedding file (or an in-memory array), or the part of it the vocabulary keeps. */
export interface Shard {
  /** The file's header; for an in-memory shard, its shape and dtype with a descriptive path. */
  header: NpyHeader;
  /** The rows themselves, when the shard lives in memory rather than in the file. */
  data?: FloatRows;
  /** Kept rows of the file, ascending; absent when all are kept. */
  keep?: Int32Array;
  /** Rows the vocabulary takes from this file. */
  rows: number;
  /** Softmax chunk (the source shard this file came from). */
  chunk: number;
}

/**
 * Transforms applied to a vocabulary's rows as they are read; with both on: normalise, subtract the mean, normalise
 * again (SpLiCE's convention).
 */
export interface Transforms {
  /** L2-normalise each row. */
  normalize: boolean;
  /** Subtract the mean row (of the normalised rows when `normalize` is on). */
  center: boolean;
}

export interface Block {
  shard: number;
  /** Vocabulary index of the block's first row. */
  start: number;
  rows: number;
  data: FloatRows;
  /** Row i of the block is row local[i] of the shard's file (or fileStart + i). */
  local?: Int32Array;
  fileStart: number;
}

// 64 MiB: small enough that first-touch page faults on the two block buffers stay
// cheap (measured: 256 MiB blocks made a 1M-row search 3x slower here), large
// enough that per-block heap merges stay negligible.
export const DEFAULT_BLOCK_BYTES = 64 * 2 ** 20;

const bytesPer = (h: NpyHeader) => (h.dtype === 'float16' ? 2 : 4);
export const dimOf = (h: NpyHeader) => h.shape[1];

/** Where a block's rows come from: enough to name a row's file and its own row number. */
export type BlockPlace = Pick<Block, 'shard' | 'start' | 'local' | 'fileStart'>;

/** Row i of a block as its file's own row number. */
const fileRow = (b: BlockPlace, i: number) => (b.local ? b.local[i] : b.fileStart + i);

/** "file: row r" for row i of a block: errors name the file and its own row number. */
export function rowName(shards: Shard[], b: BlockPlace, i: number): string {
  return `${shards[b.shard].header.path}: row ${fileRow(b, i)}`;
}

/**
 * A reusable fp32 buffer. Fresh large allocations are page-faulted on first
 * touch, which costs more than the work on a block, so blocks reuse memory.
 */
export class Scratch {
  private buf = new Float32Array(0);
  take(n: number): Float32Array {
    if (this.buf.length < n) this.buf = new Float32Array(n);
    return this.buf.subarray(0, n);
  }
}

/**
 * A native error about vocabulary row N (a block's rows are N = b.start + i), restated as its file and row; a
 * non-finite score as the column that holds NaN or Infinity, read back from the file (the scan only sees the score).
 */
export function restateRow(e: unknown, shards: Shard[], b: BlockPlace): unknown {
  if (!(e instanceof ConceptLensError) || e.code === 'ERR_ABORTED') return e;
  const m = /^vocabulary: row (\d+)(.*)$/s.exec(e.message);
  if (!m) return e;
  const i = Number(m[1]) - b.start, at = rowName(shards, b, i), h = shards[b.shard].header;
  if (e.code === 'ERR_NAN' && existsSync(h.path)) {
    try {
      requireFiniteRows(readNpyRows(h, fileRow(b, i), 1) as FloatRows, dimOf(h), h.path, () => at);
    } catch (x) {
      if (x instanceof ConceptLensError && x.code === 'ERR_NAN') return x;  // a failed read-back keeps the scan's own error
    }
  }
  return new ConceptLensError(e.code, `${at}${m[2]}`);
}

async function readFileRows(h: NpyHeader, r0: number, n: number, buf: ArrayBuffer): Promise<FloatRows> {
  const rowBytes = dimOf(h) * bytesPer(h), bytes = n * rowBytes;
  const fh = await open(h.path, 'r');
  try {
    for (let done = 0; done < bytes;) {
      const len = Math.min(bytes - done, 1 << 30);
      const { bytesRead } = await fh.read(new Uint8Array(buf, done, len), 0, len, h.dataOffset + r0 * rowBytes + done);
      if (bytesRead === 0) throw fileError(h.path, `truncated while reading rows ${r0}..${r0 + n}`);
      done += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return makeTyped(h.dtype, buf, 0, n * dimOf(h)) as FloatRows;
}

interface Planned {
  shard: number;
  start: number;
  fileStart: number;
  fileRows: number;
  local?: Int32Array;
}

function plan(shards: Shard[], blockBytes: number, only?: (s: Shard) => boolean): Planned[] {
  const out: Planned[] = [];
  let start = 0;
  shards.forEach((s, shard) => {
    // A skipped shard still advances `start`: block rows keep their vocabulary indices.
    if (only && !only(s)) return void (start += s.rows);
    const h = s.header, fileRowsTotal = h.shape[0];
    const step = Math.max(1, Math.floor(blockBytes / (dimOf(h) * bytesPer(h))));
    let k = 0;
    for (let r0 = 0; r0 < fileRowsTotal; r0 += step) {
      const r1 = Math.min(fileRowsTotal, r0 + step);
      let local: Int32Array | undefined;
      if (s.keep) {
        const k0 = k;
        while (k < s.keep.length && s.keep[k] < r1) k++;
        if (k === k0) continue;
        local = s.keep.subarray(k0, k);
      }
      out.push({ shard, start, fileStart: r0, fileRows: r1 - r0, local });
      start += local ? local.length : r1 - r0;
    }
  });
  return out;
}

/** Moves the kept rows (file rows `local`, relative to fileStart) to the front, in place: they only move up. */
function gather(v: FloatRows, dim: number, fileStart: number, local: Int32Array): FloatRows {
  for (let i = 0; i < local.length; i++) {
    const r = local[i] - fileStart;
    if (r !== i) v.copyWithin(i * dim, r * dim, (r + 1) * dim);
  }
  return v.subarray(0, local.length * dim);
}

const rawBytes = (shards: Shard[], p: Planned) => p.fileRows * dimOf(shards[p.shard].header) * bytesPer(shards[p.shard].header);

/** An in-memory shard's rows: a view, or a copy into buf when rows will be gathered in place. */
function memoryRows(data: FloatRows, h: NpyHeader, p: Planned, buf: ArrayBuffer): FloatRows {
  const view = data.subarray(p.fileStart * dimOf(h), (p.fileStart + p.fileRows) * dimOf(h));
  if (!p.local) return view;
  const copy = makeTyped(h.dtype, buf, 0, view.length) as FloatRows;
  copy.set(view);
  return copy;
}

async function load(shards: Shard[], p: Planned, buf: ArrayBuffer): Promise<Block> {
  const s = shards[p.shard], h = s.header;
  const raw = s.data ? memoryRows(s.data, h, p, buf) : await readFileRows(h, p.fileStart, p.fileRows, buf);
  const data = p.local && p.local.length !== p.fileRows ? gather(raw, dimOf(h), p.fileStart, p.local) : raw;
  return { shard: p.shard, start: p.start, rows: p.local ? p.local.length : p.fileRows, data, local: p.local, fileStart: p.fileStart };
}

/**
 * The vocabulary's rows in order (of the shards `only` accepts, when given), at most ~blockBytes per block; block
 * i+1 is read while i is in use. Two buffers alternate, so a block's data is valid only until the next block is
 * requested.
 */
export async function* readBlocks(shards: Shard[], blockBytes = DEFAULT_BLOCK_BYTES, signal?: AbortSignal,
  only?: (s: Shard) => boolean): AsyncGenerator<Block> {
  const items = plan(shards, blockBytes, only);
  const size = Math.max(0, ...items.map((p) => rawBytes(shards, p)));
  const buffers: ArrayBuffer[] = [];
  const fetch = (i: number) => {
    buffers[i % 2] ??= new ArrayBuffer(size);
    const p = load(shards, items[i], buffers[i % 2]);
    p.catch(() => {});  // observed when awaited; avoids an unhandled rejection if the caller stops early
    return p;
  };
  let next = items.length ? fetch(0) : undefined;
  for (let i = 0; i < items.length; i++) {
    throwIfAborted(signal);
    const cur = await next!;
    next = i + 1 < items.length ? fetch(i + 1) : undefined;
    yield cur;
  }
}

/**
 * The block as fp32 rows in x (b.rows × dim) with the transforms applied:
 * normalise, subtract the mean, and normalise again when both are on
 * (SpLiCE's convention). Runs on the engine's threads.
 */
export async function transformBlock(shards: Shard[], b: Block, dim: number, t: Transforms, mean: Float32Array | undefined,
  x: Float32Array, signal?: AbortSignal): Promise<Float32Array> {
  await transformRows(b.data, b.rows, dim, x, t.normalize, t.center, mean ?? null, b.start, { signal })
    .catch((e) => { throw restateRow(e, shards, b); });
  return x;
}

/** Mean row over the whole vocabulary (of the normalised rows when normalize is on), in float64. */
export async function meanRow(shards: Shard[], dim: number, normalize: boolean,
  opts: { blockBytes?: number; signal?: AbortSignal; onProgress?: (done: number, total: number) => void } = {}): Promise<Float64Array> {
  const total = shards.reduce((a, s) => a + s.rows, 0);
  const sum = new Float64Array(dim), scratch = new Scratch(), progress = throttled(opts.onProgress);
  for await (const b of readBlocks(shards, opts.blockBytes, opts.signal)) {
    const x = await transformBlock(shards, b, dim, { normalize, center: false }, undefined, scratch.take(b.data.length), opts.signal);
    for (let i = 0; i < b.rows; i++) for (let j = 0; j < dim; j++) sum[j] += x[i * dim + j];
    progress(b.start + b.rows, total);
  }
  if (total === 0) throw new ConceptLensError('ERR_SHAPE', 'center: the vocabulary has no rows to take a mean over');
  return sum.map((v) => v / total);
}
