// The native engine's exports as one typed interface (the mirror of
// native/binding/*: one section per binding file), and its loader: the local
// build, else the prebuilt engine for this platform; otherwise an error that
// says what to install. Only ts/engine/ imports this module.
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConceptLensError } from '../errors.js';
import { packageRoot } from '../package-root.js';

/** A progress callback as the engine calls it (throttled to ~10 Hz), or null. */
export type NativeProgress = ((done: number, total: number) => void) | null;
/** An Int32Array over a SharedArrayBuffer the kernels poll; 1 aborts. */
export type CancelFlag = Int32Array | null;
/** Rows as the engine reads them in place: fp32, or fp16 as its bits in a Uint16Array. */
export type FloatRows = Float32Array | Uint16Array;
/** How the CPU exact scan computes scores (see TopKOptions.kernel). */
export type ScanKernel = 'auto' | 'sgemm' | 'bf16' | 'int8';
/** Where a kernel runs; 'cuda' needs an engine built with nvcc and a GPU present (see {@link EngineInfo}), else ERR_DEVICE. */
export type Device = 'cpu' | 'cuda';

// ---- addon.cpp
/** What the loaded native engine was built with and found on this machine, from {@link engineInfo}. */
/** What the loaded engine was built with and runs on. */
export interface EngineInfo {
  /** The engine file in use (a local build, or the prebuilt one). */
  addon: string;
  /** OpenBLAS kernel family in use (e.g. 'SkylakeX'). */
  blasCore: string;
  /** Threads of the compute pool. */
  computeThreads: number;
  /** Niceness of the compute threads (0: as the process; see {@link setComputeNice}). */
  computeNice: number;
  /** Whether the CPU supports AVX-512F. */
  avx512: boolean;
  /** Screening formats this CPU runs for the exact scan. */
  screening: ('int8' | 'bf16')[];
  /** Version of the screening copies' packing: prepared copies of another version are prepared again. */
  screenLayout: number;
  /** Whether the engine was built with CUDA kernels. */
  cudaCompiled: boolean;
  /** Whether a CUDA device is usable now (always false when not `cudaCompiled`). */
  cudaAvailable: boolean;
}
/**
 * The machine's arithmetic ceilings, from {@link measurePeaks}: multiply-adds per second the compute threads can
 * retire on register-resident data (threads × the best rate one thread sustained while all ran), in the
 * instructions the heavy kernels use. 0 where the CPU lacks them.
 */
export interface MachinePeaks {
  /** fp32 fused multiply-adds (what sgemm runs), in `fp32Isa` vectors. */
  fp32MacsPerS: number;
  /** u8×s8 dot-product multiply-adds (what the int8 screen of the exact scan runs). */
  int8MacsPerS: number;
  /** s16×s16 dot-product multiply-adds (what the int16 moments of LE's elastic net run). */
  int16MacsPerS: number;
  /** Compute threads the rates count. */
  threads: number;
  /** 'avx512' or 'avx2'; '' when fp32MacsPerS is 0. */
  fp32Isa: '' | 'avx512' | 'avx2';
}

// ---- topk_binding.cpp
export interface NativeTopK {
  add(vectors: FloatRows, rows: number, idOffset: number, invNorms: Float32Array | null,
    onProgress: NativeProgress, cancel: CancelFlag): Promise<void>;
  addFile(path: string, dataOffset: number, dtype: 'float32' | 'float16', cols: number, first: number, rows: number,
    idOffset: number, onProgress: NativeProgress, cancel: CancelFlag): Promise<void>;
  addPrepared(prepared: NativePreparedVocab, vectors: FloatRows, rows: number, first: number, idOffset: number,
    onProgress: NativeProgress, cancel: CancelFlag): Promise<void>;
  endChunk(): void;
  result(): Promise<ScanResult>;
}
/**
 * What computed every candidate's score: a screen in 'int8' or 'bf16' (its certified bound rules rows out; the rest are
 * re-scored in fp32), or 'fp32' tiles (CPU GEMM tiles, the GPU).
 */
export type ScoreArithmetic = 'fp32' | 'int8' | 'bf16';
/** A scan's nq × k scores and ids, each row best first, and what computed them. */
export interface ScanResult {
  scores: Float32Array;
  ids: BigInt64Array;
  scoredBy: ScoreArithmetic;
}
/**
 * A prepared screening copy as arrays (what a store persists): the rows rounded once in one frame, their per-row
 * terms, and 1/‖row‖. `format` null: the CPU screens in neither format, only `inv` is meaningful.
 */
