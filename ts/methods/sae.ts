// Discover-then-Name (Rao et al., ECCV 2024): a sparse autoencoder trained
// natively over features streamed from a .npy file, concept naming against a
// text vocabulary, and the files other tools read (decoder.npy, encoder.npy).
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import type { ProgressOptions } from '../abort.js';
import type { SaeConfig, SaeKind, SaeStats } from '../engine/addon.js';
import { halvesToFloats } from '../engine/fp16.js';
import { SaeEngine } from '../engine/sae.js';
import { argError, ConceptLensError, fileError, requireOptions, requireInteger } from '../errors.js';
import { ensureDir, requireDirTarget, writeFileAtomic } from '../io/atomic.js';
import { readNpy, readNpyHeader, readNpyRows, writeNpy, type NpyHeader } from '../io/npy.js';
import { exactSearch } from '../retrieval/exact.js';
import { requireMemory } from '../memory.js';
import { rng } from '../random.js';
import { readJson } from '../io/text.js';

export type { SaeConfig, SaeKind, SaeStats };

type Features = Float32Array | Uint16Array;

/** The native trainer: steps, epochs, encoding, parameters (engine/sae.ts). */
export type SaeTrainer = SaeEngine;

export const CHECKPOINT = 'sae.ckpt';
export const META = 'sae.json';

/**
 * A fresh native SAE trainer of this shape and hyperparameters (unset ones take the engine's defaults).
 * @throws ConceptLensError ERR_ARG for an invalid config.
 */
/** A new trainer; TopK kinds default to no L1 penalty (their sparsity is the top-k), ReLU-L1 to λ = 3e-5. */
export function createTrainer(config: SaeConfig): SaeTrainer {
  const topk = config.kind === 'topk' || config.kind === 'batchtopk';
  return new SaeEngine({ ...config, l1: config.l1 ?? (topk ? 0 : undefined) });
}

/** A trainer restored from DIR/sae.ckpt (its own shape and hyperparameters). */
export function loadTrainer(dir: string): SaeTrainer {
  const path = join(dir, CHECKPOINT);
  if (!existsSync(path)) throw fileError(dir, `no SAE checkpoint (${CHECKPOINT}); train one with \`conceptlens sae train --out ${dir}\``);
  const t = createTrainer(SaeEngine.readConfig(path));
  t.load(path);
  return t;
}

export function shuffle(a: Uint32Array, rand: () => number): Uint32Array {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
  return a;
}

/** A 2-D float32/float16 feature file, checked once. */
export function featureHeader(path: string): NpyHeader {
  const h = readNpyHeader(path);
  if (h.shape.length !== 2 || (h.dtype !== 'float32' && h.dtype !== 'float16'))
    throw new ConceptLensError('ERR_DTYPE', `${path}: expected a 2-D float32 or float16 array (items × d), got ${h.dtype} of shape [${h.shape.join(', ')}]`);
  return h;
}

/**
 * A feature file's content, cheaply told apart: shape, dtype and the sha256 of its first and last MiB of data (a
 * resume on other features would go on silently from the wrong epoch order and statistics).
 */
export function featuresId(h: NpyHeader): string {
  const bytes = h.shape[0] * h.shape[1] * (h.dtype === 'float16' ? 2 : 4), span = Math.min(bytes, 2 ** 20);
  const hash = createHash('sha256'), buf = Buffer.alloc(span), fd = openSync(h.path, 'r');
  try {
    for (const at of new Set([0, bytes - span])) hash.update(buf.subarray(0, readSync(fd, buf, 0, span, h.dataOffset + at)));
  } finally {
    closeSync(fd);
  }
  return `${h.shape.join('×')} ${h.dtype}, sha256 of its ends ${hash.digest('hex').slice(0, 16)}`;
}

/**
 * One epoch's order, in chunks of at most chunkRows rows: the file's blocks of
 * `block` consecutive rows in shuffled order (each a contiguous read), rows
 * shuffled again within each chunk. A file that fits one chunk is fully shuffled.
 */
