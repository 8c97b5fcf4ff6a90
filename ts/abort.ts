// AbortSignal -> a flag the native kernels poll. The flag lives in a
// SharedArrayBuffer so setting it from JS is visible to pool threads at once.
export interface ProgressOptions {
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

export function abortError(): Error {
  const e = new Error('The operation was aborted');
  e.name = 'AbortError';
  return e;
}

export function cancelFlag(signal?: AbortSignal): { flag: Int32Array | null; dispose: () => void } {
  if (!signal) return { flag: null, dispose: () => {} };
  if (signal.aborted) throw abortError();
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const onAbort = () => Atomics.store(flag, 0, 1);
  signal.addEventListener('abort', onAbort, { once: true });
  return { flag, dispose: () => signal.removeEventListener('abort', onAbort) };
}

/** Runs one native call with the signal wired to its cancel flag. */
export async function withCancel<T>(signal: AbortSignal | undefined, run: (flag: Int32Array | null) => Promise<T>): Promise<T> {
  const c = cancelFlag(signal);
  try {
    return await run(c.flag);
  } finally {
    c.dispose();
  }
}
