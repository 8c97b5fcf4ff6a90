// LE's concept matrices: LE(Label) from class labels, LE(CLIP) from
// image–concept cosines through a calibrated sigmoid, and the concept filter.
import type { ProgressOptions } from '../../abort.js';
import { matmulNT } from '../../engine/blas.js';
import { argError, ConceptLensError } from '../../errors.js';
import { normaliseRows, requireFiniteMatrix, type Mat } from '../../matrix.js';
import { column, mean, selectColumns, std } from './stats.js';

/** LE(Label): one-hot class labels, then one column per superclass (the sum of its member classes). */
export function labelConcepts(labels: ArrayLike<number>, classNames: string[],
  superclasses: Record<string, number[]> = {}): { P: Mat; names: string[] } {
  const supers = Object.entries(superclasses);
  const cols = classNames.length + supers.length;
  const P = new Float32Array(labels.length * cols);
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i];
    if (!Number.isInteger(y) || y < 0 || y >= classNames.length)
      throw new ConceptLensError(Number.isFinite(y) ? 'ERR_ARG' : 'ERR_NAN', `labels[${i}]: expected a class id in [0, ${classNames.length}), got ${y}`);
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
    throw new ConceptLensError('ERR_SHAPE', `concept text embeddings: expected dimension ${images.cols} (the image embeddings'), got ${text.cols}`);
  const a = normaliseRows(images.data, images.cols, { name: 'image embeddings', zeroRows: 'error' });
  const b = normaliseRows(text.data, text.cols, { name: 'concept text embeddings', zeroRows: 'error' });
  const cos = await matmulNT(a, images.rows, images.cols, b, text.rows, opts);
  return { data: cos, rows: images.rows, cols: text.rows };
}

/**
 * LE(CLIP): P = sigmoid(a·(cos + b)) from image–concept cosine similarities.
 * @throws ConceptLensError ERR_SHAPE when cos.data is not rows × cols values, ERR_NAN for a non-finite cosine,
 *   ERR_ARG for a non-finite a or b.
 */
export function sigmoidConcepts(cos: Mat, a: number, b: number): Mat {
  requireFiniteMatrix(cos, 'cos');  // a NaN would become a NaN concept probability
  if (!Number.isFinite(a)) throw argError('a', 'a finite number', a);
  if (!Number.isFinite(b)) throw argError('b', 'a finite number', b);
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
  requireFiniteMatrix(cos, 'cos');
  if (targets.rows !== cos.rows || targets.cols !== cos.cols)
    throw new ConceptLensError('ERR_SHAPE', `targets: expected ${cos.rows}×${cos.cols} (as cos), got ${targets.rows}×${targets.cols}`);
  requireFiniteMatrix(targets, 'targets');
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
  if (names.length !== P.cols) throw new ConceptLensError('ERR_SHAPE', `concept names: expected ${P.cols} (one per concept column), got ${names.length}`);
  const kept: number[] = [];
  for (let k = 0; k < P.cols; k++) {
    const col = column(P, k);
    const top = Float64Array.from(col).sort().subarray(Math.max(0, col.length - 5));
    if (mean(top) >= 0.5 && std(col) >= 1e-5) kept.push(k);
  }
  return { P: selectColumns(P, kept), names: kept.map((k) => names[k]), kept };
}
