// SpLiCE (Bhalla et al., "Interpreting CLIP with Sparse Linear Concept
// Embeddings"): embeddings as sparse non-negative mixtures of concept
// directions. The batched solvers run in the native engine; this module holds
// the method around them (dictionary, centring, recomposition, interventions,
// dataset and class decompositions, names).
import { readFileSync } from 'node:fs';
import { native } from '../native.js';
import { withCancel, type ProgressOptions } from '../abort.js';
import { readNpy, type NdArray } from '../io/npy.js';
import { halvesToFloats } from '../io/fp16.js';

export type SpliceSolverName = 'auto' | 'fista' | 'admm' | 'ws';
export const SPLICE_SOLVERS: SpliceSolverName[] = ['auto', 'fista', 'admm', 'ws'];

export interface SolveOptions extends ProgressOptions {
  /** λ of ‖Cᵀw − z‖² + λ‖w‖₁ (SpLiCE's l1_penalty). */
  l1: number;
  solver?: SpliceSolverName;
  /** Relative duality gap (fista, ws) or residual bound (admm, as the reference). */
  tol?: number;
  maxIter?: number;
  rho?: number;
  /** n×c weights to start from (e.g. the solution at a nearby λ). */
  warm?: Float32Array;
  /** n×c buffer to write the weights into (reusing one avoids first-touch page faults on large outputs). */
  out?: Float32Array;
  /** 'cuda' runs the batched FISTA solver on the GPU (engine built with nvcc, a device present). */
  device?: 'cpu' | 'cuda';
}

export interface Decomposition {
  /** n×c non-negative weights, row-major. */
  weights: Float32Array;
  n: number;
  c: number;
  objective: Float64Array;
  gap: Float64Array;
  iterations: Int32Array;
}

export interface PathPoint {
  l1: number;
  meanL0: number;
  meanObjective: number;
}

export interface PathResult extends Decomposition {
  /** The λ whose mean l0 is closest to the target (its solution is `weights`). */
  l1: number;
  points: PathPoint[];
}

type Matrix = Float32Array | Uint16Array;
type NativeResult = Omit<Decomposition, 'n' | 'c'>;
type Progress = ((done: number, total: number) => void) | null;

interface SpliceNative {
  spliceDecompose(dict: Matrix, c: number, d: number, samples: Matrix, n: number, options: object,
    warm: Float32Array | null, onProgress: Progress, cancel: Int32Array | null): Promise<NativeResult>;
  splicePath(dict: Matrix, c: number, d: number, samples: Matrix, n: number, options: object,
    onProgress: Progress, cancel: Int32Array | null): Promise<NativeResult & { points: PathPoint[] }>;
}

const engine = () => native() as unknown as SpliceNative;

function rowsOf(m: Matrix, d: number, name: string): number {
  if (!Number.isInteger(d) || d < 1) throw new RangeError(`d: expected a positive integer, got ${d}`);
  if (m.length % d !== 0) throw new RangeError(`${name}: ${m.length} values are not a whole number of rows of d = ${d}`);
  return m.length / d;
}

function nativeOptions(o: SolveOptions): object {
  return { l1: o.l1, solver: o.solver ?? 'auto', tol: o.tol, maxIter: o.maxIter, rho: o.rho, out: o.out, device: o.device ?? 'cpu' };
}

/** Solves min_{w≥0} ‖Cᵀw − z‖² + λ‖w‖₁ for every row z of samples, exactly as given (no centring). */
export async function solveSplice(dictionary: Matrix, samples: Matrix, d: number, options: SolveOptions): Promise<Decomposition> {
  const c = rowsOf(dictionary, d, 'dictionary'), n = rowsOf(samples, d, 'samples');
  const r = await withCancel(options.signal, (flag) =>
    engine().spliceDecompose(dictionary, c, d, samples, n, nativeOptions(options), options.warm ?? null, options.onProgress ?? null, flag));
  return { ...r, n, c };
}

