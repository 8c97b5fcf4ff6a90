// glm_binding.cpp: the multi-target elastic-net solvers.
import type { ProgressOptions } from '../abort.js';
import { engine, type NativeGlmFit, type NativeGlmOptions } from './addon.js';
import { nativeCall, nativeSync } from './call.js';

/** Fits every column of Y (n×K) on X (n×p); see methods/le/glm.ts for the objective. */
export function glmFit(X: Float32Array, n: number, p: number, Y: Float32Array, K: number, options: NativeGlmOptions,
  opts: ProgressOptions = {}): Promise<NativeGlmFit> {
  return nativeCall(opts, (onProgress, cancel) => engine().glmFit(X, n, p, Y, K, options, onProgress, cancel));
}

/** The exact float64 objective per target of weights W (K×p) and bias b. */
export function glmObjective(X: Float32Array, n: number, p: number, Y: Float32Array, K: number, W: Float32Array, b: Float32Array,
  en: { lambda?: number; alpha?: number }): Float64Array {
  return nativeSync(() => engine().glmObjective(X, n, p, Y, K, W, b, en));
}
