// LE's explanations: the elastic-net ranking of concepts per neuron, then a
// greedy search over the best-ranked ones scored by validation correlation.
import { throttled, throwIfAborted } from '../../abort.js';
import { argError, ConceptLensError, requireInteger } from '../../errors.js';
import type { Mat } from '../../matrix.js';
import { uniqueNames } from '../../io/text.js';
import { filterConcepts } from './concepts.js';
import type { Explanation } from './csv.js';
import { fitElasticNet, type GlmOptions } from './glm.js';
import { checkSamples } from './simulate.js';
import { validateSplit, type Split } from './splits.js';
import { column, mean, pearson, standardisedRows, std } from './stats.js';

/** Per neuron, concept indices by descending elastic-net weight (ties by index). */
export async function rankConcepts(P: Mat, A: Mat, train: Int32Array, opts: GlmOptions = {}): Promise<Int32Array[]> {
  const fit = await fitElasticNet(standardisedRows(P, train), standardisedRows(A, train), opts);
  return Array.from({ length: A.cols }, (_, u) => {
    const w = fit.weights.subarray(u * P.cols, (u + 1) * P.cols);
    return Int32Array.from(w.keys()).sort((a, b) => w[b] - w[a] || a - b);
  });
}

/**
 * Least squares with intercept on a few concept columns, from cached column
 * sums and cross products over the training rows (the greedy search refits
 * many overlapping subsets of one candidate pool).
 */
class SubsetFitter {
  private cols = new Map<number, Float64Array>();
  private dots = new Map<string, number>();
  constructor(private P: Mat, private train: Int32Array, private y: Float64Array) {}

  private col(k: number): Float64Array {
    let c = this.cols.get(k);
    if (!c) this.cols.set(k, (c = column(this.P, k, this.train)));
    return c;
  }

  /** Σ_i u_i v_i with -1 standing for the constant column and -2 for y. */
  private dot(a: number, b: number): number {
    const key = a < b ? `${a},${b}` : `${b},${a}`;
    let v = this.dots.get(key);
    if (v === undefined) {
      const u = a === -1 ? null : a === -2 ? this.y : this.col(a), w = b === -1 ? null : b === -2 ? this.y : this.col(b);
      v = 0;
      for (let i = 0; i < this.train.length; i++) v += (u ? u[i] : 1) * (w ? w[i] : 1);
      this.dots.set(key, v);
    }
    return v;
  }

  /** [bias, w_1 … w_k] minimising ‖y − b − Σ w_t x_t‖². */
  fit(concepts: number[]): Float64Array {
    const idx = [-1, ...concepts];
    const M = idx.map((a) => idx.map((b) => this.dot(a, b)));
    const r = idx.map((a) => this.dot(a, -2));
    return solveSymmetric(M, r);
  }
}

/** Gaussian elimination with partial pivoting; a tiny ridge keeps collinear concept sets (superclass = Σ classes) solvable. */
function solveSymmetric(M: number[][], r: number[]): Float64Array {
  const m = r.length;
  const scale = Math.max(...M.map((row, i) => Math.abs(row[i])), 1e-300);
  const A = M.map((row, i) => [...row.map((v, j) => v + (i === j && i > 0 ? 1e-10 * scale : 0)), r[i]]);
  for (let c = 0; c < m; c++) {
    let piv = c;
    for (let i = c + 1; i < m; i++) if (Math.abs(A[i][c]) > Math.abs(A[piv][c])) piv = i;
    [A[c], A[piv]] = [A[piv], A[c]];
    for (let i = c + 1; i < m; i++) {
      const f = A[i][c] / A[c][c];
      if (f !== 0) for (let j = c; j <= m; j++) A[i][j] -= f * A[c][j];
    }
  }
  const x = new Float64Array(m);
  for (let i = m - 1; i >= 0; i--) {
    let s = A[i][m];
    for (let j = i + 1; j < m; j++) s -= A[i][j] * x[j];
    x[i] = s / A[i][i];
  }
  return x;
}

/** Options of {@link greedySearch}. */
export interface GreedyOptions {
  /** Most concepts in an explanation (default 10). */
  maxLength?: number;
  /** Keep a candidate only if it raises validation correlation by at least this (default 0.02). */
  tolerance?: number;
  /** Candidates tried per round, from the top of the ranking (default 10). */
  width?: number;
}

/** The greedy options as given, or an error naming one: a fractional or negative count would silently change the search (ERR_ARG). */
function checkGreedy(o: GreedyOptions): GreedyOptions {
  for (const k of ['maxLength', 'width'] as const)
    if (o[k] !== undefined) requireInteger(o[k], k, 1);
  if (o.tolerance !== undefined && !(Number.isFinite(o.tolerance) && o.tolerance >= 0)) throw argError('tolerance', 'a finite number >= 0', o.tolerance);
  return o;
}

/** One neuron's explanation: activation ≈ bias + Σ weights[t]·P[:, concepts[t]]. */
export interface GreedyResult {
  /** Concept columns of P, in the order chosen. */
  concepts: number[];
  /** Least-squares weight of each concept, fitted on the train split. */
  weights: number[];
  /** Intercept (the train mean when no concept was chosen). */
  bias: number;
  /** Pearson correlation of the fit with the activations on the val split (0 when no concept was chosen). */
  valCorrelation: number;
}

/**
 * LE's greedy search for one neuron: each round tries the `width` best-ranked
 * concepts not yet chosen or rejected, refits least squares on train with the
 * chosen ones, and keeps the best if validation correlation improves; a
 * candidate that improves by less than `tolerance` is rejected for good.
 * Exact least squares replaces the reference's 100 Adam steps, so results are deterministic.
 */
