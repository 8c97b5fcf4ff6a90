// Linear Explanations (Oikarinen & Weng, ICML 2024): each neuron explained as
// a sparse linear combination of concept activations, found by an elastic-net
// ranking and a greedy search, and scored by simulation (correlation and
// ablation). Conventions: matrices are row-major, samples × columns.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { withCancel, abortError, type ProgressOptions } from '../abort.js';
import { native } from '../native.js';
import { readNpy, writeNpy } from '../io/npy.js';
import type { Explanation } from './le-csv.js';
import { rng } from '../random.js';

export interface Mat {
  data: Float32Array;
  rows: number;
  cols: number;
}

// ---------------------------------------------------------------- elastic net

export interface GlmOptions extends ProgressOptions {
  /** 'cd': exact coordinate descent (default); 'saga': GLM-SAGA as the reference runs it. */
  solver?: 'cd' | 'saga';
  lambda?: number;
  alpha?: number;
  tol?: number;
  maxPasses?: number;
  batch?: number;
  step?: number;
  maxEpochs?: number;
  lookbehind?: number;
  tolPerTarget?: number;
  seed?: number;
}

export interface GlmFit {
  /** targets × features, row-major. */
  weights: Float32Array;
  bias: Float32Array;
  /** Exact float64 objective per target. */
  objective: Float64Array;
  iterations: number;
}

type Progress = ((done: number, total: number) => void) | null;
interface GlmNative {
  glmFit(X: Float32Array, n: number, p: number, Y: Float32Array, K: number, options: object, onProgress: Progress,
    cancel: Int32Array | null): Promise<GlmFit>;
  glmObjective(X: Float32Array, n: number, p: number, Y: Float32Array, K: number, W: Float32Array, b: Float32Array,
    options: { lambda?: number; alpha?: number }): Float64Array;
}
const glm = () => native() as unknown as GlmNative;

/** LE's regularisation: GLM-SAGA's λ_max 0.05 divided by α = 0.99. */
export const LE_ALPHA = 0.99;
export const LE_LAMBDA = 0.05 / 0.99;

/** Per column k of Y: min (1/2n)‖y − Xw − β₀‖² + λ(α‖w‖₁ + ½(1−α)‖w‖²), off the JS thread. */
export function fitElasticNet(X: Mat, Y: Mat, opts: GlmOptions = {}): Promise<GlmFit> {
  if (X.rows !== Y.rows) throw new Error(`Y: expected ${X.rows} rows (as X), got ${Y.rows}`);
  const { signal, onProgress, ...rest } = opts;
  // Unset options fall back to the native defaults (the reference's settings).
  const options = Object.fromEntries(Object.entries({ lambda: LE_LAMBDA, alpha: LE_ALPHA, ...rest }).filter(([, v]) => v !== undefined));
  return withCancel(signal, (flag) => glm().glmFit(X.data, X.rows, X.cols, Y.data, Y.cols, options, onProgress ?? null, flag));
}

export function elasticNetObjective(X: Mat, Y: Mat, weights: Float32Array, bias: Float32Array,
  en: { lambda?: number; alpha?: number } = {}): Float64Array {
  return glm().glmObjective(X.data, X.rows, X.cols, Y.data, Y.cols, weights, bias, { lambda: LE_LAMBDA, alpha: LE_ALPHA, ...en });
}

// ----------------------------------------------------------- concept matrices

/** LE(Label): one-hot class labels, then one column per superclass (the sum of its member classes). */
export function labelConcepts(labels: ArrayLike<number>, classNames: string[],
  superclasses: Record<string, number[]> = {}): { P: Mat; names: string[] } {
  const supers = Object.entries(superclasses);
  const cols = classNames.length + supers.length;
  const P = new Float32Array(labels.length * cols);
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i];
    if (!Number.isInteger(y) || y < 0 || y >= classNames.length)
      throw new Error(`labels[${i}]: expected a class id in [0, ${classNames.length}), got ${y}`);
    P[i * cols + y] = 1;
    supers.forEach(([, ids], s) => {
      if (ids.includes(y)) P[i * cols + classNames.length + s] = 1;
    });
  }
  return { P: { data: P, rows: labels.length, cols }, names: [...classNames, ...supers.map(([s]) => s.replace(/_/g, ' '))] };
}