export interface PreparedArrays {
  format: 'int8' | 'bf16' | null;
  /** Version of the packing ({@link EngineInfo.screenLayout}); fromArrays refuses another (its sums would be wrong). */
  layout: number;
  rows: number;
  dim: number;
  /** The frame's shift and power-of-two scales (dim each), or null for the identity frame. */
  mu: Float32Array | null;
  invC: Float32Array | null;
  /** rows × steps × 4 bytes: the rounded values, two bf16 per 32-bit step, or int8 in groups of 12 values per three steps (8 in Winograd's pairs, 4 plain). */
  packed: Uint8Array;
  /** Per row: the rounded values' scale, their error and norm bounds, ‖row‖ rounded up, and 1/‖row‖ (0 for a zero row). */
  scale: Float32Array;
  err: Float32Array;
  norm: Float32Array;
  vnorm: Float32Array;
  inv: Float32Array;
}
export interface NativePreparedVocab {
  readonly format: 'int8' | 'bf16' | null;
  readonly rows: number;
  readonly dim: number;
  /** Bytes of the packed screening values (PreparedArrays.packed), 0 without a format. */
  readonly packedBytes: number;
  arrays(): Promise<PreparedArrays>;
}
export interface NativePreparedVocabClass {
  prepare(vectors: FloatRows, rows: number, d: number, invNorms: Float32Array | null, onProgress: NativeProgress,
    cancel: CancelFlag): Promise<NativePreparedVocab>;
  fromArrays(arrays: PreparedArrays): Promise<NativePreparedVocab>;
}
export type NativeTopKClass = new (queries: Float32Array, nq: number, d: number, k: number, metric: 'ip' | 'cosine',
  softmaxTemperature: number, device: Device, kernel: ScanKernel) => NativeTopK;

// ---- vocab_binding.cpp
export interface NativeTextHashSet {
  add(bytes: Uint8Array, start: Int32Array, length: Int32Array, n: number): Uint8Array;
  readonly size: number;
  readonly memoryBytes: number;
}

// ---- glm_binding.cpp
export interface NativeGlmOptions {
  solver?: 'cd' | 'saga';
  lambda?: number; alpha?: number; tol?: number; maxPasses?: number; moments?: 'auto' | 'fp32' | 'int16';
  batch?: number; step?: number; maxEpochs?: number; lookbehind?: number; tolPerTarget?: number; seed?: number;
}
export interface NativeGlmFit {
  weights: Float32Array;
  bias: Float32Array;
  objective: Float64Array;
  iterations: number;
  momentsBy?: 'fp32' | 'int16';
}

// ---- faiss_binding.cpp
export interface NativeFaissIndex {
  readonly dim: number;
  readonly size: number;
  readonly isTrained: boolean;
  readonly metric: 'ip' | 'l2';
  readonly description: string;
  train(vectors: FloatRows, rows: number, onProgress: NativeProgress, cancel: CancelFlag): Promise<void>;
  add(vectors: FloatRows, rows: number, onProgress: NativeProgress, cancel: CancelFlag): Promise<void>;
  search(queries: FloatRows, nq: number, k: number, nprobe: number, efSearch: number, onProgress: NativeProgress,
    cancel: CancelFlag): Promise<{ ids: BigInt64Array; scores: Float32Array }>;
  save(path: string): Promise<void>;
}
export interface NativeFaissClass {
  new (dim: number, factory: string, metric: 'ip' | 'l2', normalize: boolean, seed: number, efConstruction: number): NativeFaissIndex;
  load(path: string, normalize: boolean, onProgress: NativeProgress, cancel: CancelFlag): Promise<NativeFaissIndex>;
}

// ---- falcon_binding.cpp
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

// ---- splice_binding.cpp
export interface NativeSpliceOptions {
  l1: number;
  solver?: 'auto' | 'fista' | 'admm' | 'ws';
  tol?: number;
  maxIter?: number;
  rho?: number;
  out?: Float32Array;
  device?: Device;
}
export interface NativeSpliceResult {
  weights: Float32Array;
  objective: Float64Array;
  gap: Float64Array;
  iterations: Int32Array;
}
export interface NativeSplicePoint {
  l1: number;
  meanL0: number;
  meanObjective: number;
}

