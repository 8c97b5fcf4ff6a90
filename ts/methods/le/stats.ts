// Column statistics over row-major matrices, as the reference computes them.
import { ConceptLensError } from '../../errors.js';
import { gatherRows, requireArray, requireFinite, requireShape, type Mat } from '../../matrix.js';

export function column(M: Mat, k: number, ids?: ArrayLike<number>): Float64Array {
  const n = ids ? ids.length : M.rows;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = M.data[(ids ? ids[i] : i) * M.cols + k];
  return out;
}

export function selectColumns(M: Mat, cols: number[]): Mat {
  const out = new Float32Array(M.rows * cols.length);
  for (let i = 0; i < M.rows; i++) cols.forEach((k, j) => (out[i * cols.length + j] = M.data[i * M.cols + k]));
  return { data: out, rows: M.rows, cols: cols.length };
}

export function mean(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i];
  return s / x.length;
}

/** Sample standard deviation (n − 1), as torch.std. */
export function std(x: ArrayLike<number>): number {
  const m = mean(x);
  let s = 0;
  for (let i = 0; i < x.length; i++) s += (x[i] - m) ** 2;
  return Math.sqrt(s / (x.length - 1));
}

/**
 * Pearson correlation; 0 when either side is constant (a constant prediction explains nothing).
 * @throws ConceptLensError ERR_SHAPE when the lengths differ, ERR_NAN for a NaN or ±Infinity (either would
 *   otherwise read as "no correlation", 0).
 */
export function pearson(x: ArrayLike<number>, y: ArrayLike<number>): number {
  if (x.length !== y.length) throw new ConceptLensError('ERR_SHAPE', `y: expected ${x.length} values (as x), got ${y.length}`);
  requireFinite(x, x.length || 1, 'x', () => 'x');
  requireFinite(y, y.length || 1, 'y', () => 'y');
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

/**
 * Rows `ids` of M, each column standardised by the mean and sample std over those rows (std 0 → column of 0).
 * @throws ConceptLensError ERR_SHAPE for an id outside M's rows (it would read as a row of NaN, standardised to 0s).
 */
export function standardisedRows(M: Mat, ids: Int32Array): Mat {
  requireShape(M, 'M');
  // An Int32Array holds no fractional id, which gatherRows would truncate into a misaligned row.
  const out: Mat = { data: gatherRows(M, requireArray(ids, Int32Array, 'ids'), 'M'), rows: ids.length, cols: M.cols };
  for (let k = 0; k < M.cols; k++) {
    const col = column(out, k), m = mean(col), s = std(col);
    for (let i = 0; i < out.rows; i++) out.data[i * M.cols + k] = s > 0 ? (col[i] - m) / s : 0;
  }
  return out;
}
