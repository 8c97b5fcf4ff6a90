// Loads the native engine: a prebuilt binary for this platform, else the
// local build; otherwise an error that says what to install. Before the
// addon loads (and with it OpenBLAS), picks OpenBLAS's kernel family: the
// same rule as native/core/cpu.cpp.
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
export const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** CPU flags from /proc/cpuinfo (Linux); empty elsewhere. */
function cpuFlags(): Set<string> {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'));
    return new Set(line ? line.split(':')[1].trim().split(/\s+/) : []);
  } catch {
    return new Set();
  }
}

/** Debian's OpenBLAS 0.3.21 picks Haswell kernels on AVX-512 Zen (2.7x slower sgemm). */
export function preferredOpenblasCoretype(): string {
  const forced = process.env.CONCEPTLENS_OPENBLAS_CORETYPE;
  if (forced !== undefined) return forced;
  const f = cpuFlags();
  return ['avx512f', 'avx512bw', 'avx512vl', 'avx512dq'].every((x) => f.has(x)) ? 'SkylakeX' : '';
}

function configureThreads(): void {
  const core = preferredOpenblasCoretype();
  if (core) process.env.OPENBLAS_CORETYPE = core;
  // libgomp (FAISS) spin-waits by default, which starves the other threads on
  // few cores (FAISS >10x slower on 2 shared cores). Read when libgomp loads.
  process.env.OMP_WAIT_POLICY ??= 'PASSIVE';
}

export interface NativeTopK {
  add(vectors: Float32Array | Uint16Array, rows: number, idOffset: number, invNorms: Float32Array | null,
    onProgress: ((done: number, total: number) => void) | null, cancel: Int32Array | null): Promise<void>;
  endChunk(): void;
  result(): { scores: Float32Array; ids: BigInt64Array };
}

/** How the CPU exact scan computes scores; see TopKOptions.kernel in retrieval/exact. */
export type ScanKernel = 'auto' | 'sgemm' | 'bf16' | 'int8';

export interface NativeAddon {
  info(): { blasCore: string; computeThreads: number; avx512: boolean; screening: Exclude<ScanKernel, 'auto' | 'sgemm'>[]; cudaCompiled: boolean; cudaAvailable: boolean };
  setThreads(n: number): number;
  halvesToFloats(halves: Uint16Array): Float32Array;
  floatsToHalves(floats: Float32Array): Uint16Array;
  matmulNT(a: Float32Array, m: number, k: number, b: Float32Array, n: number,
    onProgress: ((done: number, total: number) => void) | null, cancel: Int32Array | null): Promise<Float32Array>;
  TopK: new (queries: Float32Array, nq: number, d: number, k: number, metric: string, softmaxTemperature: number, device?: 'cpu' | 'cuda', kernel?: ScanKernel) => NativeTopK;
  [name: string]: unknown;
}

function candidates(): string[] {
  const forced = process.env.CONCEPTLENS_ADDON;
  if (forced) return [forced];
  return [
    join(packageRoot, 'prebuilds', `${process.platform}-${process.arch}`, 'conceptlens.node'),
    join(packageRoot, 'build', 'Release', 'conceptlens.node'),
  ];
}

let addon: NativeAddon | undefined;

export function native(): NativeAddon {
  if (addon) return addon;
  configureThreads();
  const tried: string[] = [];
  for (const path of candidates()) {
    if (!existsSync(path)) {
      tried.push(`${path} (absent)`);
      continue;
    }
    try {
      addon = require(path) as NativeAddon;
      return addon;
    } catch (e) {
      tried.push(`${path} (${(e as Error).message.split('\n')[0]})`);
    }
  }
  throw new Error(
    'conceptlens: could not load the native engine. Tried:\n  ' + tried.join('\n  ') +
    '\nBuild it: sudo apt-get install -y cmake g++ libopenblas-dev libfaiss-dev && npm run build:native\n' +
    '(a shared library error above names the missing package: libopenblas0 / libfaiss / libgomp1).',
  );
}
