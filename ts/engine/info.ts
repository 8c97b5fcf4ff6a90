// addon.cpp: engine facts, the machine's arithmetic ceilings and the compute pool's size.
import type { ProgressOptions } from '../abort.js';
import { addonPath, engine, type EngineInfo, type MachinePeaks } from './addon.js';
import { nativeCall, nativeSync } from './call.js';

/** Which BLAS kernels, threads, screening formats and CUDA the loaded engine has. */
export function engineInfo(): EngineInfo {
  const info = engine().info();
  return { ...info, addon: addonPath };
}

/**
 * Measures the machine's arithmetic ceilings (about 0.15 s, on every compute thread): a kernel's multiply-add count at
 * these rates is the least time any implementation of that arithmetic can take here. The bench suites print it
 * beside each measured time.
 */
export function measurePeaks(opts: ProgressOptions = {}): Promise<MachinePeaks> {
  return nativeCall(opts, (onProgress, cancel) => engine().machinePeaks(onProgress, cancel));
}

/** Threads of the compute pool for later calls (0: one per core); returns the count in effect. */
export function setComputeThreads(threads: number): number {
  return nativeSync(() => engine().setThreads(threads));
}

/**
 * Niceness of the threads that run kernels, for later calls: 0 (default) as the process, up to 19 for the lowest
 * priority. A service raises it so its event loop (parsing requests, health checks) preempts a saturated engine;
 * on Linux a thread's niceness only rises, so lowering it again affects new threads alone. Returns the value in effect.
 */
export function setComputeNice(nice: number): number {
  return nativeSync(() => engine().setNice(nice));
}
