// A synthetic caption vocabulary in the LAION shard layout, written
// streaming (memory stays at one block, whatever the row count):
// text_emb_{i}.npy (fp16, unit rows) + metadata_{i}.parquet (`caption`).
import { closeSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { throttled, throwIfAborted, type ProgressOptions } from '../../abort.js';
import { commitTemp, tempPath, writeFileAtomic } from '../../io/atomic.js';
import { floatsToHalves } from '../../engine/fp16.js';
import { fileError, requireInteger } from '../../errors.js';
import { requireSeed } from '../../random.js';
import { npyHeader } from '../../io/npy.js';


/**
 * Options of {@link writeSyntheticLaion}: random unit fp16 embeddings (text_emb_{i}.npy) with deterministic captions,
 * in LAION's shard layout, for tests and benchmarks. Progress counts rows written.
 */
export interface SyntheticOptions extends ProgressOptions {
  /** Rows in all, at least 1. */
  rows: number;
  /** Embedding width (default 512). */
  dim?: number;
  /** Rows per shard (default 1,000,000; LAION's embedding shards hold about a million). */
  shardRows?: number;
  /** Seeds the embeddings (default 1). */
  seed?: number;
  /**
   * Captions as metadata_{i}.parquet (the LAION layout, default; needs the hyparquet-writer dev dependency) or
   * captions_{i}.txt.
   */
  captions?: 'parquet' | 'txt';
}

const ADJ = ['red', 'small', 'wooden', 'fluffy', 'old', 'shiny', 'striped', 'green', 'wet', 'tall'];
const NOUN = ['dog', 'cat', 'car', 'boat', 'house', 'tree', 'bird', 'chair', 'guitar', 'mountain', 'flower', 'bicycle'];
const PLACE = ['on the beach', 'in a garden', 'at night', 'in the snow', 'on a table', 'near a river', 'in the city'];

/** Deterministic caption of global row `id`. */
export const syntheticCaption = (id: number) =>
  `a ${ADJ[id % ADJ.length]} ${NOUN[Math.floor(id / ADJ.length) % NOUN.length]} ${PLACE[Math.floor(id / 120) % PLACE.length]} #${id}`;

function fillUnitRows(out: Float32Array, dim: number, state: { s: number }): void {
  for (let r = 0; r < out.length / dim; r++) {
    let nn = 0;
    for (let c = 0; c < dim; c++) {
      let s = state.s;
      s ^= s << 13, s ^= s >>> 17, s ^= s << 5;
      state.s = s;
      const v = (s >>> 0) / 2147483648 - 1;
      out[r * dim + c] = v;
      nn += v * v;
    }
    const inv = 1 / Math.sqrt(nn);
    for (let c = 0; c < dim; c++) out[r * dim + c] *= inv;
  }
}

/** n unit-norm rows of uniform(-1, 1) directions (deterministic for a seed). */
export function unitRows(n: number, dim: number, seed = 1): Float32Array {
  const out = new Float32Array(n * dim);
  fillUnitRows(out, dim, { s: seed >>> 0 || 1 });
  return out;
}

async function writeCaptions(dir: string, shard: number, first: number, rows: number, kind: 'parquet' | 'txt'): Promise<void> {
  const caps = Array.from({ length: rows }, (_, j) => syntheticCaption(first + j));
  if (kind === 'txt') return writeFileAtomic(join(dir, `captions_${shard}.txt`), caps.join('\n') + '\n');
  // hyparquet-writer is a development dependency: synthetic shards are for tests and benchmarks.
  const { parquetWriteBuffer } = await import('hyparquet-writer');
  writeFileAtomic(join(dir, `metadata_${shard}.parquet`), new Uint8Array(parquetWriteBuffer({ columnData: [{ name: 'caption', data: caps, type: 'STRING' }] })));
}

/** Writes the shards into `dir` (which must exist); returns the shard count. */
export async function writeSyntheticLaion(dir: string, o: SyntheticOptions): Promise<number> {
  const dim = o.dim ?? 512, shardRows = o.shardRows ?? 1_000_000, block = 16384;
  for (const [name, value] of [['rows', o.rows], ['dim', dim], ['shardRows', shardRows]] as const) requireInteger(value, name, 1);
  if (!statSync(dir, { throwIfNoEntry: false })?.isDirectory()) throw fileError(dir, 'no such folder; expected an existing folder for the shards');
  const state = { s: requireSeed(o.seed ?? 1) || 1 };
  const buf = new Float32Array(block * dim);
  let shard = 0;
  const progress = throttled(o.onProgress);
  for (let first = 0; first < o.rows; first += shardRows, shard++) {
    const rows = Math.min(shardRows, o.rows - first), path = join(dir, `text_emb_${shard}.npy`), tmp = tempPath(path);
    const fd = openSync(tmp, 'w');
    let written = false;
    try {
      writeSync(fd, npyHeader([rows, dim], 'float16'));
      for (let r0 = 0; r0 < rows; r0 += block) {
        throwIfAborted(o.signal);
        const n = Math.min(block, rows - r0), part = buf.subarray(0, n * dim);
        fillUnitRows(part, dim, state);
        const halves = floatsToHalves(part);
        writeSync(fd, new Uint8Array(halves.buffer, halves.byteOffset, halves.byteLength));
        progress(first + r0 + n, o.rows);
      }
      written = true;
    } finally {
      closeSync(fd);
      if (!written) rmSync(tmp, { force: true });
    }
    commitTemp(tmp, path);
    await writeCaptions(dir, shard, first, rows, o.captions ?? 'parquet');
  }
  return shard;
}