export function* shuffledChunks(h: NpyHeader, chunkRows: number, rand: () => number, block = 256):
  Generator<{ data: Features; ids: Float64Array }> {
  const n = h.shape[0], d = h.shape[1];
  const nblocks = Math.ceil(n / block);
  const order = shuffle(Uint32Array.from({ length: nblocks }, (_, i) => i), rand);
  const perChunk = Math.max(1, Math.floor(chunkRows / block));
  for (let c0 = 0; c0 < nblocks; c0 += perChunk) {
    const blocks = order.subarray(c0, Math.min(nblocks, c0 + perChunk));
    const ids: number[] = [];
    for (const b of blocks) for (let r = b * block; r < Math.min(n, (b + 1) * block); r++) ids.push(r);
    const perm = shuffle(Uint32Array.from({ length: ids.length }, (_, i) => i), rand);
    const rows = ids.length;
    const data = h.dtype === 'float16' ? new Uint16Array(rows * d) : new Float32Array(rows * d);
    const pos = new Map<number, Features>();
    for (const b of blocks) {
      const r0 = b * block;
      pos.set(r0, readNpyRows(h, r0, Math.min(n, r0 + block) - r0) as Features);
    }
    const outIds = new Float64Array(rows);
    for (let i = 0; i < rows; i++) {
      const id = ids[perm[i]];
      const r0 = id - (id % block);
      const src = pos.get(r0)!;
      data.set(src.subarray((id - r0) * d, (id - r0 + 1) * d), i * d);
      outIds[i] = id;
    }
    yield { data, ids: outIds };
  }
}

/** Progress of {@link trainSae}, reported as rows are trained (at most about ten times a second). */
export interface TrainProgress {
  /** Current epoch, from 1. */
  epoch: number;
  /** Epochs the run goes to. */
  epochs: number;
  /** Rows of the feature file trained on so far in this epoch. */
  rowsDone: number;
  /** Rows of the feature file. */
  rowsTotal: number;
  /** Statistics of the latest step. */
  stats: SaeStats;
}

/** Options of {@link trainSae}; a resumed run takes omitted run settings from DIR/sae.json. */
export interface TrainOptions {
  /** Feature file: a 2-D float32 or float16 .npy, items × d, streamed in shuffled chunks. */
  features: string;
  /** Output directory: sae.ckpt, sae.json, decoder.npy (d × m), encoder.npy (m × d), encoder_bias.npy, bias.npy. */
  out: string;
  /** Latents per input dimension: m = expansion × d (default 8). */
  expansion?: number;
  /** Activation (default 'relu-l1'). */
  kind?: SaeKind;
  /** Active latents per item for the top-k kinds, 1..m (default: the engine's, 32). */
  k?: number;
  /** λ of the L1 penalty (default 3e-5 for 'relu-l1', 0 for the top-k kinds). */
  l1?: number;
  /** Adam learning rate (default 5e-4). */
  lr?: number;
  /** Rows per step (default 4096). */
  batch?: number;
  /** Epochs to have trained in all (a resumed run trains the ones still missing). */
  epochs: number;
  /** Seeds the initial weights, resampling and shuffling (default 0). */
  seed?: number;
  /** Dead-latent resampling after every this many epochs, never after the last (default 10; 0: never). */
  resampleEvery?: number;
  /** Inputs at the end of a resampling epoch that candidates are drawn from (default 819,200). */
  resampleInputs?: number;
  /**
   * Rows held in memory at once (shuffle window); default about 512 MiB of fp32 rows, always rounded
   * down to a multiple of `batch` and at least `batch`.
   */
  chunkRows?: number;
  /** Continue from DIR/sae.ckpt when present; options given must match the checkpoint's. */
  resume?: boolean;
  /** Start afresh even where DIR holds a trained SAE (by default that is refused, so a run never replaces one by mistake). */
  overwrite?: boolean;
  /**
   * Start the tied bias b at the feature mean instead of 0 (input mean
   * centring): raw features share a large mean direction that otherwise
   * dominates x − b early on and every resampled atom. Default false.
   */
  centre?: boolean;
  /** Stops training (ERR_ABORTED); outputs hold the last completed epoch. */
  signal?: AbortSignal;
  /** Called with the epoch, rows done and latest step's statistics as training runs. */
  onProgress?: (p: TrainProgress) => void;
  /** Extra trainer settings (auxK, deadSteps, sparseBelow, ...). */
  trainer?: Partial<SaeConfig>;
}

/** The settings a run's result depends on besides the trainer's: recorded so a resume runs the same way. */
export interface RunSettings {
  batch: number;
  resampleEvery: number;
  resampleInputs: number;
  chunkRows: number;
  centre: boolean;
}

