// The concept-bottleneck probe of Discover-then-Name: a linear classifier
// without bias on sparse concept strengths, cross-entropy + λ_p·mean|W|,
// Adam, a 90/10 train/validation split; with its accuracy, sparsity and
// coverage metrics, and local/global explanations. Concept strengths are
// sparse, so the probe works on their nonzeros.
import { shuffle } from './sae.js';
import { requireSeed, rng } from '../random.js';
import { throwIfAborted } from '../abort.js';
import { argError, ConceptLensError, describe, requireInteger } from '../errors.js';
import { requireShape } from '../matrix.js';

/** A rows × cols matrix in compressed sparse row form (its nonzeros only), e.g. SAE concept strengths from {@link toSparse}. */
export interface SparseRows {
  rows: number;
  cols: number;
  /** Row starts into `col`/`val`, rows + 1 entries (row i is ptr[i]..ptr[i+1]). */
  ptr: Float64Array;
  /** Column of each nonzero. */
  col: Int32Array;
  /** Value of each nonzero. */
  val: Float32Array;
}

/** Throws ERR_ARG naming `name` unless `v` is an integer ≥ `min`. */
function requireCount(v: number, name: string, min: number): void {
  if (!(Number.isInteger(v) && v >= min)) throw argError(name, min > 0 ? 'a positive integer' : 'an integer ≥ 0', v);
}

/** Nonzeros of a dense rows × cols matrix. */
export function toSparse(data: Float32Array, rows: number, cols: number): SparseRows {
  requireCount(rows, 'rows', 0);
  requireCount(cols, 'cols', 1);
  requireShape({ data, rows, cols }, 'data');
  let nnz = 0;
  for (let i = 0; i < data.length; i++) if (data[i] !== 0) nnz++;
  const ptr = new Float64Array(rows + 1), col = new Int32Array(nnz), val = new Float32Array(nnz);
  let e = 0;
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const v = data[i * cols + j];
      if (v !== 0) {
        col[e] = j;
        val[e++] = v;
      }
    }
    ptr[i + 1] = e;
  }
  return { rows, cols, ptr, col, val };
}

/** Options of {@link trainProbe}. */
export interface ProbeOptions {
  /** λ_p of the λ_p·mean|W| penalty (default 1e-4). */
  lambda?: number;
  /** Adam learning rate (default 1e-3). */
  lr?: number;
  /** Passes over the training rows (default 20). */
  epochs?: number;
  /** Rows per Adam step (default 512). */
  batch?: number;
  /** Seeds the train/validation split and the shuffling (default 0). */
  seed?: number;
  /** Fraction of rows held out for validation (default 0.1). */
  valFraction?: number;
  /** Checked between epochs; aborting throws ERR_ABORTED. */
  signal?: AbortSignal;
  /** Called after each epoch with its mean training cross-entropy and validation top-1 accuracy. */
  onEpoch?: (e: { epoch: number; loss: number; valTop1: number }) => void;
}

/** A trained concept-bottleneck probe: a linear classifier without bias over concept strengths. */
export interface Probe {
  /** Number of classes. */
  classes: number;
  /** Input width (concepts). */
  dim: number;
  /** classes × dim, row-major. */
  weights: Float32Array;
  /** Best validation top-1 accuracy (0 without a validation set). */
  valTop1: number;
  /** Epoch (from 1) whose weights were kept (without a validation set the last epoch's are kept regardless). */
  bestEpoch: number;
}

/** Logits of row i into z (length classes). */
function logits(X: SparseRows, i: number, W: Float32Array, classes: number, z: Float64Array): void {
  z.fill(0);
  for (let e = X.ptr[i]; e < X.ptr[i + 1]; e++) {
    const j = X.col[e], v = X.val[e];
    for (let c = 0; c < classes; c++) z[c] += W[c * X.cols + j] * v;
  }
}

function softmaxInPlace(z: Float64Array): void {
  let mx = -Infinity;
  for (const v of z) mx = Math.max(mx, v);
  let s = 0;
  for (let c = 0; c < z.length; c++) s += (z[c] = Math.exp(z[c] - mx));
  for (let c = 0; c < z.length; c++) z[c] /= s;
}

