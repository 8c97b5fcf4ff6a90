// SpLiCE (Bhalla et al., "Interpreting CLIP with Sparse Linear Concept
// Embeddings"): embeddings as sparse non-negative mixtures of concept
// directions. The batched solvers run in the native engine; this module holds
// the method around them (dictionary, centring, recomposition, interventions,
// dataset and class decompositions, names).
import type { ProgressOptions } from '../abort.js';
import { checkSpliceOptions, splicePath as nativePath, spliceDecompose } from '../engine/splice.js';
import { argError, ConceptLensError, requireOptions } from '../errors.js';
import { readFloatMatrix, readVector } from '../io/matrix.js';
import { readText, splitLines } from '../io/text.js';
import { requireMemory } from '../memory.js';
import { normaliseRows, requireArray, rowsOf, toFloat32, type FloatData, type FloatRows, type Mat } from '../matrix.js';

/**
 * SpLiCE solver: 'ws' (working sets solved exactly, the default that 'auto' picks on the CPU), 'fista' (FISTA with
 * adaptive restart) or 'admm' (the reference's ADMM). All report the same objective and duality gap.
 */
export type SpliceSolverName = 'auto' | 'fista' | 'admm' | 'ws';
/** Every {@link SpliceSolverName}, for option parsing and help text. */
export const SPLICE_SOLVERS: SpliceSolverName[] = ['auto', 'fista', 'admm', 'ws'];

/** Options of {@link solveSplice} and the {@link SpliceModel} decompositions; the engine checks them (ERR_ARG). */
export interface SolveOptions extends ProgressOptions {
  /** λ of ‖Cᵀw − z‖² + λ‖w‖₁ (SpLiCE's l1_penalty). */
  l1: number;
  /** Solver (default 'auto'). */
  solver?: SpliceSolverName;
  /** Relative duality gap (fista, ws) or residual bound (admm, as the reference); default 1e-6. */
  tol?: number;
  /** Iteration cap per sample (default per solver: fista 20,000 iterations, admm 2,000, ws 200 rounds). */
  maxIter?: number;
  /** ADMM penalty ρ (default 5, as the reference). */
  rho?: number;
  /** n×c weights to start from (e.g. the solution at a nearby λ). */
  warm?: Float32Array;
  /** n×c buffer to write the weights into (reusing one avoids first-touch page faults on large outputs). */
  out?: Float32Array;
  /** 'cuda' runs the batched FISTA solver on the GPU (engine built with nvcc, a device present). */
  device?: 'cpu' | 'cuda';
}

/** SpLiCE weights of n samples over c concepts, with each sample's optimality certificate. */
export interface Decomposition {
  /** n×c non-negative weights, row-major. */
  weights: Float32Array;
  /** Samples (rows). */
  n: number;
  /** Concepts (columns). */
  c: number;
  /** ‖Cᵀw − z‖² + λ‖w‖₁ per sample. */
  objective: Float64Array;
  /** Duality gap per sample (an upper bound on objective − optimum). */
  gap: Float64Array;
  /** Iterations (fista, admm) or working-set rounds (ws) per sample. */
  iterations: Int32Array;
}

/** One λ tried by the path: its mean l0 and mean objective over the samples. */
export interface PathPoint {
  l1: number;
  meanL0: number;
  meanObjective: number;
}

/** Result of {@link splicePath}: the solution at the chosen λ and every λ tried. */
export interface PathResult extends Decomposition {
  /** The λ whose mean l0 is closest to the target (its solution is `weights`). */
  l1: number;
  /** Every λ tried, in order. */
  points: PathPoint[];
  /**
   * Whether that λ's mean l0 is within `l0Tol` of the target. False when the bisection ran out of steps, or the
   * target lies outside the mean l0 of λ in [10⁻⁴·λ_max, λ_max].
   */
  reached: boolean;
}


/** The engine's options (it checks them: λ, tolerances, solver names). */
function nativeOptions(o: SolveOptions) {
  return { l1: o.l1, solver: o.solver ?? 'auto', tol: o.tol, maxIter: o.maxIter, rho: o.rho, out: o.out, device: o.device ?? 'cpu' };
}