/** A training run's record, written to DIR/sae.json after every epoch. */
export interface TrainMeta {
  /** Feature file the run was trained on. */
  features: string;
  /** Its content's identity (featuresId), which a resume must match (absent in older records). */
  featuresId?: string;
  /** The trainer's shape and hyperparameters. */
  config: Required<SaeConfig>;
  /** Run settings a resume must reuse (absent in older records). */
  run?: RunSettings;
  /** Epochs completed. */
  epochsDone: number;
  /** Optimiser steps taken. */
  steps: number;
  /** Per epoch: the last step's statistics, the epoch and the number of latents resampled after it. */
  history: Array<SaeStats & { epoch: number; resampled: number }>;
}

export function readMeta(dir: string): TrainMeta {
  const p = join(dir, META);
  if (!existsSync(p)) throw fileError(dir, `no ${META}; not an SAE training directory`);
  return readJson<TrainMeta>(p);
}

/**
 * Metadata, dictionary files and checkpoint, each written atomically, the
 * checkpoint last: a run killed between two of them resumes from the
 * checkpoint, with the metadata rolled back to it (see resumeMeta).
 */
export function writeOutputs(t: SaeTrainer, dir: string, meta: TrainMeta): void {
  ensureDir(dir, 'SAE training');
  writeFileAtomic(join(dir, META), JSON.stringify(meta, null, 1));
  const { d, m } = t.config();
  const p = t.params();
  const dec = new Float32Array(d * m);  // d × m: column j = atom j
  for (let j = 0; j < m; j++) for (let c = 0; c < d; c++) dec[c * m + j] = p.decoder[j * d + c];
  writeNpy(join(dir, 'decoder.npy'), dec, [d, m]);
  writeNpy(join(dir, 'encoder.npy'), p.encoder.slice(), [m, d]);
  writeNpy(join(dir, 'encoder_bias.npy'), p.encoderBias.slice(), [m]);
  writeNpy(join(dir, 'bias.npy'), p.bias.slice(), [d]);
  t.save(join(dir, CHECKPOINT));
}

/** The metadata as of the checkpoint: epochs recorded after it (a kill before the checkpoint landed) are dropped. */
function resumeMeta(meta: TrainMeta, steps: number, dir: string): TrainMeta {
  if (meta.steps === steps) return meta;
  const at = meta.history.findIndex((h) => h.step === steps);
  if (steps !== 0 && at < 0)
    throw new ConceptLensError('ERR_FILE', `${dir}: the checkpoint (${steps} steps) matches no epoch of ${META}; the run is damaged, start it again with --overwrite`);
  const history = meta.history.slice(0, at + 1);
  return { ...meta, history, epochsDone: history.at(-1)?.epoch ?? 0, steps };
}

/** Column means of a feature file, read in chunks. */
export function featureMean(h: NpyHeader, chunkRows: number): Float32Array {
  const [n, d] = h.shape;
  const sum = new Float64Array(d);
  for (let r0 = 0; r0 < n; r0 += chunkRows) {
    const rows = Math.min(chunkRows, n - r0);
    const x = readNpyRows(h, r0, rows);
    const f = x instanceof Uint16Array ? halvesToFloats(x) : (x as Float32Array);
    for (let i = 0; i < rows; i++) for (let c = 0; c < d; c++) sum[c] += f[i * d + c];
  }
  return Float32Array.from(sum, (v) => v / n);
}

/** The trainer's configuration a run asks for, checked (unset values take createTrainer's defaults). */
function requestedConfig(o: TrainOptions, d: number): SaeConfig {
  const kind = o.kind ?? 'relu-l1';
  if (!['relu-l1', 'topk', 'batchtopk'].includes(kind)) throw argError('kind', "'relu-l1', 'topk' or 'batchtopk'", kind);
  const expansion = o.expansion ?? 8;
  requireInteger(expansion, 'expansion', 1);
  const { l1, lr } = o;
  if (l1 !== undefined && !(Number.isFinite(l1) && l1 >= 0)) throw argError('l1', 'a finite number >= 0', l1);
  if (lr !== undefined && !(Number.isFinite(lr) && lr > 0)) throw argError('lr', 'a finite number > 0', lr);
  if (o.k !== undefined && !(Number.isInteger(o.k) && o.k >= 1 && o.k <= expansion * d)) throw argError('k', `an integer in 1..${expansion * d} (the latents)`, o.k);
  return { ...o.trainer, d, m: expansion * d, kind, k: o.k, l1, lr, seed: o.seed ?? 0 };
}

/** Bytes a trainer of this shape holds: parameters with Adam's moments and gradients, and one batch's activations. */
export function trainerBytes(d: number, m: number, batch: number): number {
  const params = 2 * m * d + m + d;
  return 4 * (4 * params + batch * (3 * m + 4 * d));
}

