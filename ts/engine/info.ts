// addon.cpp: engine facts and the compute pool's size.
import { addonPath, engine, type EngineInfo } from './addon.js';
import { nativeSync } from './call.js';

/** Which BLAS kernels, threads, screening formats and CUDA the loaded engine has. */
export function engineInfo(): EngineInfo {
  const info = engine().info();
  return { ...info, addon: addonPath };
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