/** λ for a target mean l0: bisection on log λ with warm-started solves. */
export async function splicePath(dictionary: Matrix, samples: Matrix, d: number, targetL0: number,
  options: Omit<SolveOptions, 'l1' | 'warm' | 'out'> & { l0Tol?: number; maxSteps?: number } = {}): Promise<PathResult> {
  const c = rowsOf(dictionary, d, 'dictionary'), n = rowsOf(samples, d, 'samples');
  const opts = { ...nativeOptions({ ...options, l1: 0 }), targetL0, l0Tol: options.l0Tol, maxSteps: options.maxSteps };
  const r = await withCancel(options.signal, (flag) =>
    engine().splicePath(dictionary, c, d, samples, n, opts, options.onProgress ?? null, flag));
  const best = r.points.reduce((a, b) => (Math.abs(b.meanL0 - targetL0) < Math.abs(a.meanL0 - targetL0) ? b : a));
  return { ...r, n, c, l1: best.l1 };
}

// ---- vectors ----------------------------------------------------------------

export function toFloat32(m: Matrix | Float64Array): Float32Array {
  if (m instanceof Float32Array) return m;
  if (m instanceof Float64Array) return Float32Array.from(m);
  return halvesToFloats(m);
}

/** Row-wise L2 normalisation (a zero row stays zero), into a new array. */
export function normaliseRows(x: Float32Array, d: number, name = 'embeddings'): Float32Array {
  const n = rowsOf(x, d, name), out = new Float32Array(x.length);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let t = 0; t < d; t++) s += x[i * d + t] * x[i * d + t];
    if (!Number.isFinite(s)) throw new RangeError(`${name}: row ${i} is not finite`);
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let t = 0; t < d; t++) out[i * d + t] = x[i * d + t] * inv;
  }
  return out;
}

function subtractRow(x: Float32Array, mean: ArrayLike<number>, d: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let k = 0; k < x.length; k++) out[k] = x[k] - mean[k % d];
  return out;
}

function meanRow(x: Float32Array, d: number): Float64Array {
  const n = x.length / d, m = new Float64Array(d);
  for (let k = 0; k < x.length; k++) m[k % d] += x[k] / n;
  return m;
}

/** SpLiCE's concept dictionary: L2-normalise, subtract the mean concept, normalise again. */
export function buildDictionary(conceptEmbeddings: Matrix | Float64Array, d: number): Float32Array {
  const unit = normaliseRows(toFloat32(conceptEmbeddings), d, 'concept embeddings');
  return normaliseRows(subtractRow(unit, meanRow(unit, d), d), d, 'concept embeddings');
}

/** The last `size` concepts of a vocabulary file (least to most frequent), first ", " part of each line. */
export function readVocabulary(path: string, size?: number): string[] {
  const lines = readFileSync(path, 'utf8').split(/\r\n|\r|\n/);
  if (lines.at(-1) === '') lines.pop(); // a final newline does not start another concept
  const n = size ?? lines.length;
  if (!Number.isInteger(n) || n < 1 || n > lines.length)
    throw new RangeError(`vocabulary size: expected an integer in [1, ${lines.length}] (the lines of ${path}), got ${size}`);
  const first = lines.length - n, seen = new Map<string, number>();
  return lines.slice(first).map((line, k) => {
    const name = line.trim().split(', ')[0], lineNo = first + k + 1;
    if (name === '') throw new Error(`${path}: line ${lineNo} is empty (within the last ${n} lines); a concept needs a name`);
    const dup = seen.get(name);
    if (dup !== undefined) throw new Error(`${path}: line ${lineNo} repeats concept '${name}' of line ${dup}`);
    seen.set(name, lineNo);
    return name;
  });
}

export interface ConceptWeight {
  concept: string;
  index: number;
  weight: number;
}