/** Cosine similarities (images × concepts) between image and concept text embeddings, on the engine's BLAS. */
export async function conceptCosines(images: Mat, text: Mat, opts: ProgressOptions = {}): Promise<Mat> {
  if (images.cols !== text.cols)
    throw new Error(`concept text embeddings: expected dimension ${images.cols} (the image embeddings'), got ${text.cols}`);
  const unit = (m: Mat, what: string) => {
    const out = Float32Array.from(m.data);
    for (let i = 0; i < m.rows; i++) {
      let s = 0;
      for (let j = 0; j < m.cols; j++) s += out[i * m.cols + j] ** 2;
      if (!(s > 0) || !Number.isFinite(s)) throw new Error(`${what}: row ${i} has zero or non-finite norm`);
      for (let j = 0; j < m.cols; j++) out[i * m.cols + j] /= Math.sqrt(s);
    }
    return out;
  };
  const a = unit(images, 'image embeddings'), b = unit(text, 'concept text embeddings');
  const cos = await withCancel(opts.signal, (flag) => native().matmulNT(a, images.rows, images.cols, b, text.rows, null, flag));
  return { data: cos, rows: images.rows, cols: text.rows };
}

/** LE(CLIP): P = sigmoid(a·(cos + b)) from image–concept cosine similarities. */
export function sigmoidConcepts(cos: Mat, a: number, b: number): Mat {
  const out = new Float32Array(cos.data.length);
  for (let i = 0; i < out.length; i++) out[i] = 1 / (1 + Math.exp(-a * (cos.data[i] + b)));
  return { data: out, rows: cos.rows, cols: cos.cols };
}

function meanBce(cos: Mat, targets: Mat, a: number, b: number): number {
  let s = 0;
  for (let i = 0; i < cos.data.length; i++) {
    const z = a * (cos.data[i] + b);
    // log(1 + e^{-z}) for t = 1, log(1 + e^{z}) for t = 0, computed stably.
    const t = targets.data[i];
    s += t * softplus(-z) + (1 - t) * softplus(z);
  }
  return s / cos.data.length;
}
const softplus = (x: number) => (x > 0 ? x + Math.log1p(Math.exp(-x)) : Math.log1p(Math.exp(x)));
const range = (lo: number, hi: number, step: number) =>
  Array.from({ length: Math.round((hi - lo) / step) + 1 }, (_, i) => lo + i * step);

/**
 * Calibrates (a, b) of sigmoid(a·(cos + b)) against 0/1 targets (e.g. whether
 * each image shows each class) by minimising binary cross-entropy on a grid,
 * coarse then fine around the best point. The grid follows the data: b spans
 * −max(cos)…−min(cos) and a is scaled to the spread of the cosines, so
 * backbones whose cosines sit in other ranges than CLIP's (0.1–0.35) calibrate too.
 */
export function calibrateSigmoid(cos: Mat, targets: Mat): { a: number; b: number; loss: number } {
  if (targets.rows !== cos.rows || targets.cols !== cos.cols)
    throw new Error(`targets: expected ${cos.rows}×${cos.cols} (as cos), got ${targets.rows}×${targets.cols}`);
  let lo = Infinity, hi = -Infinity;
  for (const v of cos.data) (lo = Math.min(lo, v)), (hi = Math.max(hi, v));
  const spread = Math.max(hi - lo, 1e-6), aScale = 0.3 / spread, bStep = spread / 40;
  let best = { a: 0, b: 0, loss: Infinity };
  const search = (as: number[], bs: number[]) => {
    for (const a of as) for (const b of bs) {
      const loss = meanBce(cos, targets, a, b);
      if (loss < best.loss) best = { a, b, loss };
    }
  };
  search(range(5, 120, 5).map((a) => a * aScale), range(-hi, -lo, bStep));
  const aStep = 5 * aScale;
  search(range(Math.max(aStep / 10, best.a - aStep), best.a + aStep, aStep / 10), range(best.b - bStep, best.b + bStep, bStep / 10));
  return best;
}

