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