export function greedySearch(P: Mat, y: Float64Array, yVal: Float64Array, split: Split, ranking: Int32Array,
  opts: GreedyOptions = {}): GreedyResult {
  const { maxLength = 10, tolerance = 0.02, width = 10 } = checkGreedy(opts);
  // Activations of other samples would be fitted against the wrong rows of P (or read past y: NaN).
  for (const [name, v, part] of [['y', y, 'train'], ['yVal', yVal, 'val']] as const)
    if (v.length !== split[part].length)
      throw new ConceptLensError('ERR_SHAPE', `${name}: expected ${split[part].length} values (one per ${part} sample), got ${v.length}`);
  const fitter = new SubsetFitter(P, split.train, y);
  const valCols = new Map<number, Float64Array>();
  const valCol = (k: number) => valCols.get(k) ?? valCols.set(k, column(P, k, split.val)).get(k)!;
  const score = (concepts: number[]) => {
    const coef = fitter.fit(concepts);
    const pred = new Float64Array(yVal.length).fill(coef[0]);
    concepts.forEach((k, t) => {
      const x = valCol(k);
      for (let i = 0; i < pred.length; i++) pred[i] += coef[t + 1] * x[i];
    });
    return { corr: pearson(pred, yVal), coef };
  };
  const chosen: number[] = [], rejected = new Set<number>();
  let best: GreedyResult = { concepts: [], weights: [], bias: mean(y), valCorrelation: 0 };
  while (chosen.length < maxLength) {
    const candidates: number[] = [];
    for (const k of ranking) {
      if (candidates.length >= width) break;
      if (!chosen.includes(k) && !rejected.has(k)) candidates.push(k);
    }
    let round: GreedyResult | undefined;
    for (const k of candidates) {
      const { corr, coef } = score([...chosen, k]);
      if (corr - best.valCorrelation < tolerance && chosen.length > 0) rejected.add(k);
      else if (corr > (round?.valCorrelation ?? best.valCorrelation))
        round = { concepts: [...chosen, k], weights: Array.from(coef.subarray(1)), bias: coef[0], valCorrelation: corr };
    }
    if (!round) break;
    best = round;
    chosen.push(round.concepts.at(-1)!);
  }
  return best;
}

/**
 * Options of {@link explainNeurons}: the elastic-net ranking's and the greedy search's, plus the split.
 * Progress counts neurons explained.
 */
export interface ExplainOptions extends GlmOptions, GreedyOptions {
  /** Train (ranking and fits), val (greedy selection) and test sample indices. */
  split: Split;
  /** Layer name recorded in each explanation. */
  layer?: string;
  /** Unit number of column 0 of the activations (default 0). */
  firstUnit?: number;
}

function requireVaryingUnits(A: Mat, train: Int32Array, firstUnit: number): void {
  for (let u = 0; u < A.cols; u++)
    if (!(std(column(A, u, train)) > 0))
      throw new ConceptLensError('ERR_ARG', `activations: unit ${firstUnit + u} is constant (std 0) on the ${train.length} training samples; nothing to explain (drop it or pick other units)`);
}

/** Explains every column of A (samples × units) by the concepts P (samples × concepts) named `names`. */
export async function explainNeurons(A: Mat, P: Mat, names: string[], opts: ExplainOptions): Promise<Explanation[]> {
  // There is no default split: which samples are held out must be recorded (le explain writes le.splits).
  if (!opts?.split) throw argError('options.split', 'the train/val/test split, e.g. seededSplit(A.rows, seed)', opts?.split);
  checkSamples(A, P);
  if (names.length !== P.cols) throw new ConceptLensError('ERR_SHAPE', `concept names: expected ${P.cols} (one per concept column), got ${names.length}`);
  uniqueNames(names, 'concept names');
  const { split, layer, firstUnit = 0, signal } = opts, progress = throttled(opts.onProgress);
  validateSplit(split, A.rows);
  checkGreedy(opts);
  requireVaryingUnits(A, split.train, firstUnit);
  const f = filterConcepts(P, names);
  if (f.P.cols === 0) throw new ConceptLensError('ERR_ARG', 'concepts: none passes the filter (top-5 mean >= 0.5 and std >= 1e-5); are these probabilities?');
  const { solver, lambda, alpha, tol, maxPasses, moments, batch, step, maxEpochs, lookbehind, tolPerTarget, seed } = opts;
  const glmOpts = { solver, lambda, alpha, tol, maxPasses, moments, batch, step, maxEpochs, lookbehind, tolPerTarget, seed, signal };
  const rankings = await rankConcepts(f.P, A, split.train, glmOpts);
  const out: Explanation[] = [];
  for (let u = 0; u < A.cols; u++) {
    throwIfAborted(signal);
    const g = greedySearch(f.P, column(A, u, split.train), column(A, u, split.val), split, rankings[u], opts);
    const order = g.weights.map((_, t) => t).sort((a, b) => g.weights[b] - g.weights[a]);
    out.push({
      unit: firstUnit + u, layer, valCorrelation: g.valCorrelation, bias: g.bias, extra: {},
      concepts: order.map((t) => f.names[g.concepts[t]]), weights: order.map((t) => g.weights[t]),
    });
    progress(u + 1, A.cols);
    if (u % 16 === 15) await new Promise((r) => setImmediate(r)); // let an abort arrive
  }
  return out;
}