/** Deterministic 90/10 split of 0..n-1. */
export function splitTrainVal(n: number, valFraction: number, seed: number): { train: Uint32Array; val: Uint32Array } {
  const perm = shuffle(Uint32Array.from({ length: n }, (_, i) => i), rng(seed));
  const nv = Math.round(n * valFraction);
  return { val: perm.slice(0, nv), train: perm.slice(nv) };
}

/**
 * Trains the probe on `X` (one row per item) and `labels` (0..classes-1): cross-entropy + λ_p·mean|W|, Adam,
 * a seeded train/validation split; keeps the weights of the epoch with the best validation top-1 (the last
 * epoch's when there is no validation set). Runs synchronously on the calling thread.
 * @throws ConceptLensError ERR_SHAPE when labels and rows differ in count, ERR_ARG for a label out of range or a bad λ_p/lr.
 */
export function trainProbe(X: SparseRows, labels: Int32Array, classes: number, o: ProbeOptions = {}): Probe {
  checkProbeData(X, labels, classes);
  for (const [k, v] of [['lambda', o.lambda], ['lr', o.lr]] as const)
    if (v !== undefined && !(Number.isFinite(v) && v >= (k === 'lr' ? Number.MIN_VALUE : 0))) throw argError(k, k === 'lr' ? 'a finite number > 0' : 'a finite number ≥ 0', v);
  // A batch below 1 never advances through the rows; no epoch or no training row leaves the weights at zero.
  for (const [k, v] of [['epochs', o.epochs], ['batch', o.batch]] as const)
    if (v !== undefined) requireInteger(v, k, 1);
  if (o.valFraction !== undefined && !(o.valFraction >= 0 && o.valFraction < 1)) throw argError('valFraction', 'a number in [0, 1)', o.valFraction);
  const lambda = o.lambda ?? 1e-4, lr = o.lr ?? 1e-3, epochs = o.epochs ?? 20, batch = o.batch ?? 512, seed = requireSeed(o.seed ?? 0);
  const { train, val } = splitTrainVal(X.rows, o.valFraction ?? 0.1, seed);
  if (train.length === 0) throw argError('valFraction', `a fraction that leaves training rows of the ${X.rows}`, o.valFraction ?? 0.1);
  const P = classes * X.cols;
  const W = new Float32Array(P), m1 = new Float64Array(P), m2 = new Float64Array(P), g = new Float64Array(P);
  const z = new Float64Array(classes);
  const rand = rng(seed + 1);
  let t = 0, best = { top1: -1, epoch: 0, W: W.slice() };
  for (let epoch = 1; epoch <= epochs; epoch++) {
    throwIfAborted(o.signal);
    shuffle(train, rand);
    let lossSum = 0;
    for (let b0 = 0; b0 < train.length; b0 += batch) {
      const items = train.subarray(b0, Math.min(train.length, b0 + batch));
      g.fill(0);
      for (const i of items) {
        logits(X, i, W, classes, z);
        softmaxInPlace(z);
        lossSum -= Math.log(Math.max(z[labels[i]], 1e-300));
        z[labels[i]] -= 1;
        for (let e = X.ptr[i]; e < X.ptr[i + 1]; e++) {
          const j = X.col[e], v = X.val[e] / items.length;
          for (let c = 0; c < classes; c++) g[c * X.cols + j] += z[c] * v;
        }
      }
      t++;
      const bc1 = 1 - 0.9 ** t, bc2 = 1 - 0.999 ** t;
      for (let q = 0; q < P; q++) {
        const gq = g[q] + (lambda / P) * Math.sign(W[q]);
        m1[q] = 0.9 * m1[q] + 0.1 * gq;
        m2[q] = 0.999 * m2[q] + 0.001 * gq * gq;
        W[q] -= (lr * m1[q] / bc1) / (Math.sqrt(m2[q] / bc2) + 1e-8);
      }
    }
    const valTop1 = val.length ? accuracy(X, labels, W, classes, val).top1 : 0;
    o.onEpoch?.({ epoch, loss: lossSum / Math.max(1, train.length), valTop1 });
    if (valTop1 > best.top1) best = { top1: valTop1, epoch, W: W.slice() };
  }
  return { classes, dim: X.cols, weights: val.length ? best.W : W, valTop1: best.top1, bestEpoch: best.epoch };
}

