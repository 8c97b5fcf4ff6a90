// How every engine call is made: the AbortSignal wired to the kernels' cancel
// flag, progress passed through, and every failure (native or argument) a
// ConceptLensError with its code.
import { requireProgress, withCancel, type ProgressOptions } from '../abort.js';
import { toConceptLensError } from '../errors.js';
import type { CancelFlag, NativeProgress } from './addon.js';

/** Runs one asynchronous native call with the signal and progress of `opts`. */
export function nativeCall<T>(opts: ProgressOptions, run: (onProgress: NativeProgress, cancel: CancelFlag) => Promise<T>): Promise<T> {
  return withCancel(opts.signal, (flag) => {
    requireProgress(opts.onProgress);
    return run(opts.onProgress ?? null, flag);
  });
}

/** Runs one synchronous native call, its errors as ConceptLensError. */
export function nativeSync<T>(run: () => T): T {
  try {
    return run();
  } catch (e) {
    throw toConceptLensError(e);
  }
}
