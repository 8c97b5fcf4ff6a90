// Discover-then-Name (Rao et al., ECCV 2024): a sparse autoencoder trained
// natively over features streamed from a .npy file, concept naming against a
// text vocabulary, and the files other tools read (decoder.npy, encoder.npy).
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { native } from '../native.js';
import { withCancel } from '../abort.js';
import { writeFileAtomic } from '../io/atomic.js';
import { readNpy, readNpyHeader, readNpyRows, writeNpy, type NpyHeader } from '../io/npy.js';
import { exactSearch } from '../retrieval/exact.js';
import { halvesToFloats } from '../io/fp16.js';
import { rng } from '../random.js';

export type SaeKind = 'relu-l1' | 'topk' | 'batchtopk';

export interface SaeConfig {
  d: number;
  m: number;
  kind?: SaeKind;
  /** Active latents per item (topk, batchtopk). */
  k?: number;
  l1?: number;
  lr?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Weight of the dead-latent auxiliary loss (topk kinds). */
  auxCoef?: number;
  auxK?: number;
  /** Steps without firing after which a latent feeds the auxiliary loss. */
  deadSteps?: number;
  seed?: number;
  /** ReLU-L1 uses sparse kernels while the active fraction is below this. */
  sparseBelow?: number;
}

export interface SaeStats {
  step: number;
  loss: number;
  mse: number;
  aux: number;
  l0: number;
  /** Fraction of variance unexplained. */
  fvu: number;
  /** Latents not fired since the last resample. */
  dead: number;
  deadFraction: number;
  sparse: boolean;
}

type Progress = ((done: number, total: number) => void) | null;
type Features = Float32Array | Uint16Array;