/** X is whole (its arrays agree with rows), with a label per row, in 0..classes-1 for each row used (`rows`, or all). */
function checkProbeData(X: SparseRows, labels: Int32Array, classes: number, rows?: ArrayLike<number>): void {
  const nnz = X.ptr[X.rows];
  if (X.ptr.length !== X.rows + 1 || X.col.length !== nnz || X.val.length !== nnz)
    throw new ConceptLensError('ERR_SHAPE', `X: expected ${X.rows + 1} row starts (ptr) and ${nnz} entries in col and val, got ${X.ptr.length}, ${X.col.length} and ${X.val.length}`);
  requireCount(classes, 'classes', 1);
  if (labels?.length !== X.rows) throw new ConceptLensError('ERR_SHAPE', `labels: ${labels?.length ?? describe(labels)} for ${X.rows} feature rows; expected one label per row`);
  for (let r = 0; r < (rows ? rows.length : X.rows); r++) {
    const i = rows ? rows[r] : r;
    if (!(Number.isInteger(i) && i >= 0 && i < X.rows)) throw argError(`rows[${r}]`, `a row of X in 0..${X.rows - 1}`, i, 'ERR_SHAPE');
    // Only the rows used need a class: others may hold a placeholder (the atlas marks unlabelled images -1).
    if (!(Number.isInteger(labels[i]) && labels[i] >= 0 && labels[i] < classes)) throw argError(`labels[${i}]`, `a class in 0..${classes - 1}`, labels[i]);
  }
}

/**
 * Top-1 and top-5 accuracy of the probe weights `W` (classes × X.cols) over the given rows of X (all when omitted).
 * @throws ConceptLensError ERR_SHAPE when W, labels or rows do not fit X, ERR_ARG for a label out of range.
 */
export function accuracy(X: SparseRows, labels: Int32Array, W: Float32Array, classes: number,
  rows?: ArrayLike<number>): { top1: number; top5: number } {
  checkProbeData(X, labels, classes, rows);
  requireShape({ data: W, rows: classes, cols: X.cols }, 'weights');
  const n = rows ? rows.length : X.rows;
  if (n === 0) throw new ConceptLensError('ERR_SHAPE', `${rows ? 'rows' : 'X'}: no rows to score; expected at least one`);
  const z = new Float64Array(classes);
  let top1 = 0, top5 = 0;
  for (let r = 0; r < n; r++) {
    const i = rows ? rows[r] : r;
    logits(X, i, W, classes, z);
    const y = labels[i];
    let rivals = 0;  // other classes scoring at least as high as the true one: a tie counts against it
    for (let c = 0; c < classes; c++) if (c !== y && z[c] >= z[y]) rivals++;
    if (rivals === 0) top1++;
    if (rivals < 5) top5++;
  }
  return { top1: top1 / n, top5: top5 / n };
}

export const SPARSITY_THRESHOLDS = [0, 1e-9, 1e-6, 1e-3, 1e-1];

/** How many weights have |w| ≤ each threshold. */
export function weightSparsity(W: Float32Array): Record<string, number> {
  const out: Record<string, number> = {};
  for (const th of SPARSITY_THRESHOLDS) out[String(th)] = W.reduce((n, w) => n + (Math.abs(w) <= th ? 1 : 0), 0);
  return out;
}

/** One concept's contribution W[c, j]·f_j to a class logit. */
export interface Contribution {
  /** Concept (column) index j. */
  concept: number;
  /** W[c, j]·f_j. */
  contribution: number;
}