export interface Encoded extends Decomposition {
  /** n×d recompositions ẑ = normalise(normalise(wC) + μ). */
  recon: Float32Array;
  l0: Int32Array;
  /** cosine(ẑ, normalise(embedding)). */
  cosine: Float64Array;
}

/** A SpLiCE model: concept names, their centred dictionary and the modality mean. */
export class SpliceModel {
  readonly c: number;

  constructor(readonly concepts: string[], readonly dictionary: Float32Array, readonly d: number,
    readonly imageMean: Float32Array, readonly solve: Omit<SolveOptions, 'warm'> = { l1: 0.25 }) {
    this.c = rowsOf(dictionary, d, 'dictionary');
    if (concepts.length !== this.c)
      throw new RangeError(`concepts: expected ${this.c} names (the dictionary's rows), got ${concepts.length}`);
    checkMean(imageMean, d, 'imageMean');
  }

  /** From raw concept embeddings (N×d, aligned with names) and the image mean; builds the dictionary. */
  static fromEmbeddings(concepts: string[], conceptEmbeddings: Matrix | Float64Array, d: number, imageMean: Matrix | Float64Array,
    solve?: Omit<SolveOptions, 'warm'>): SpliceModel {
    return new SpliceModel(concepts, buildDictionary(conceptEmbeddings, d), d, toFloat32(imageMean), solve);
  }

  /** From files: a vocabulary (its last `size` lines), the embeddings of those concepts (.npy, N×d) and the image mean (.npy). */
  static load(files: { vocabulary: string; size?: number; conceptEmbeddings: string; imageMean: string },
    solve?: Omit<SolveOptions, 'warm'>): SpliceModel {
    const concepts = readVocabulary(files.vocabulary, files.size);
    const emb = readNpy(files.conceptEmbeddings), mean = readNpy(files.imageMean);
    if (emb.shape.length !== 2 || emb.shape[0] !== concepts.length)
      throw new RangeError(`${files.conceptEmbeddings}: expected ${concepts.length}×d (one row per concept of ${files.vocabulary}), got shape [${emb.shape.join(', ')}]`);
    return SpliceModel.fromEmbeddings(concepts, floatData(emb, files.conceptEmbeddings), emb.shape[1], floatData(mean, files.imageMean), solve);
  }

  /** z_c = normalise(normalise(e) − μ) for each row. */
  centre(embeddings: Matrix, mean: Float32Array = this.imageMean): Float32Array {
    checkMean(mean, this.d, 'mean');
    return normaliseRows(subtractRow(normaliseRows(toFloat32(embeddings), this.d), mean, this.d), this.d);
  }

  /** Weights of the centred embeddings. */
  decompose(embeddings: Matrix, options: Partial<SolveOptions> = {}, mean?: Float32Array): Promise<Decomposition> {
    return solveSplice(this.dictionary, this.centre(embeddings, mean), this.d, { ...this.solve, ...options });
  }