/** LE's filter: keep concept k when the mean of its 5 largest values is ≥ 0.5 and its std ≥ 1e-5. */
export function filterConcepts(P: Mat, names: string[]): { P: Mat; names: string[]; kept: number[] } {
  if (names.length !== P.cols) throw new Error(`concept names: expected ${P.cols} (one per concept column), got ${names.length}`);
  const kept: number[] = [];
  for (let k = 0; k < P.cols; k++) {
    const col = column(P, k);
    const top = Float64Array.from(col).sort().subarray(Math.max(0, col.length - 5));
    if (mean(top) >= 0.5 && std(col) >= 1e-5) kept.push(k);
  }
  return { P: selectColumns(P, kept), names: kept.map((k) => names[k]), kept };
}

// ---------------------------------------------------------------- statistics

function column(M: Mat, k: number, ids?: ArrayLike<number>): Float64Array {
  const n = ids ? ids.length : M.rows;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = M.data[(ids ? ids[i] : i) * M.cols + k];
  return out;
}

function selectColumns(M: Mat, cols: number[]): Mat {
  const out = new Float32Array(M.rows * cols.length);
  for (let i = 0; i < M.rows; i++) cols.forEach((k, j) => (out[i * cols.length + j] = M.data[i * M.cols + k]));
  return { data: out, rows: M.rows, cols: cols.length };
}

function mean(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i];
  return s / x.length;
}

/** Sample standard deviation (n − 1), as torch.std. */
function std(x: ArrayLike<number>): number {
  const m = mean(x);
  let s = 0;
  for (let i = 0; i < x.length; i++) s += (x[i] - m) ** 2;
  return Math.sqrt(s / (x.length - 1));
}

/** Pearson correlation; 0 when either side is constant (a constant prediction explains nothing). */
export function pearson(x: ArrayLike<number>, y: ArrayLike<number>): number {
  const mx = mean(x), my = mean(y);
  let sxy = 0, sxx = 0, syy = 0;
  for (let i = 0; i < x.length; i++) {
    const dx = x[i] - mx, dy = y[i] - my;
    sxy += dx * dy, sxx += dx * dx, syy += dy * dy;
  }
  return sxx > 0 && syy > 0 ? sxy / Math.sqrt(sxx * syy) : 0;
}

/** Mean over neurons ± standard error (sample std / √n), as the paper reports scores. */
export function summarise(scores: ArrayLike<number>): { mean: number; sem: number; n: number } {
  return { mean: mean(scores), sem: scores.length > 1 ? std(scores) / Math.sqrt(scores.length) : 0, n: scores.length };
}

// -------------------------------------------------------------------- splits

export interface Split {
  train: Int32Array;
  val: Int32Array;
  test: Int32Array;
}
const PARTS = ['train', 'val', 'test'] as const;
const MIN_PART = 3;

/** 70/10/20 train/val/test by a seeded shuffle; each part sorted, as the reference stores it. */
export function seededSplit(n: number, seed: number): Split {
  const nTrain = Math.floor(0.7 * n), nVal = Math.floor(0.8 * n) - nTrain;
  if (Math.min(nTrain, nVal, n - nTrain - nVal) < MIN_PART)
    throw new Error(`activations: ${n} samples are too few for a 70/10/20 split (need at least ${10 * MIN_PART} so that validation has ${MIN_PART})`);
  const ids = Array.from({ length: n }, (_, i) => i);
  const r = rng(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [ids[i], ids[j]] = [ids[j], ids[i]];
  }
  const part = (a: number, b: number) => Int32Array.from(ids.slice(a, b)).sort();
  return { train: part(0, nTrain), val: part(nTrain, nTrain + nVal), test: part(nTrain + nVal, n) };
}

/** Checks a split against n samples: indices in range, parts disjoint and large enough. */
export function validateSplit(s: Split, n: number, where = 'split'): void {
  const seen = new Uint8Array(n);
  for (const name of PARTS) {
    if (s[name].length < MIN_PART) throw new Error(`${where}: ${name} has ${s[name].length} samples; need at least ${MIN_PART}`);
    for (const i of s[name]) {
      if (!(i >= 0 && i < n)) throw new Error(`${where}: ${name} index ${i} is outside [0, ${n})`);
      if (seen[i]++) throw new Error(`${where}: index ${i} appears twice`);
    }
  }
}