/** A recorded setting as the user typed it: the engine keeps rates in float32 (5e-4 reads back as 0.0005000000237…). */
const asTyped = (v: unknown) => (typeof v === 'number' ? String(Number(v.toPrecision(7))) : String(v));

/** On --resume, the features and every option given must agree with the recorded run (else results would silently mix). */
function requireSameRun(o: TrainOptions, meta: TrainMeta, dir: string, id: string): void {
  if (meta.featuresId !== undefined && meta.featuresId !== id)
    throw new ConceptLensError('ERR_ARG', `features: the run in ${dir} was trained on ${meta.features} (${meta.featuresId}); --resume got ${o.features} ` +
      `(${id}) (give the same features, or start a new run in another --out)`);
  const given: [string, unknown, unknown][] = [
    ['kind', o.kind, meta.config.kind], ['k', o.k, meta.config.k], ['l1', o.l1, meta.config.l1], ['lr', o.lr, meta.config.lr],
    ['seed', o.seed, meta.config.seed], ['expansion', o.expansion, meta.config.m / meta.config.d],
    ['batch', o.batch, meta.run?.batch], ['resampleEvery', o.resampleEvery, meta.run?.resampleEvery],
    ['resampleInputs', o.resampleInputs, meta.run?.resampleInputs], ['centre', o.centre, meta.run?.centre],
  ];
  for (const [name, value, recorded] of given)
    if (value !== undefined && recorded !== undefined && Math.fround(Number(value)) !== Math.fround(Number(recorded)) && value !== recorded)
      throw new ConceptLensError('ERR_ARG', `${name}: the run in ${dir} was trained with ${name} = ${asTyped(recorded)}; --resume got ${name} = ${value} (drop the option, or start a new run in another --out)`);
}

/** Trains (or resumes) an SAE over a feature file; returns the metadata written to DIR/sae.json. */
export async function trainSae(o: TrainOptions): Promise<TrainMeta> {
  requireOptions(o, 'features, out and epochs');
  const h = featureHeader(o.features);
  const [n, d] = h.shape;
  if (n === 0) throw new ConceptLensError('ERR_SHAPE', `${o.features}: has 0 rows; an SAE needs features to train on`);
  requireInteger(o.epochs, 'epochs', 1);
  requireDirTarget(o.out, 'SAE training');
  const resuming = !!o.resume && existsSync(join(o.out, CHECKPOINT));
  const recorded = resuming ? readMeta(o.out) : undefined;
  const batch = o.batch ?? recorded?.run?.batch ?? 4096;
  requireInteger(batch, 'batch', 1);
  const run: RunSettings = {
    batch, resampleEvery: o.resampleEvery ?? recorded?.run?.resampleEvery ?? 10,
    resampleInputs: o.resampleInputs ?? recorded?.run?.resampleInputs ?? 819_200,
    chunkRows: Math.max(batch, Math.floor((o.chunkRows ?? Math.floor(2 ** 29 / (d * 4))) / batch) * batch),
    centre: o.centre ?? recorded?.run?.centre ?? false,
  };
  let t: SaeTrainer;
  let meta: TrainMeta;
  const id = featuresId(h);
  if (resuming) {
    requireSameRun(o, recorded!, o.out, id);
    t = loadTrainer(o.out);
    meta = { ...resumeMeta(recorded!, t.steps, o.out), features: o.features, featuresId: id };  // the same content, perhaps moved
    if (t.config().d !== d) throw new ConceptLensError('ERR_SHAPE', `${o.features}: d=${d}, but the checkpoint in ${o.out} has d=${t.config().d}`);
  } else {
    if (existsSync(join(o.out, CHECKPOINT)) && !o.overwrite)
      throw new ConceptLensError('ERR_FILE', `${o.out}: holds a trained SAE (${CHECKPOINT}); pass --resume to continue it, or --overwrite to replace it`);
    const config = requestedConfig(o, d);
    requireMemory(trainerBytes(d, config.m, batch), `an SAE with d = ${d}, m = ${config.m} and batch ${batch}`);
    t = createTrainer(config);
    meta = { features: o.features, featuresId: id, config: t.config(), run, epochsDone: 0, steps: 0, history: [] };
    if (run.centre) t.params().bias.set(featureMean(h, run.chunkRows));
  }
  const { resampleEvery, resampleInputs, chunkRows } = run, seed = meta.config.seed;
  for (let epoch = meta.epochsDone + 1; epoch <= o.epochs; epoch++) {
    const resample = resampleEvery > 0 && epoch % resampleEvery === 0 && epoch < o.epochs;
    const rand = rng(seed * 1_000_003 + epoch);
    // Resampling candidates come from the epoch's last resampleInputs rows.
    const collectFrom = resample ? Math.max(0, n - resampleInputs) : Infinity;
    let done = 0, started = false, last: SaeStats | undefined;
    for (const chunk of shuffledChunks(h, chunkRows, rand)) {
      const rows = chunk.ids.length;
      const split = Math.min(rows, Math.max(0, collectFrom - done));
      for (const [a, b] of [[0, split], [split, rows]] as const) {
        if (b <= a) continue;
        if (a >= collectFrom - done && !started) {
          t.resampleBegin();
          started = true;
        }
        const at = done + a;
        const progress = o.onProgress
          ? (x: number) => o.onProgress!({ epoch, epochs: o.epochs, rowsDone: at + x, rowsTotal: n, stats: t.lastStats() })
          : null;
        const r = await t.trainEpoch(chunk.data.subarray(a * d, b * d) as Features, b - a, batch, chunk.ids.subarray(a, b),
          { signal: o.signal, onProgress: progress ?? undefined }).catch((e: unknown) => {
          // The engine names the row of the file ("feature item 3 column 7 is NaN"); the file is ours to name.
          throw e instanceof ConceptLensError && e.code === 'ERR_NAN' ? new ConceptLensError('ERR_NAN', `${o.features}: ${e.message}`, { cause: e }) : e;
        });
        last = r.last;
      }
      done += rows;
    }
    const resampled = resample ? t.resampleApply().length : 0;
    meta.epochsDone = epoch;
    meta.steps = t.steps;
    meta.history.push({ ...(last ?? t.lastStats()), epoch, resampled });
    writeOutputs(t, o.out, meta);
  }
  return meta;
}

