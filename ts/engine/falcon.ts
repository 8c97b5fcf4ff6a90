// falcon_binding.cpp: FALCON's firing threshold/sets and GradCAM kernels.
import type { ProgressOptions } from '../abort.js';
import { engine, type NativeCamLayer, type NativeFiring, type FloatRows } from './addon.js';
import { nativeCall } from './call.js';

export type { NativeCamLayer, NativeFiring };

/** τ = mean + sigmas·std of the row-normalised representations, and each image's features at or above τ. */
export function falconFiring(r: FloatRows, rows: number, cols: number, sigmas: number, opts: ProgressOptions = {}): Promise<NativeFiring> {
  return nativeCall(opts, (onProgress, cancel) => engine().falconFiring(r, rows, cols, sigmas, onProgress, cancel));
}

/** GradCAM maps (n × outHeight × outWidth) and each image's largest box above the threshold. */
export function falconCams(layers: NativeCamLayer[], n: number, group: number[], outHeight: number, outWidth: number,
  threshold: number, opts: ProgressOptions = {}): Promise<{ cams: Float32Array; boxes: Int32Array }> {
  return nativeCall(opts, (onProgress, cancel) =>
    engine().falconCams(layers, n, Int32Array.from(group), outHeight, outWidth, threshold, onProgress, cancel));
}