  /** ẑ = normalise(normalise(wC) + μ), n×d. */
  recompose(weights: Float32Array, mean: Float32Array = this.imageMean): Float32Array {
    const n = rowsOf(weights, this.c, 'weights'), d = this.d, mix = new Float32Array(n * d);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < this.c; j++) {
        const w = weights[i * this.c + j];
        if (w === 0) continue;
        for (let t = 0; t < d; t++) mix[i * d + t] += w * this.dictionary[j * d + t];
      }
    return normaliseRows(subtractRow(normaliseRows(mix, d), mean.map((x) => -x), d), d);
  }

  /** Decomposition, recomposition, l0 and cosine(ẑ, normalise(e)). */
  async encode(embeddings: Matrix, options: Partial<SolveOptions> = {}, mean: Float32Array = this.imageMean): Promise<Encoded> {
    const dec = await this.decompose(embeddings, options, mean);
    const recon = this.recompose(dec.weights, mean);
    const unit = normaliseRows(toFloat32(embeddings), this.d);
    const l0 = new Int32Array(dec.n), cosine = new Float64Array(dec.n);
    for (let i = 0; i < dec.n; i++) {
      for (let j = 0; j < this.c; j++) l0[i] += dec.weights[i * this.c + j] > 0 ? 1 : 0;
      for (let t = 0; t < this.d; t++) cosine[i] += recon[i * this.d + t] * unit[i * this.d + t];
    }
    return { ...dec, recon, l0, cosine };
  }

  /** Zeroes the given concepts (indices or names) in a copy of the weights and recomposes. */
  intervene(weights: Float32Array, remove: (number | string)[], mean?: Float32Array): { weights: Float32Array; recon: Float32Array } {
    const idx = remove.map((r) => this.indexOf(r)), w = Float32Array.from(weights), n = w.length / this.c;
    for (let i = 0; i < n; i++) for (const j of idx) w[i * this.c + j] = 0;
    return { weights: w, recon: this.recompose(w, mean) };
  }

  /** Mean weights over a dataset of images. */
  async decomposeDataset(embeddings: Matrix, options: Partial<SolveOptions> = {}): Promise<Float64Array> {
    const dec = await this.decompose(embeddings, options);
    return meanRow(dec.weights, this.c);
  }

  /** Mean weights per class label (labels[i] is the class of image i). */
  async decomposeClasses(embeddings: Matrix, labels: ArrayLike<number>, options: Partial<SolveOptions> = {}): Promise<Map<number, Float64Array>> {
    const dec = await this.decompose(embeddings, options);
    if (labels.length !== dec.n) throw new RangeError(`labels: expected ${dec.n} (one per image), got ${labels.length}`);
    const sums = new Map<number, { w: Float64Array; count: number }>();
    for (let i = 0; i < dec.n; i++) {
      const s = sums.get(labels[i]) ?? { w: new Float64Array(this.c), count: 0 };
      for (let j = 0; j < this.c; j++) s.w[j] += dec.weights[i * this.c + j];
      s.count++;
      sums.set(labels[i], s);
    }
    return new Map([...sums].sort((a, b) => a[0] - b[0]).map(([k, s]) => [k, s.w.map((x) => x / s.count)]));
  }

  /** Text decomposition: text embeddings centred on the text mean instead of the image mean. */
  decomposeText(textEmbeddings: Matrix, textMean: Float32Array, options: Partial<SolveOptions> = {}): Promise<Encoded> {
    return this.encode(textEmbeddings, options, textMean);
  }

  /** Non-zero concepts of one weight row, heaviest first. */
  topConcepts(weights: ArrayLike<number>, k = 10): ConceptWeight[] {
    if (weights.length !== this.c) throw new RangeError(`weights: expected one row of ${this.c}, got ${weights.length} values`);
    const out: ConceptWeight[] = [];
    for (let j = 0; j < this.c; j++) if (weights[j] > 0) out.push({ concept: this.concepts[j], index: j, weight: weights[j] });
    return out.sort((a, b) => b.weight - a.weight).slice(0, k);
  }

  indexOf(concept: number | string): number {
    const j = typeof concept === 'number' ? concept : this.concepts.indexOf(concept);
    if (!Number.isInteger(j) || j < 0 || j >= this.c) throw new RangeError(`concept: expected a name in the vocabulary or an index in [0, ${this.c}), got ${concept}`);
    return j;
  }
}

function checkMean(mean: ArrayLike<number>, d: number, name: string): void {
  if (mean.length !== d) throw new RangeError(`${name}: expected ${d} values (the embedding dimension), got ${mean.length}`);
}

/** The values of a float .npy array (fp16 as its bits); names the file and dtype otherwise. */
export function floatData(a: NdArray, path = 'array'): Float32Array | Uint16Array | Float64Array {
  if (a.dtype === 'float32' || a.dtype === 'float16' || a.dtype === 'float64') return a.data as Float32Array | Uint16Array | Float64Array;
  throw new TypeError(`${path}: expected float32, float16 or float64 data, got ${a.dtype}`);
}
