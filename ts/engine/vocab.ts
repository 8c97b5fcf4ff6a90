// vocab_binding.cpp: a vocabulary block's row work.
import type { ProgressOptions } from '../abort.js';
import { engine, type FloatRows } from './addon.js';
import { nativeCall, nativeSync } from './call.js';

/** Rows to fp32 in `out`: normalised, centred on `mean`, normalised again, as asked; row errors name rowBase + i. */
export function transformRows(src: FloatRows, rows: number, dim: number, out: Float32Array, normalize: boolean, center: boolean,
  mean: Float32Array | null, rowBase: number, opts: ProgressOptions = {}): Promise<void> {
  return nativeCall(opts, (_, cancel) => engine().transformRows(src, rows, dim, out, normalize, center, mean, rowBase, null, cancel));
}

/** Index of the first row holding NaN/Inf, or -1 (memory speed, synchronous). */
export function firstNonFiniteRow(src: FloatRows, dim: number): number {
  return nativeSync(() => engine().firstNonFiniteRow(src, src.length / dim, dim));
}