/** The dictionary as m atoms × d (rows), read from DIR/decoder.npy (d × m). */
export function readAtoms(dir: string): { atoms: Float32Array; m: number; d: number } {
  const a = readNpy(join(dir, 'decoder.npy'));
  if (a.shape.length !== 2 || a.dtype !== 'float32')
    throw fileError(join(dir, 'decoder.npy'), `expected a 2-D float32 array (d × m), got ${a.dtype} [${a.shape.join(', ')}]`);
  const [d, m] = a.shape;
  const dec = a.data as Float32Array;
  const atoms = new Float32Array(m * d);
  for (let c = 0; c < d; c++) for (let j = 0; j < m; j++) atoms[j * d + c] = dec[c * m + j];
  return { atoms, m, d };
}

/** The name given to one SAE concept by {@link nameConcepts}. */
export interface ConceptName {
  /** Latent (atom) index. */
  concept: number;
  /** Vocabulary entry whose text embedding is nearest the atom. */
  name: string;
  /** Cosine of the atom and the name's text embedding. */
  score: number;
}

/** name(j) = argmax over the vocabulary of cos(text embedding, decoder column j). */
export async function nameConcepts(dir: string, vocab: Float32Array | Uint16Array, names: string[],
  opts: { signal?: AbortSignal } = {}): Promise<ConceptName[]> {
  const { atoms, m, d } = readAtoms(dir);
  if (vocab.length !== names.length * d)
    throw new ConceptLensError('ERR_SHAPE', `vocabulary: ${vocab.length} values are not ${names.length} names × d = ${d} (the SAE's width); expected one embedding of width ${d} per name`);
  const r = await exactSearch(atoms, vocab, d, { k: 1, metric: 'cosine', signal: opts.signal });
  return Array.from({ length: m }, (_, j) => ({ concept: j, name: names[Number(r.ids[j])], score: r.scores[j] }));
}

/** Concept strengths f(x) (rows × m) of every row of a feature file. */
export async function conceptStrengths(t: SaeTrainer, features: string,
  opts: ProgressOptions & { batch?: number } = {}): Promise<{ data: Float32Array; rows: number; m: number }> {
  const h = featureHeader(features);
  const { d, m } = t.config();
  if (h.shape[1] !== d) throw new ConceptLensError('ERR_SHAPE', `${features}: d=${h.shape[1]}, the SAE expects d=${d}`);
  const x = readNpyRows(h, 0, h.shape[0]) as Features;
  const data = await t.encode(x, h.shape[0], opts.batch ?? 4096, opts);
  return { data, rows: h.shape[0], m };
}
