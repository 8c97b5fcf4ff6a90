// blas_binding.cpp: dense products on every core, off the JS thread.
import type { ProgressOptions } from '../abort.js';
import { engine } from './addon.js';
import { nativeCall } from './call.js';

/** a·bᵀ for row-major a (m×k) and b (n×k): an m×n Float32Array. */
export function matmulNT(a: Float32Array, m: number, k: number, b: Float32Array, n: number, opts: ProgressOptions = {}): Promise<Float32Array> {
  return nativeCall(opts, (onProgress, cancel) => engine().matmulNT(a, m, k, b, n, onProgress, cancel));
}