/** Solves min_{w≥0} ‖Cᵀw − z‖² + λ‖w‖₁ for every row z of samples, exactly as given (no centring). */
export async function solveSplice(dictionary: FloatRows, samples: FloatRows, d: number, options: SolveOptions): Promise<Decomposition> {
  requireOptions(options, 'l1');
  const c = rowsOf(dictionary, d, 'dictionary'), n = rowsOf(samples, d, 'samples');
  if (c === 0) throw new ConceptLensError('ERR_SHAPE', 'dictionary: has 0 rows; expected at least one concept');
  if (!options.out) requireMemory(4 * n * c, `the ${n} × ${c} weights of this decomposition`);
  const r = await spliceDecompose(dictionary, c, d, samples, n, nativeOptions(options), options.warm ?? null, options);
  return { ...r, n, c };
}

/** λ for a target mean l0: bisection on log λ with warm-started solves. */
export async function splicePath(dictionary: FloatRows, samples: FloatRows, d: number, targetL0: number,
  options: Omit<SolveOptions, 'l1' | 'warm' | 'out'> & { l0Tol?: number; maxSteps?: number } = {}): Promise<PathResult> {
  const c = rowsOf(dictionary, d, 'dictionary'), n = rowsOf(samples, d, 'samples');
  if (c === 0) throw new ConceptLensError('ERR_SHAPE', 'dictionary: has 0 rows; expected at least one concept');
  if (n === 0) throw new ConceptLensError('ERR_SHAPE', 'samples: has 0 rows; a path needs at least one sample');
  // A lasso solution in general position keeps at most d of its c atoms (Tibshirani 2013): no λ reaches more.
  const most = Math.min(c, d);
  if (!(Number.isFinite(targetL0) && targetL0 > 0 && targetL0 <= most))
    throw argError('targetL0', `a number in (0, ${most}] (a decomposition of ${d}-dimensional embeddings over ${c} concepts keeps at most ${most})`, targetL0);
  const opts = { ...nativeOptions({ ...options, l1: 0 }), targetL0, l0Tol: options.l0Tol, maxSteps: options.maxSteps };
  const r = await nativePath(dictionary, c, d, samples, n, opts, options);
  const best = r.points.reduce((a, b) => (Math.abs(b.meanL0 - targetL0) < Math.abs(a.meanL0 - targetL0) ? b : a));
  return { ...r, n, c, l1: best.l1, reached: Math.abs(best.meanL0 - targetL0) <= (options.l0Tol ?? 0.5) };
}

// ---- vectors ----------------------------------------------------------------

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

/** SpLiCE's centring of embeddings: z_c = normalise(normalise(e) − μ) per row (a zero embedding is an error). */
export function centreEmbeddings(embeddings: FloatData, mean: ArrayLike<number>, d: number): Float32Array {
  checkMean(mean, d, 'mean');
  const unit = normaliseRows(toFloat32(embeddings), d, { zeroRows: 'error' });
  return normaliseRows(subtractRow(unit, mean, d), d, { inPlace: true });
}

/** The weights' recompositions: wC, or SpLiCE's ẑ = normalise(normalise(wC) + μ) when a mean is given (n × d). */
export function recompose(weights: Float32Array, dictionary: Float32Array, d: number, mean?: ArrayLike<number>): Float32Array {
  const c = rowsOf(dictionary, d, 'dictionary'), n = rowsOf(weights, c, 'weights'), mix = new Float32Array(n * d);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < c; j++) {
      const w = weights[i * c + j];
      if (w === 0) continue;
      for (let t = 0; t < d; t++) mix[i * d + t] += w * dictionary[j * d + t];
    }
  if (!mean) return mix;
  checkMean(mean, d, 'mean');
  return normaliseRows(subtractRow(normaliseRows(mix, d, { inPlace: true }), Array.from(mean, (x) => -x), d), d, { inPlace: true });
}

/** Quality of a decomposition, from {@link quality}. */
export interface Quality {
  /** n × d recompositions (see recompose). */
  recon: Float32Array;
  /** Non-zero weights per row. */
  l0: Int32Array;
  /** cosine(recomposition, target) per row. */
  cosine: Float64Array;
}

