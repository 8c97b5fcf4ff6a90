// Typed access to the FALCON native kernels (native/binding/falcon_binding.cpp).
import { native } from '../../native.js';
import { withCancel, type ProgressOptions } from '../../abort.js';

type OnProgress = ((done: number, total: number) => void) | null;

export interface NativeFiring {
  mean: number;
  std: number;
  tau: number;
  invNorms: Float32Array;
  offsets: Float64Array;
  features: Int32Array;
}

export interface NativeCamLayer {
  acts: Float32Array;
  grads: Float32Array | null;
  channels: number;
  height: number;
  width: number;
}

interface FalconNative {
  falconFiring(r: Float32Array | Uint16Array, rows: number, cols: number, sigmas: number, onProgress: OnProgress,
    cancel: Int32Array | null): Promise<NativeFiring>;
  falconCams(layers: NativeCamLayer[], n: number, group: Int32Array, outHeight: number, outWidth: number,
    threshold: number, onProgress: OnProgress, cancel: Int32Array | null): Promise<{ cams: Float32Array; boxes: Int32Array }>;
}

const falconNative = () => native() as unknown as FalconNative;

export function nativeFiring(r: Float32Array | Uint16Array, rows: number, cols: number, sigmas: number,
  opts: ProgressOptions = {}): Promise<NativeFiring> {
  return withCancel(opts.signal, (flag) => falconNative().falconFiring(r, rows, cols, sigmas, opts.onProgress ?? null, flag));
}

export function nativeCams(layers: NativeCamLayer[], n: number, group: number[], outHeight: number, outWidth: number,
  threshold: number, opts: ProgressOptions = {}): Promise<{ cams: Float32Array; boxes: Int32Array }> {
  return withCancel(opts.signal, (flag) => falconNative().falconCams(layers, n, Int32Array.from(group), outHeight, outWidth,
    threshold, opts.onProgress ?? null, flag));
}