// ---- sae_binding.cpp
/** The SAE's activation: ReLU with an L1 penalty, per-item top-k, or batch-wide top n·k. */
export type SaeKind = 'relu-l1' | 'topk' | 'batchtopk';
/** A sparse autoencoder's shape and hyperparameters (unset ones take the engine's defaults). */
export interface SaeConfig {
  /** Input width. */
  d: number;
  /** Latents (dictionary atoms). */
  m: number;
  kind?: SaeKind;
  /** Active latents per item (topk, batchtopk). */
  k?: number;
  /** λ of the L1 penalty on the codes. */
  l1?: number;
  /** Adam's learning rate and moments. */
  lr?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Weight of the dead-latent auxiliary loss (topk kinds). */
  auxCoef?: number;
  /** Dead latents each item may use in the auxiliary loss. */
  auxK?: number;
  /** Steps without firing after which a latent feeds the auxiliary loss. */
  deadSteps?: number;
  /** Seeds the initial weights and resampling. */
  seed?: number;
  /** ReLU-L1 uses sparse kernels while the active fraction is below this. */
  sparseBelow?: number;
}
/** One training step's (or an epoch's mean) statistics. */
export interface SaeStats {
  /** Steps taken so far. */
  step: number;
  /** Total objective, including the λ and auxiliary terms. */
  loss: number;
  /** Mean over items of mean over d of (x − x̂)². */
  mse: number;
  /** Auxiliary reconstruction error (before its weight); 0 for ReLU-L1. */
  aux: number;
  /** Mean active latents per item. */
  l0: number;
  /** Fraction of variance unexplained. */
  fvu: number;
  /** Latents not fired since the last resample. */
  dead: number;
  deadFraction: number;
  /** Whether the step took the sparse kernels. */
  sparse: boolean;
  /**
   * Whether TopK's encoder screened in int16 (AVX512-VNNI, which the 'int8' screening format needs too): every
   * pre-activation estimated at twice the fp32 rate, only those that could be codes computed in fp32. The codes are
   * the fp32 encoder's either way.
   */
  screened: boolean;
}
export interface NativeSaeTrainer {
  step(batch: FloatRows, rows: number, itemIds: Float64Array | null): Promise<SaeStats>;
  trainEpoch(data: FloatRows, rows: number, batch: number, itemIds: Float64Array | null, onProgress: NativeProgress,
    cancel: CancelFlag): Promise<SaeStats & { steps: number; last: SaeStats }>;
  encode(data: FloatRows, rows: number, batch: number, onProgress: NativeProgress, cancel: CancelFlag): Promise<Float32Array>;
  /** Views into the engine's storage; decoder is m × d (row j = atom j). */
  params(): { encoder: Float32Array; encoderBias: Float32Array; decoder: Float32Array; bias: Float32Array };
  config(): Required<SaeConfig>;
  lastStats(): SaeStats;
  dead(): Float64Array;
  fired(): Float64Array;
  resampleBegin(): void;
  resampleApply(): Float64Array;
  save(path: string): void;
  load(path: string): void;
  readonly steps: number;
}

/** Every export of the addon. */
export interface Addon {
  info(): Omit<EngineInfo, "addon">;
  setThreads(threads: number): number;
  setNice(nice: number): number;
  machinePeaks(onProgress: NativeProgress, cancel: CancelFlag): Promise<MachinePeaks>;
  // fp16_binding.cpp
  halvesToFloats(halves: Uint16Array): Float32Array;
  floatsToHalves(floats: Float32Array): Uint16Array;
  // blas_binding.cpp
  matmulNT(a: Float32Array, m: number, k: number, b: Float32Array, n: number, onProgress: NativeProgress, cancel: CancelFlag): Promise<Float32Array>;
  TopK: NativeTopKClass;
  PreparedVocab: NativePreparedVocabClass;
  glmFit(X: Float32Array, n: number, p: number, Y: Float32Array, K: number, options: NativeGlmOptions,
    onProgress: NativeProgress, cancel: CancelFlag): Promise<NativeGlmFit>;
  glmObjective(X: Float32Array, n: number, p: number, Y: Float32Array, K: number, W: Float32Array, b: Float32Array,
    options: { lambda?: number; alpha?: number }): Float64Array;
  FaissIndex: NativeFaissClass;
  falconFiring(r: FloatRows, rows: number, cols: number, sigmas: number, onProgress: NativeProgress,
    cancel: CancelFlag): Promise<NativeFiring>;
  falconCams(layers: NativeCamLayer[], n: number, group: Int32Array, outHeight: number, outWidth: number,
    threshold: number, onProgress: NativeProgress, cancel: CancelFlag): Promise<{ cams: Float32Array; boxes: Int32Array }>;
  checkSpliceOptions(options: NativeSpliceOptions): void;
  spliceDecompose(dictionary: FloatRows, c: number, d: number, samples: FloatRows, n: number, options: NativeSpliceOptions,
    warm: Float32Array | null, onProgress: NativeProgress, cancel: CancelFlag): Promise<NativeSpliceResult>;
  splicePath(dictionary: FloatRows, c: number, d: number, samples: FloatRows, n: number,
    options: NativeSpliceOptions & { targetL0: number; l0Tol?: number; maxSteps?: number },
    onProgress: NativeProgress, cancel: CancelFlag): Promise<NativeSpliceResult & { points: NativeSplicePoint[] }>;
  // vocab_binding.cpp
  transformRows(src: FloatRows, rows: number, dim: number, out: Float32Array, normalize: boolean, center: boolean,
    mean: Float32Array | null, rowBase: number, onProgress: NativeProgress, cancel: CancelFlag): Promise<void>;
  firstNonFiniteRow(src: FloatRows, rows: number, dim: number): number;
  snappyUncompress(src: Uint8Array, dst: Uint8Array, what: string): Promise<void>;
  plainSpans(data: Uint8Array, n: number, start: Int32Array, length: Int32Array, what: string): number;
  TextHashSet: new (expected: number) => NativeTextHashSet;
  SaeTrainer: new (config: SaeConfig) => NativeSaeTrainer;
  readSaeConfig(path: string): Required<SaeConfig>;
}