/** How well the weights explain the targets (n × d, any scale): l0 and the cosine of each recomposition. */
export function quality(weights: Float32Array, dictionary: Float32Array, d: number, targets: Float32Array, mean?: ArrayLike<number>): Quality {
  const recon = recompose(weights, dictionary, d, mean), c = dictionary.length / d, n = weights.length / c;
  if (targets.length !== n * d)
    throw new ConceptLensError('ERR_SHAPE', `targets: expected ${n}×${d} = ${n * d} values (one row per row of weights), got ${targets.length}`);
  const l0 = new Int32Array(n), cosine = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < c; j++) l0[i] += weights[i * c + j] > 0 ? 1 : 0;
    let dot = 0, rr = 0, tt = 0;
    for (let t = 0; t < d; t++) {
      const r = recon[i * d + t], z = targets[i * d + t];
      dot += r * z, rr += r * r, tt += z * z;
    }
    cosine[i] = rr > 0 && tt > 0 ? dot / Math.sqrt(rr * tt) : 0;
  }
  return { recon, l0, cosine };
}

/** SpLiCE's concept dictionary: L2-normalise, subtract the mean concept, normalise again. */
export function buildDictionary(conceptEmbeddings: FloatData, d: number): Float32Array {
  const name = 'concept embeddings';
  const c = rowsOf(conceptEmbeddings, d, name);
  if (c === 0) throw new ConceptLensError('ERR_SHAPE', `${name}: has 0 rows; expected at least one concept`);
  const unit = normaliseRows(toFloat32(conceptEmbeddings), d, { name, zeroRows: 'error' });
  return normaliseRows(subtractRow(unit, meanRow(unit, d), d), d, { name });
}

/** The problem SpLiCE solves for some embeddings: as given (raw), or its centred dictionary and samples. */
export interface SpliceProblem {
  dictionary: Float32Array;
  samples: Float32Array;
  d: number;
  /** The embeddings the cosines are measured against. */
  target: Float32Array;
  /** The modality mean added back in recompositions (none when raw). */
  mean?: Float32Array;
}

/** A raw decomposition solves on the embeddings as given: a mean would be silently unused, so it is refused. */
export function requireNoMeanWhenRaw(o: { raw?: boolean; mean?: unknown }): void {
  if (o.raw && o.mean) throw new ConceptLensError('ERR_ARG', 'image mean: a raw decomposition solves on the embeddings as given, so it takes no mean');
}

/**
 * SpLiCE's problem for embeddings z (n × d) over concept embeddings: raw solves on both as given; otherwise the
 * centred dictionary and samples, centred on `mean` (default zero: only normalised), as `splice decompose` does.
 */
export function spliceProblem(concepts: Mat, z: Float32Array, o: { raw?: boolean; mean?: Float32Array }): SpliceProblem {
  const d = concepts.cols;
  requireNoMeanWhenRaw(o);
  if (o.raw) return { dictionary: concepts.data, samples: z, d, target: z };
  const mean = o.mean ?? new Float32Array(d);
  return { dictionary: buildDictionary(concepts.data, d), samples: centreEmbeddings(z, mean, d), d, target: z, mean };
}

/** Columns of {@link sampleStats}. */
const STATS = 4;

/** Each sample's objective, duality gap, l0 and cosine(recomposition, embedding): n rows of 4 float64s. */
export function sampleStats(p: SpliceProblem, dec: Decomposition): Float64Array {
  const q = quality(dec.weights, p.dictionary, p.d, p.target, p.mean), out = new Float64Array(dec.n * STATS);
  for (let i = 0, j = 0; i < dec.n; i++, j += STATS) out[j] = dec.objective[i], out[j + 1] = dec.gap[i], out[j + 2] = q.l0[i], out[j + 3] = q.cosine[i];
  return out;
}

/** Means over all samples of a decomposition run. */
export interface SpliceMeans {
  meanObjective: number;
  meanGap: number;
  meanL0: number;
  meanCosine: number;
}

/**
 * Means of n samples' {@link sampleStats}, given in row order in one or more parts: summed in that order, so
 * a run solved in parts reports the whole run's means bit for bit.
 */
export function meanStats(parts: Iterable<Float64Array>, n: number): SpliceMeans {
  const sums = new Float64Array(STATS);
  for (const s of parts) for (let i = 0; i < s.length; i++) sums[i % STATS] += s[i];
  const m = (k: number) => sums[k] / Math.max(1, n);
  return { meanObjective: m(0), meanGap: m(1), meanL0: m(2), meanCosine: m(3) };
}

/**
 * The last `size` concepts of a vocabulary file (least to most frequent), first ", " part of each line. `sizeName`:
 * the option that gave the size, for its error.
 */
