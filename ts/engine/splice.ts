// splice_binding.cpp: the batched SpLiCE solvers.
import type { ProgressOptions } from '../abort.js';
import { engine, type FloatRows, type NativeSplicePoint, type NativeSpliceOptions, type NativeSpliceResult } from './addon.js';
import { nativeCall, nativeSync } from './call.js';

export type { NativeSpliceOptions, NativeSplicePoint, NativeSpliceResult };

/** Throws as a solve would on these options (λ, tolerance, ρ, iterations, solver), without solving. */
export function checkSpliceOptions(options: NativeSpliceOptions): void {
  nativeSync(() => engine().checkSpliceOptions(options));
}

/** min_{w≥0} ‖Cᵀw − z‖² + λ‖w‖₁ for each of the n sample rows. */
export function spliceDecompose(dictionary: FloatRows, c: number, d: number, samples: FloatRows, n: number,
  options: NativeSpliceOptions, warm: Float32Array | null, opts: ProgressOptions = {}): Promise<NativeSpliceResult> {
  return nativeCall(opts, (onProgress, cancel) => engine().spliceDecompose(dictionary, c, d, samples, n, options, warm, onProgress, cancel));
}

/** Warm-started bisection on log λ towards a target mean l0. */
export function splicePath(dictionary: FloatRows, c: number, d: number, samples: FloatRows, n: number,
  options: NativeSpliceOptions & { targetL0: number; l0Tol?: number; maxSteps?: number }, opts: ProgressOptions = {}) {
  return nativeCall(opts, (onProgress, cancel) => engine().splicePath(dictionary, c, d, samples, n, options, onProgress, cancel));
}