const require = createRequire(import.meta.url);

/** CPU flags from /proc/cpuinfo (Linux); empty elsewhere. */
function cpuFlags(): Set<string> {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'));
    return new Set(line ? line.split(':')[1].trim().split(/\s+/) : []);
  } catch {
    return new Set();
  }
}

/** Debian's OpenBLAS 0.3.21 picks Haswell kernels on AVX-512 Zen (2.7x slower sgemm); the same rule as native/core/cpu.cpp. */
export function preferredOpenblasCoretype(): string {
  const forced = process.env.CONCEPTLENS_OPENBLAS_CORETYPE;
  if (forced !== undefined) return forced;
  const f = cpuFlags();
  return ['avx512f', 'avx512bw', 'avx512vl', 'avx512dq'].every((x) => f.has(x)) ? 'SkylakeX' : '';
}

/** The idle-thread policies the loader set for the engine's own pool (not the user), by name. */
const tunedForEngine = new Set<string>();

/** The process environment without the loader's idle-thread policies: what another program (a bench peer) should run under. */
export function environmentWithoutEngineTuning(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of tunedForEngine) delete env[name];
  return env;
}

function defaultEnv(name: string, value: string): void {
  if (process.env[name] !== undefined) return;
  process.env[name] = value;
  tunedForEngine.add(name);
}

/** Read by OpenBLAS and libgomp when the addon loads them, so set before. */
function configureThreads(): void {
  const core = preferredOpenblasCoretype();
  if (core) process.env.OPENBLAS_CORETYPE = core;
  // libgomp (FAISS) spin-waits by default, which starves the other threads on
  // few cores (FAISS >10x slower on 2 shared cores).
  defaultEnv('OMP_WAIT_POLICY', 'PASSIVE');
  // OpenBLAS's idle threads spin (sched_yield) for 2^28 cycles, ~70 ms, after
  // each threaded call, taking cores from the compute pool's next step (LE's
  // solve after its Gram). 2^20 cycles keeps them warm between back-to-back
  // calls only: an LE fit 5-10% faster, a fresh SAE step ~5%.
  defaultEnv('OPENBLAS_THREAD_TIMEOUT', '20');
}

/** A build from source (a checkout, or an install that compiled) wins over the prebuilt engine. */
function candidates(): string[] {
  const forced = process.env.CONCEPTLENS_ADDON;
  if (forced) return [forced];
  return [
    join(packageRoot, 'build', 'Release', 'conceptlens.node'),
    join(packageRoot, 'prebuilds', `${process.platform}-${process.arch}`, 'conceptlens.node'),
  ];
}

let addon: Addon | undefined;
/** The file the engine was loaded from. */
export let addonPath = '';

/** The loaded engine (loaded on first use). */
export function engine(): Addon {
  if (addon) return addon;
  configureThreads();
  const tried: string[] = [];
  for (const path of candidates()) {
    if (!existsSync(path)) {
      tried.push(`${path} (absent)`);
      continue;
    }
    try {
      addon = require(path) as Addon;
      addonPath = path;
      return addon;
    } catch (e) {
      tried.push(`${path} (${(e as Error).message.split('\n')[0]})`);
    }
  }
  throw new ConceptLensError('ERR_ENGINE',
    'conceptlens: could not load the native engine. Tried:\n  ' + tried.join('\n  ') +
    '\nBuild it: sudo apt-get install -y cmake g++ libopenblas-dev libfaiss-dev libsnappy-dev libxxhash-dev && npm rebuild conceptlens\n' +
    '(a shared library error above names the missing package: libopenblas0 / libfaiss / libgomp1).');
}