export function readVocabulary(path: string, size?: number, sizeName = 'size'): string[] {
  const lines = splitLines(readText(path));
  const n = size ?? lines.length;
  if (!Number.isInteger(n) || n < 1 || n > lines.length)
    throw argError(sizeName, `an integer in [1, ${lines.length}] (the lines of ${path})`, size);
  const first = lines.length - n, seen = new Map<string, number>();
  return lines.slice(first).map((line, k) => {
    const name = line.trim().split(', ')[0], lineNo = first + k + 1;
    if (name === '') throw new ConceptLensError('ERR_FILE', `${path}: line ${lineNo} is empty (within the last ${n} lines); a concept needs a name`);
    const dup = seen.get(name);
    if (dup !== undefined) throw new ConceptLensError('ERR_FILE', `${path}: line ${lineNo} repeats concept '${name}' of line ${dup}`);
    seen.set(name, lineNo);
    return name;
  });
}

/** One non-zero concept of a decomposition, from {@link SpliceModel.topConcepts}. */
export interface ConceptWeight {
  /** Concept name. */
  concept: string;
  /** Row of the concept in the dictionary. */
  index: number;
  /** Its (positive) weight. */
  weight: number;
}

/** A decomposition with its recompositions and quality, from {@link SpliceModel.encode}. */
export interface Encoded extends Decomposition {
  /** n×d recompositions ẑ = normalise(normalise(wC) + μ). */
  recon: Float32Array;
  /** Non-zero weights per row. */
  l0: Int32Array;
  /** cosine(ẑ, normalise(embedding)). */
  cosine: Float64Array;
}

/** A SpLiCE model: concept names, their centred dictionary and the modality mean. */
export class SpliceModel {
  readonly c: number;

  constructor(readonly concepts: string[], readonly dictionary: Float32Array, readonly d: number,
    readonly imageMean: Float32Array, readonly solve: Omit<SolveOptions, 'warm'> = { l1: 0.25 }) {
    this.c = rowsOf(requireArray(dictionary, Float32Array, 'dictionary'), d, 'dictionary');
    if (concepts.length !== this.c)
      throw new ConceptLensError('ERR_SHAPE', `concepts: expected ${this.c} names (the dictionary's rows), got ${concepts.length}`);
    checkMean(imageMean, d, 'imageMean');
    checkSpliceOptions(nativeOptions(solve));  // a bad λ fails here, not at the first decompose
  }

  /** From raw concept embeddings (N×d, aligned with names) and the image mean; builds the dictionary. */
  static fromEmbeddings(concepts: string[], conceptEmbeddings: FloatData, d: number, imageMean: FloatData,
    solve?: Omit<SolveOptions, 'warm'>): SpliceModel {
    return new SpliceModel(concepts, buildDictionary(conceptEmbeddings, d), d, toFloat32(imageMean), solve);
  }

  /** From files: a vocabulary (its last `size` lines), the embeddings of those concepts (.npy, N×d) and the image mean (.npy). */
  static load(files: { vocabulary: string; size?: number; conceptEmbeddings: string; imageMean: string },
    solve?: Omit<SolveOptions, 'warm'>): SpliceModel {
    const concepts = readVocabulary(files.vocabulary, files.size);
    const emb = readFloatMatrix(files.conceptEmbeddings, { what: 'concept embeddings', rows: concepts.length, rowsFrom: `one per concept of ${files.vocabulary}` });
    const mean = readVector(files.imageMean, { what: 'image mean', length: emb.cols, lengthFrom: `the width of ${files.conceptEmbeddings}` });
    return SpliceModel.fromEmbeddings(concepts, emb.data as FloatData, emb.cols, mean, solve);
  }

  /** z_c = normalise(normalise(e) − μ) for each row. */
  centre(embeddings: FloatRows, mean: Float32Array = this.imageMean): Float32Array {
    return centreEmbeddings(embeddings, mean, this.d);
  }

  /** Weights of the centred embeddings. */
  decompose(embeddings: FloatRows, options: Partial<SolveOptions> = {}, mean?: Float32Array): Promise<Decomposition> {
    return solveSplice(this.dictionary, this.centre(embeddings, mean), this.d, { ...this.solve, ...options });
  }

