// LE's ablation scoring: a neuron replaced by its simulation, the change in a
// linear head's per-sample loss compared with replacing it by its mean.
import { argError, ConceptLensError } from '../../errors.js';
import { requireFinite, requireFiniteMatrix, type Mat } from '../../matrix.js';
import type { Explanation } from './csv.js';
import { checkSamples, nameIndex, simulate, unitColumn } from './simulate.js';
import { validateSplit, type Split } from './splits.js';
import { column, mean, pearson, std } from './stats.js';

/** A linear classification head over the units (e.g. a network's last layer), used by ablation scoring. */
export interface Head {
  /** classes × units: logits = W·a + b. */
  W: Mat;
  /** Bias, one per class. */
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

/** Options of {@link ablationScores}. */
export interface AblationOptions {
  /** The head whose loss the ablation is measured on. */
  head: Head;
  /** Class of each sample (row of the activations), in [0, classes). */
  labels: ArrayLike<number>;
  /** Samples to fit on (val) and to score on (test). */
  split: Split;
  /** Logits are divided by it before the loss (default 1.1, as the reference). */
  temperature?: number;
  /** 'optim' (default): fit c·pred + d on val by 100 Adam steps; 'norm': match val mean/std scaled by val correlation. */
  mode?: 'optim' | 'norm';
}

/**
 * Ablation scoring: replace a neuron by its simulation and compare the change
 * in per-sample loss with replacing it by its mean:
 *   1 − Σ|L_sim − L_orig| / Σ|L_mean − L_orig| on the test split.
 */
export function ablationScores(exps: Explanation[], P: Mat, names: string[], A: Mat, opts: AblationOptions): Float64Array {
  const { head, labels, split, temperature: T = 1.1, mode = 'optim' } = opts ?? {};
  // The head and labels have no defaults: they define the loss being measured.
  if (!head?.W || !head.b) throw argError('options.head', 'a linear head { W, b } over the units', head);
  if (labels?.length === undefined) throw argError('options.labels', 'a class id per sample', labels);
  checkSamples(A, P);
  validateSplit(split, A.rows); // an id past A's rows would read another sample's activations, or NaN
  requireFiniteMatrix(head.W, 'head weights');
  if (head.W.cols !== A.cols) throw new ConceptLensError('ERR_SHAPE', `head weights: expected ${A.cols} columns (one per unit), got ${head.W.cols}`);
  if (head.b.length !== head.W.rows) throw new ConceptLensError('ERR_SHAPE', `head bias: expected ${head.W.rows} values, got ${head.b.length}`);
  if (labels.length !== A.rows) throw new ConceptLensError('ERR_SHAPE', `labels: expected ${A.rows} (one per sample), got ${labels.length}`);
  if (!(Number.isFinite(T) && T > 0)) throw argError('temperature', 'a finite number > 0', T);
  if (mode !== 'optim' && mode !== 'norm') throw argError('mode', "'optim' or 'norm'", mode);
  requireFinite(head.b, head.b.length || 1, 'head bias');
  for (let i = 0; i < labels.length; i++)
    if (!(Number.isInteger(labels[i]) && labels[i] >= 0 && labels[i] < head.W.rows))
      throw argError(`labels[${i}]`, `a class id in [0, ${head.W.rows})`, labels[i]);
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