/** Reads DIR/{train,val,test}_ids.npy (integer arrays) or .txt (one index a line). */
export function readSplit(dir: string, n: number): Split {
  const read = (name: string): Int32Array => {
    const npy = join(dir, `${name}_ids.npy`), txt = join(dir, `${name}_ids.txt`);
    if (existsSync(npy)) return Int32Array.from(Array.from(readNpy(npy).data as ArrayLike<number | bigint>, Number));
    if (existsSync(txt)) return Int32Array.from(readFileSync(txt, 'utf8').split(/\s+/).filter(Boolean).map(Number));
    throw new Error(`${dir}: missing ${name}_ids.npy (or .txt)`);
  };
  const s = { train: read('train'), val: read('val'), test: read('test') };
  validateSplit(s, n, dir);
  return s;
}

export function writeSplit(dir: string, s: Split): void {
  mkdirSync(dir, { recursive: true });
  for (const name of PARTS) writeNpy(join(dir, `${name}_ids.npy`), BigInt64Array.from(s[name], BigInt), [s[name].length]);
}

// ---------------------------------------------------------------- explaining

/** Rows `ids` of M, each column standardised by the mean and sample std over those rows (std 0 → column of 0). */
export function standardisedRows(M: Mat, ids: Int32Array): Mat {
  const out = new Float32Array(ids.length * M.cols);
  for (let k = 0; k < M.cols; k++) {
    const col = column(M, k, ids);
    const m = mean(col), s = std(col);
    for (let i = 0; i < ids.length; i++) out[i * M.cols + k] = s > 0 ? (col[i] - m) / s : 0;
  }
  return { data: out, rows: ids.length, cols: M.cols };
}

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

export interface GreedyOptions {
  maxLength?: number;
  /** Keep a candidate only if it raises validation correlation by at least this. */
  tolerance?: number;
  /** Candidates tried per round, from the top of the ranking. */
  width?: number;
}