export interface NativeSaeTrainer {
  step(batch: Features, rows: number, itemIds: Float64Array | null): Promise<SaeStats>;
  trainEpoch(data: Features, rows: number, batch: number, itemIds: Float64Array | null, onProgress: Progress,
    cancel: Int32Array | null): Promise<SaeStats & { steps: number; last: SaeStats }>;
  encode(data: Features, rows: number, batch: number, onProgress: Progress, cancel: Int32Array | null): Promise<Float32Array>;
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

interface SaeNative {
  SaeTrainer: new (config: SaeConfig) => NativeSaeTrainer;
  readSaeConfig(path: string): Required<SaeConfig>;
}

const sae = () => native() as unknown as SaeNative;

export const CHECKPOINT = 'sae.ckpt';
export const META = 'sae.json';

export function createTrainer(config: SaeConfig): NativeSaeTrainer {
  return new (sae().SaeTrainer)(config);
}

/** A trainer restored from DIR/sae.ckpt (its own shape and hyperparameters). */
export function loadTrainer(dir: string): NativeSaeTrainer {
  const path = join(dir, CHECKPOINT);
  if (!existsSync(path)) throw new Error(`${dir}: no SAE checkpoint (${CHECKPOINT}); train one with \`conceptlens sae train --out ${dir}\``);
  const t = createTrainer(sae().readSaeConfig(path));
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
    throw new Error(`${path}: expected a 2-D float32 or float16 array (items × d), got ${h.dtype} of shape [${h.shape.join(', ')}]`);
  return h;
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

export interface TrainProgress {
  epoch: number;
  epochs: number;
  rowsDone: number;
  rowsTotal: number;
  stats: SaeStats;
}

export interface TrainOptions {
  features: string;
  out: string;
  expansion?: number;
  kind?: SaeKind;
  k?: number;
  l1?: number;
  lr?: number;
  batch?: number;
  epochs: number;
  seed?: number;
  /** Dead-latent resampling after every this many epochs (0: never). */
  resampleEvery?: number;
  /** Inputs at the end of a resampling epoch that candidates are drawn from. */
  resampleInputs?: number;
  /** Rows held in memory at once (shuffle window). */
  chunkRows?: number;
  /** Continue from DIR/sae.ckpt when present. */
  resume?: boolean;
  /**
   * Start the tied bias b at the feature mean instead of 0 (input mean
   * centring): raw features share a large mean direction that otherwise
   * dominates x − b early on and every resampled atom.
   */
  centre?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: TrainProgress) => void;
  /** Extra trainer settings (auxK, deadSteps, sparseBelow, ...). */
  trainer?: Partial<SaeConfig>;
}

export interface TrainMeta {
  features: string;
  config: Required<SaeConfig>;
  epochsDone: number;
  steps: number;
  history: Array<SaeStats & { epoch: number; resampled: number }>;
}

export function readMeta(dir: string): TrainMeta {
  const p = join(dir, META);
  if (!existsSync(p)) throw new Error(`${dir}: no ${META}; not an SAE training directory`);
  return JSON.parse(readFileSync(p, 'utf8')) as TrainMeta;
}

/** Checkpoint, dictionary files and metadata: each written atomically. */
export function writeOutputs(t: NativeSaeTrainer, dir: string, meta: TrainMeta): void {
  mkdirSync(dir, { recursive: true });
  t.save(join(dir, CHECKPOINT));
  const { d, m } = t.config();
  const p = t.params();
  const dec = new Float32Array(d * m);  // d × m: column j = atom j
  for (let j = 0; j < m; j++) for (let c = 0; c < d; c++) dec[c * m + j] = p.decoder[j * d + c];
  writeNpy(join(dir, 'decoder.npy'), dec, [d, m]);
  writeNpy(join(dir, 'encoder.npy'), p.encoder.slice(), [m, d]);
  writeNpy(join(dir, 'encoder_bias.npy'), p.encoderBias.slice(), [m]);
  writeNpy(join(dir, 'bias.npy'), p.bias.slice(), [d]);
  writeFileAtomic(join(dir, META), JSON.stringify(meta, null, 1));
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

/** Trains (or resumes) an SAE over a feature file; returns the metadata written to DIR/sae.json. */
export async function trainSae(o: TrainOptions): Promise<TrainMeta> {
  const h = featureHeader(o.features);
  const [n, d] = h.shape;
  const batch = o.batch ?? 4096, resampleEvery = o.resampleEvery ?? 10, resampleInputs = o.resampleInputs ?? 819_200;
  const chunkRows = Math.max(batch, Math.floor((o.chunkRows ?? Math.floor(2 ** 29 / (d * 4))) / batch) * batch);
  const seed = o.seed ?? 0;
  let t: NativeSaeTrainer;
  let meta: TrainMeta;
  if (o.resume && existsSync(join(o.out, CHECKPOINT))) {
    t = loadTrainer(o.out);
    meta = readMeta(o.out);
    if (t.config().d !== d) throw new Error(`${o.features}: d=${d}, but the checkpoint in ${o.out} has d=${t.config().d}`);
  } else {
    t = createTrainer({ ...o.trainer, d, m: (o.expansion ?? 8) * d, kind: o.kind, k: o.k, l1: o.l1, lr: o.lr, seed });
    meta = { features: o.features, config: t.config(), epochsDone: 0, steps: 0, history: [] };
    if (o.centre) t.params().bias.set(featureMean(h, chunkRows));
  }
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
        const r = await withCancel(o.signal, (flag) =>
          t.trainEpoch(chunk.data.subarray(a * d, b * d) as Features, b - a, batch, chunk.ids.subarray(a, b), progress, flag));
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
    throw new Error(`${join(dir, 'decoder.npy')}: expected a 2-D float32 array (d × m), got ${a.dtype} [${a.shape.join(', ')}]`);
  const [d, m] = a.shape;
  const dec = a.data as Float32Array;
  const atoms = new Float32Array(m * d);
  for (let c = 0; c < d; c++) for (let j = 0; j < m; j++) atoms[j * d + c] = dec[c * m + j];
  return { atoms, m, d };
}

export interface ConceptName {
  concept: number;
  name: string;
  /** Cosine of the atom and the name's text embedding. */
  score: number;
}

/** name(j) = argmax over the vocabulary of cos(text embedding, decoder column j). */
export async function nameConcepts(dir: string, vocab: Float32Array | Uint16Array, names: string[],
  opts: { signal?: AbortSignal } = {}): Promise<ConceptName[]> {
  const { atoms, m, d } = readAtoms(dir);
  if (vocab.length !== names.length * d)
    throw new Error(`vocabulary: ${vocab.length / d} embeddings of d=${d} for ${names.length} names; expected one embedding per name`);
  const r = await exactSearch(atoms, vocab, d, { k: 1, metric: 'cosine', signal: opts.signal });
  return Array.from({ length: m }, (_, j) => ({ concept: j, name: names[Number(r.ids[j])], score: r.scores[j] }));
}

/** Concept strengths f(x) (rows × m) of every row of a feature file. */
export async function conceptStrengths(t: NativeSaeTrainer, features: string,
  opts: { batch?: number; signal?: AbortSignal; onProgress?: (done: number, total: number) => void } = {}): Promise<{ data: Float32Array; rows: number; m: number }> {
  const h = featureHeader(features);
  const { d, m } = t.config();
  if (h.shape[1] !== d) throw new Error(`${features}: d=${h.shape[1]}, the SAE expects d=${d}`);
  const x = readNpyRows(h, 0, h.shape[0]) as Features;
  const data = await withCancel(opts.signal, (flag) => t.encode(x, h.shape[0], opts.batch ?? 4096, opts.onProgress ?? null, flag));
  return { data, rows: h.shape[0], m };
}