  /** ẑ = normalise(normalise(wC) + μ), n×d. */
  recompose(weights: Float32Array, mean: Float32Array = this.imageMean): Float32Array {
    return recompose(weights, this.dictionary, this.d, mean);
  }

  /** Decomposition, recomposition, l0 and cosine(ẑ, normalise(e)). */
  async encode(embeddings: FloatRows, options: Partial<SolveOptions> = {}, mean: Float32Array = this.imageMean): Promise<Encoded> {
    const dec = await this.decompose(embeddings, options, mean);
    return { ...dec, ...quality(dec.weights, this.dictionary, this.d, toFloat32(embeddings), mean) };
  }

  /** Zeroes the given concepts (indices or names) in a copy of the weights and recomposes. */
  intervene(weights: Float32Array, remove: (number | string)[], mean?: Float32Array): { weights: Float32Array; recon: Float32Array } {
    const idx = remove.map((r) => this.indexOf(r)), w = Float32Array.from(weights), n = w.length / this.c;
    for (let i = 0; i < n; i++) for (const j of idx) w[i * this.c + j] = 0;
    return { weights: w, recon: this.recompose(w, mean) };
  }

  /** Mean weights over a dataset of images. */
  async decomposeDataset(embeddings: FloatRows, options: Partial<SolveOptions> = {}): Promise<Float64Array> {
    const dec = await this.decompose(embeddings, options);
    return meanRow(dec.weights, this.c);
  }

  /** Mean weights per class label (labels[i] is the class of image i). */
  async decomposeClasses(embeddings: FloatRows, labels: ArrayLike<number>, options: Partial<SolveOptions> = {}): Promise<Map<number, Float64Array>> {
    const dec = await this.decompose(embeddings, options);
    if (labels.length !== dec.n) throw new ConceptLensError('ERR_SHAPE', `labels: expected ${dec.n} (one per image), got ${labels.length}`);
    for (let i = 0; i < labels.length; i++)
      if (!Number.isInteger(labels[i])) throw argError(`labels[${i}]`, 'an integer class label', labels[i]);
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
  decomposeText(textEmbeddings: FloatRows, textMean: Float32Array, options: Partial<SolveOptions> = {}): Promise<Encoded> {
    return this.encode(textEmbeddings, options, textMean);
  }

  /**
   * The k heaviest non-zero concepts of one weight row, heaviest first.
   * @throws ConceptLensError ERR_ARG when k is not an integer >= 0 (slice would read −1 as "all but the last").
   */
  topConcepts(weights: ArrayLike<number>, k = 10): ConceptWeight[] {
    if (!(Number.isInteger(k) && k >= 0)) throw argError('k', 'an integer >= 0 (concepts to list)', k);
    if (weights.length !== this.c) throw new ConceptLensError('ERR_SHAPE', `weights: expected one row of ${this.c}, got ${weights.length} values`);
    const out: ConceptWeight[] = [];
    for (let j = 0; j < this.c; j++) if (weights[j] > 0) out.push({ concept: this.concepts[j], index: j, weight: weights[j] });
    return out.sort((a, b) => b.weight - a.weight).slice(0, k);
  }

  /**
   * Row of a concept given by name or index.
   * @throws ConceptLensError ERR_ARG when the name is not in the vocabulary, names two rows, or the index is out of range.
   */
  indexOf(concept: number | string): number {
    const j = typeof concept === 'number' ? concept : this.concepts.indexOf(concept);
    if (!Number.isInteger(j) || j < 0 || j >= this.c) throw argError('concept', `a name in the vocabulary or an index in [0, ${this.c})`, concept);
    // A repeated name would stand for its first row only (intervene would leave the other in place).
    const again = typeof concept === 'string' ? this.concepts.indexOf(concept, j + 1) : -1;
    if (again >= 0)
      throw new ConceptLensError('ERR_ARG', `concept: '${concept}' names rows ${j} and ${again}; a name looked up must be unique: rename one, or give the index`);
    return j;
  }
}

function checkMean(mean: ArrayLike<number>, d: number, name: string): void {
  if (mean.length !== d) throw new ConceptLensError('ERR_SHAPE', `${name}: expected ${d} values (the embedding dimension), got ${mean.length}`);
  for (let i = 0; i < d; i++) if (!Number.isFinite(mean[i])) throw new ConceptLensError('ERR_NAN', `${name}: value ${i} is ${mean[i]}; expected finite values`);
}
