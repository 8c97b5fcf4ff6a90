// What every long call takes (an AbortSignal, a progress callback), and the
// AbortSignal -> flag bridge: the flag lives in a SharedArrayBuffer, so
// setting it from JS is visible at once to the native kernels and to worker
// threads (ONNX, HNSW) that poll it.
import { abortError, argError, toConceptLensError } from './errors.js';

/** Options every long call takes: an AbortSignal and a progress callback. */
export interface ProgressOptions {
  /** Aborting rejects the call with a ConceptLensError of code ERR_ABORTED (name 'AbortError'). */
  signal?: AbortSignal;
  /** Called with (done, total) as the work advances, at most about ten times a second. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * onProgress as every long call promises it: at most one call per 100 ms, and always the last (done = total). For
 * JS-side loops; the engine throttles its own.
 */
export function throttled(onProgress?: ProgressOptions['onProgress']): (done: number, total: number) => void {
  requireProgress(onProgress);
  if (!onProgress) return () => {};
  let last = -Infinity;
  return (done, total) => {
    const now = performance.now();
    if (done < total && now - last < 100) return;
    last = now;
    onProgress(done, total);
  };
}

/** A flag set to 1 when the signal aborts (null without a signal); dispose() detaches the listener. */
export function cancelFlag(signal?: AbortSignal): { flag: Int32Array | null; dispose: () => void } {
  if (!signal) return { flag: null, dispose: () => {} };
  requireSignal(signal);
  if (signal.aborted) throw abortError();
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const onAbort = () => Atomics.store(flag, 0, 1);
  signal.addEventListener('abort', onAbort, { once: true });
  return { flag, dispose: () => signal.removeEventListener('abort', onAbort) };
}

/** Throws ERR_ABORTED when the signal has aborted (between steps of JS-side loops). */
export function throwIfAborted(signal?: AbortSignal): void {
  if (signal !== undefined) requireSignal(signal);
  if (signal?.aborted) throw abortError();
}

/** An AbortSignal, or ERR_ARG: anything else would never abort the call, or fail inside it. */
function requireSignal(signal: unknown): void {
  if (!(signal instanceof AbortSignal)) throw argError('signal', 'an AbortSignal', signal);
}

/** A function (or none), or ERR_ARG: anything else would never be called, or fail inside the call. */
export function requireProgress(onProgress: unknown): void {
  if (onProgress !== undefined && onProgress !== null && typeof onProgress !== 'function') throw argError('onProgress', 'a function', onProgress);
}

/**
 * Runs one call with the signal wired to a cancel flag; its failure is a ConceptLensError. A signal that aborts
 * before the call settles rejects it (ERR_ABORTED), even where the work had finished.
 */
export async function withCancel<T>(signal: AbortSignal | undefined, run: (flag: Int32Array | null) => Promise<T>): Promise<T> {
  const c = cancelFlag(signal);
  try {
    const r = await run(c.flag);
    // The call may have passed its last check of the flag before the abort:
    // an abort before the call settles still rejects it, as it would a moment earlier.
    throwIfAborted(signal);
    return r;
  } catch (e) {
    throw toConceptLensError(e);
  } finally {
    c.dispose();
  }
}