export interface GreedyResult {
  concepts: number[];
  weights: number[];
  bias: number;
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
  const { maxLength = 10, tolerance = 0.02, width = 10 } = opts;
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

export interface ExplainOptions extends GlmOptions, GreedyOptions {
  split: Split;
  layer?: string;
  /** Unit number of column 0 of the activations. */
  firstUnit?: number;
}

function requireVaryingUnits(A: Mat, train: Int32Array, firstUnit: number): void {
  for (let u = 0; u < A.cols; u++)
    if (!(std(column(A, u, train)) > 0))
      throw new Error(`activations: unit ${firstUnit + u} is constant (std 0) on the ${train.length} training samples; nothing to explain (drop it or pick other units)`);
}

/** Explains every column of A (samples × units) by the concepts P (samples × concepts) named `names`. */
export async function explainNeurons(A: Mat, P: Mat, names: string[], opts: ExplainOptions): Promise<Explanation[]> {
  if (P.rows !== A.rows) throw new Error(`concepts: expected ${A.rows} rows (one per activation sample), got ${P.rows}`);
  if (names.length !== P.cols) throw new Error(`concept names: expected ${P.cols} (one per concept column), got ${names.length}`);
  const { split, layer, firstUnit = 0, signal, onProgress } = opts;
  validateSplit(split, A.rows);
  requireVaryingUnits(A, split.train, firstUnit);
  const f = filterConcepts(P, names);
  if (f.P.cols === 0) throw new Error('concepts: none passes the filter (top-5 mean >= 0.5 and std >= 1e-5); are these probabilities?');
  const { solver, lambda, alpha, tol, maxPasses, batch, step, maxEpochs, lookbehind, tolPerTarget, seed } = opts;
  const glmOpts = { solver, lambda, alpha, tol, maxPasses, batch, step, maxEpochs, lookbehind, tolPerTarget, seed, signal };
  const rankings = await rankConcepts(f.P, A, split.train, glmOpts);
  const out: Explanation[] = [];
  for (let u = 0; u < A.cols; u++) {
    if (signal?.aborted) throw abortError();
    const g = greedySearch(f.P, column(A, u, split.train), column(A, u, split.val), split, rankings[u], opts);
    const order = g.weights.map((_, t) => t).sort((a, b) => g.weights[b] - g.weights[a]);
    out.push({
      unit: firstUnit + u, layer, valCorrelation: g.valCorrelation, bias: g.bias, extra: {},
      concepts: order.map((t) => f.names[g.concepts[t]]), weights: order.map((t) => g.weights[t]),
    });
    onProgress?.(u + 1, A.cols);
    if (u % 16 === 15) await new Promise((r) => setImmediate(r)); // let an abort arrive
  }
  return out;
}

// ---------------------------------------------------------------- simulation

/** Σ w·P[:, concept] + bias over rows `ids`: the simulator's prediction of the neuron. */
export function simulate(e: Explanation, P: Mat, index: Map<string, number>, ids: Int32Array): Float64Array {
  const pred = new Float64Array(ids.length).fill(e.bias);
  e.concepts.forEach((c, t) => {
    const k = index.get(c);
    if (k === undefined) throw new Error(`unit ${e.unit}: concept '${c}' is not among the simulator's concept names`);
    for (let i = 0; i < ids.length; i++) pred[i] += e.weights[t] * P.data[ids[i] * P.cols + k];
  });
  return pred;
}

export function nameIndex(names: string[], P: Mat): Map<string, number> {
  if (names.length !== P.cols) throw new Error(`concept names: expected ${P.cols} (one per concept column), got ${names.length}`);
  return new Map(names.map((n, i) => [n, i]));
}

function unitColumn(A: Mat, e: Explanation): number {
  if (!(Number.isInteger(e.unit) && e.unit >= 0 && e.unit < A.cols))
    throw new Error(`unit ${e.unit}: outside the activations' ${A.cols} units`);
  return e.unit;
}

/** Correlation scoring: Pearson correlation of simulated and true activations on `ids` (the test split), per neuron. */
export function correlationScores(exps: Explanation[], P: Mat, names: string[], A: Mat, ids: Int32Array): Float64Array {
  if (P.rows !== A.rows) throw new Error(`concepts: expected ${A.rows} rows (one per activation sample), got ${P.rows}`);
  const index = nameIndex(names, P);
  return Float64Array.from(exps, (e) => pearson(simulate(e, P, index, ids), column(A, unitColumn(A, e), ids)));
}

// ------------------------------------------------------------------ ablation

export interface Head {
  /** classes × units: logits = W·a + b. */
  W: Mat;
  b: Float32Array;
}

/** The head's logits W·a + b for rows `ids` (rows × classes), computed once per split. */
interface Logits {
  ids: Int32Array;
  z: Float64Array;
  labels: Int32Array;
}

function logits(A: Mat, head: Head, labels: ArrayLike<number>, ids: Int32Array): Logits {
  const C = head.W.rows, U = A.cols, z = new Float64Array(ids.length * C);
  for (let i = 0; i < ids.length; i++) {
    const a = A.data.subarray(ids[i] * U, (ids[i] + 1) * U);
    for (let c = 0; c < C; c++) {
      let s = head.b[c];
      const w = head.W.data.subarray(c * U, (c + 1) * U);
      for (let j = 0; j < U; j++) s += w[j] * a[j];
      z[i * C + c] = s;
    }
  }
  return { ids, z, labels: Int32Array.from(ids, (i) => labels[i]) };
}

/**
 * Per-sample cross-entropy of logits/T with unit u's activation replaced by
 * v_i (v null: unchanged): only the logits' component along W[:, u] moves.
 * With `grad`, also d loss_i / d v_i.
 */
function losses(L: Logits, A: Mat, head: Head, T: number, u: number, v: Float64Array | null, grad?: Float64Array): Float64Array {
  const C = head.W.rows, U = A.cols, n = L.ids.length, out = new Float64Array(n), z = new Float64Array(C);
  for (let i = 0; i < n; i++) {
    const delta = v ? v[i] - A.data[L.ids[i] * U + u] : 0;
    let mx = -Infinity;
    for (let c = 0; c < C; c++) {
      z[c] = (L.z[i * C + c] + delta * head.W.data[c * U + u]) / T;
      mx = Math.max(mx, z[c]);
    }
    let sum = 0;
    for (let c = 0; c < C; c++) sum += Math.exp(z[c] - mx);
    const y = L.labels[i];
    out[i] = mx + Math.log(sum) - z[y];
    if (grad) {
      let g = -head.W.data[y * U + u];
      for (let c = 0; c < C; c++) g += (Math.exp(z[c] - mx) / sum) * head.W.data[c * U + u];
      grad[i] = g / T;
    }
  }
  return out;
}

const absDiffSum = (x: Float64Array, y: Float64Array) => x.reduce((s, v, i) => s + Math.abs(v - y[i]), 0);

export interface AblationOptions {
  head: Head;
  labels: ArrayLike<number>;
  split: Split;
  /** 1.1 in the reference: logits are divided by it before the loss. */
  temperature?: number;
  /** 'optim': fit c·pred + d on val by 100 Adam steps; 'norm': match val mean/std scaled by val correlation. */
  mode?: 'optim' | 'norm';
}

/**
 * Ablation scoring: replace a neuron by its simulation and compare the change
 * in per-sample loss with replacing it by its mean:
 *   1 − Σ|L_sim − L_orig| / Σ|L_mean − L_orig| on the test split.
 */
export function ablationScores(exps: Explanation[], P: Mat, names: string[], A: Mat, opts: AblationOptions): Float64Array {
  const { head, labels, split, temperature: T = 1.1, mode = 'optim' } = opts;
  if (head.W.cols !== A.cols) throw new Error(`head weights: expected ${A.cols} columns (one per unit), got ${head.W.cols}`);
  if (head.b.length !== head.W.rows) throw new Error(`head bias: expected ${head.W.rows} values, got ${head.b.length}`);
  if (labels.length !== A.rows) throw new Error(`labels: expected ${A.rows} (one per sample), got ${labels.length}`);
  for (let i = 0; i < labels.length; i++)
    if (!(Number.isInteger(labels[i]) && labels[i] >= 0 && labels[i] < head.W.rows))
      throw new Error(`labels[${i}]: expected a class id in [0, ${head.W.rows}), got ${labels[i]}`);
  const index = nameIndex(names, P);
  const test = logits(A, head, labels, split.test), val = logits(A, head, labels, split.val);
  const origTest = losses(test, A, head, T, 0, null), origVal = losses(val, A, head, T, 0, null);
  return Float64Array.from(exps, (e) => {
    const u = unitColumn(A, e);
    const actVal = column(A, u, split.val);
    const predVal = simulate(e, P, index, split.val), predTest = simulate(e, P, index, split.test);
    const m = mean(actVal);
    let sim: Float64Array;
    if (mode === 'norm') {
      const scale = std(actVal) * pearson(actVal, predVal), pm = mean(predTest), ps = std(predTest);
      sim = predTest.map((x) => (ps > 0 ? ((x - pm) / ps) * scale : 0) + m);
    } else {
      const [c, d] = fitAffine(val, A, head, T, u, predVal, origVal);
      sim = predTest.map((x) => c * x + d);
    }
    const base = losses(test, A, head, T, u, new Float64Array(split.test.length).fill(m));
    const ablated = losses(test, A, head, T, u, sim);
    return 1 - absDiffSum(ablated, origTest) / absDiffSum(base, origTest);
  });
}

/** (c, d) minimising Σ|L(c·pred + d) − L_orig| on val: Adam, lr 1e-2, 100 steps from (1, 0), as the reference. */
function fitAffine(L: Logits, A: Mat, head: Head, T: number, u: number, pred: Float64Array, orig: Float64Array): [number, number] {
  const p = [1, 0], m = [0, 0], v = [0, 0], lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  const grad = new Float64Array(pred.length);
  for (let t = 1; t <= 100; t++) {
    const l = losses(L, A, head, T, u, pred.map((x) => p[0] * x + p[1]), grad);
    const g = [0, 0];
    for (let i = 0; i < pred.length; i++) {
      const s = Math.sign(l[i] - orig[i]) * grad[i];
      g[0] += s * pred[i], g[1] += s;
    }
    for (let j = 0; j < 2; j++) {
      m[j] = b1 * m[j] + (1 - b1) * g[j];
      v[j] = b2 * v[j] + (1 - b2) * g[j] * g[j];
      p[j] -= (lr * (m[j] / (1 - b1 ** t))) / (Math.sqrt(v[j] / (1 - b2 ** t)) + eps);
    }
  }
  return [p[0], p[1]];
}