/** Row i of X and, with W, class c of W (classes × X.cols): in range, or ERR_ARG naming which is not. */
function checkRowClass(X: SparseRows, i: number, W: Float32Array, c?: number): void {
  if (!(Number.isInteger(i) && i >= 0 && i < X.rows)) throw argError('i', `a row of X in 0..${X.rows - 1}`, i);
  const classes = W.length / X.cols;
  if (!Number.isInteger(classes)) throw new ConceptLensError('ERR_SHAPE', `weights: ${W.length} values are not whole rows of X's ${X.cols} concepts`);
  if (c !== undefined && !(Number.isInteger(c) && c >= 0 && c < classes)) throw argError('c', `a class in 0..${classes - 1}`, c);
}

/** Contributions W[c, j]·f_j of row i's active concepts to class c, largest first. */
export function contributions(X: SparseRows, i: number, W: Float32Array, c: number): Contribution[] {
  checkRowClass(X, i, W, c);
  return rowContributions(X, i, W, c);
}

function rowContributions(X: SparseRows, i: number, W: Float32Array, c: number): Contribution[] {
  const out: Contribution[] = [];
  for (let e = X.ptr[i]; e < X.ptr[i + 1]; e++) out.push({ concept: X.col[e], contribution: W[c * X.cols + X.col[e]] * X.val[e] });
  return out.sort((a, b) => b.contribution - a.contribution);
}

/** Predicted class of row i: the argmax of its logits under W (classes × cols); ties go to the lower class. */
export function predict(X: SparseRows, i: number, W: Float32Array, classes: number): number {
  requireShape({ data: W, rows: classes, cols: X.cols }, 'weights');
  checkRowClass(X, i, W);
  return predictRow(X, i, W, classes);
}

function predictRow(X: SparseRows, i: number, W: Float32Array, classes: number): number {
  const z = new Float64Array(classes);
  logits(X, i, W, classes, z);
  let best = 0;
  for (let c = 1; c < classes; c++) if (z[c] > z[best]) best = c;
  return best;
}

/** First 0-based position where the cumulative sum of sorted values reaches q of their total. */
export function coveragePosition(sortedDesc: number[], q: number): number {
  const total = sortedDesc.reduce((a, b) => a + b, 0);
  let acc = 0;
  for (let p = 0; p < sortedDesc.length; p++) {
    acc += sortedDesc[p];
    if (acc >= q * total) return p;
  }
  return sortedDesc.length - 1;
}

export const COVERAGE_LEVELS = [0.9, 0.95, 0.99];

/** Mean coverage over rows, of the predicted class's positive and absolute contributions. */
export function coverage(X: SparseRows, W: Float32Array, classes: number): { positive: Record<string, number>; absolute: Record<string, number> } {
  requireCount(classes, 'classes', 1);
  requireShape({ data: W, rows: classes, cols: X.cols }, 'weights');
  const pos = COVERAGE_LEVELS.map(() => 0), abs = COVERAGE_LEVELS.map(() => 0);
  let np = 0, na = 0;
  for (let i = 0; i < X.rows; i++) {
    const cs = rowContributions(X, i, W, predictRow(X, i, W, classes)).map((c) => c.contribution);
    const p = cs.filter((v) => v > 0);
    const a = cs.map(Math.abs).filter((v) => v > 0).sort((x, y) => y - x);
    if (p.length) {
      COVERAGE_LEVELS.forEach((q, k) => (pos[k] += coveragePosition(p, q)));
      np++;
    }
    if (a.length) {
      COVERAGE_LEVELS.forEach((q, k) => (abs[k] += coveragePosition(a, q)));
      na++;
    }
  }
  const rec = (s: number[], n: number) => Object.fromEntries(COVERAGE_LEVELS.map((q, k) => [String(q), n ? s[k] / n : 0]));
  return { positive: rec(pos, np), absolute: rec(abs, na) };
}

/** Per class, the concepts with the largest positive weights. */
export function globalExplanations(W: Float32Array, classes: number, dim: number, top = 5): Array<Array<{ concept: number; weight: number }>> {
  requireShape({ data: W, rows: classes, cols: dim }, 'weights');
  requireInteger(top, 'top', 1);
  return Array.from({ length: classes }, (_, c) =>
    Array.from({ length: dim }, (_, j) => ({ concept: j, weight: W[c * dim + j] }))
      .filter((x) => x.weight > 0).sort((a, b) => b.weight - a.weight).slice(0, top));
}
