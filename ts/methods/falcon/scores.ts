// FALCON steps 4, 5 and the failure analysis: the interpretability score of
// a group's crops, its lowly activating counterfactual images, and the
// features that drive a misclassification through a linear head.
import { argError, ConceptLensError, requireInteger } from '../../errors.js';
import type { Firing } from './groups.js';

/**
 * Mean of the cosine Gram matrix of n embeddings (diagonal included), via
 * mean_ij x̂_i·x̂_j = ‖Σ_i x̂_i‖² / n², so no n × n matrix is formed.
 */
export function interpretabilityScore(emb: Float32Array, n: number, d: number): number {
  if (n < 1) throw new ConceptLensError('ERR_SHAPE', 'embeddings: expected at least one crop embedding to score a group, got 0');
  if (emb.length !== n * d) throw new ConceptLensError('ERR_SHAPE', `embeddings: expected ${n}×${d} = ${n * d} values, got ${emb.length}`);
  // Σ_i x̂_i in float64: the score is a mean of n² cosines, kept exact to rounding.
  const s = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    let sq = 0;
    for (let c = 0; c < d; c++) sq += emb[i * d + c] ** 2;
    if (!(sq > 0) || !Number.isFinite(sq)) throw new ConceptLensError(Number.isFinite(sq) ? 'ERR_ARG' : 'ERR_NAN', `embeddings: row ${i} has norm ${Math.sqrt(sq)}; expected a finite non-zero vector`);
    for (let c = 0; c < d; c++) s[c] += emb[i * d + c] / Math.sqrt(sq);
  }
  return s.reduce((a, v) => a + v * v, 0) / (n * n);
}

/** A group counts as interpretable when its {@link interpretabilityScore} exceeds this (FALCON's 0.8). */
export const INTERPRETABLE_ABOVE = 0.8;

/** Options of {@link lowlyActivating}. */
export interface LowlyOptions {
  /** An image qualifies when every group feature of R̂ is below this (default: mean(R̂)). */
  below?: number;
  /** Keep candidates whose similarity to the highly activating images is at least this (default 0.3). */
  minSimilarity?: number;
  /** Most images returned (default 10). */
  limit?: number;
}

/** A group's lowly activating counterfactual images, most similar first. */
export interface Lowly {
  /** Image indices. */
  images: number[];
  /** Each image's similarity (dot product of non-group features of R̂) to the highly activating images' mean. */
  similarities: number[];
}

/**
 * Counterfactuals: images where every group feature is below mean(R̂),
 * ranked by the dot product of their other features (of R̂) with the mean of
 * the highly activating images' other features; those ≥ 0.3, first 10.
 */
export function lowlyActivating(r: Float32Array, f: Firing, group: number[], high: number[], opts: LowlyOptions = {}): Lowly {
  if (high.length === 0) throw new ConceptLensError('ERR_ARG', `group ${group.join(',')}: no highly activating images to contrast with`);
  const { cols: d } = f;
  if (r.length !== f.rows * d) throw new ConceptLensError('ERR_SHAPE', `representations: expected ${f.rows}×${d} = ${f.rows * d} values (the firing's), got ${r.length}`);
  const outside = (ids: number[], n: number) => ids.find((i) => !(Number.isInteger(i) && i >= 0 && i < n));
  const badFeature = outside(group, d), badImage = outside(high, f.rows);
  if (badFeature !== undefined) throw argError('group', `feature indices in [0, ${d})`, badFeature);
  if (badImage !== undefined) throw argError('high', `image indices in [0, ${f.rows})`, badImage);
  const below = opts.below ?? f.mean, minSim = opts.minSimilarity ?? 0.3, limit = opts.limit ?? 10;
  requireInteger(limit, 'limit', 1);
  const inGroup = new Uint8Array(d);
  for (const g of group) inGroup[g] = 1;
  const hat = (x: number, c: number) => r[x * d + c] * f.invNorms[x];
  const centre = new Float64Array(d);
  for (const x of high) for (let c = 0; c < d; c++) if (!inGroup[c]) centre[c] += hat(x, c) / high.length;
  const cands: { x: number; s: number }[] = [];
  for (let x = 0; x < f.rows; x++) {
    if (!group.every((g) => hat(x, g) < below)) continue;
    let s = 0;
    for (let c = 0; c < d; c++) if (!inGroup[c]) s += hat(x, c) * centre[c];
    if (s >= minSim) cands.push({ x, s });
  }
  cands.sort((a, b) => b.s - a.s || a.x - b.x);
  const kept = cands.slice(0, limit);
  return { images: kept.map((c) => c.x), similarities: kept.map((c) => c.s) };
}

/**
 * Failure analysis: the features that contribute most to class y through a
 * linear head W (classes × D): the top k of h ∘ W[y] (k = 1 is the argmax).
 */
export function failureFeatures(h: Float32Array, weights: Float32Array, classes: number, y: number, k = 1): { features: number[]; contributions: number[] } {
  const d = h.length;
  if (weights.length !== classes * d) throw new ConceptLensError('ERR_SHAPE', `weights: expected ${classes}×${d} = ${classes * d} values, got ${weights.length}`);
  if (!Number.isInteger(y) || y < 0 || y >= classes) throw argError('class', `an integer in [0, ${classes})`, y);
  requireInteger(k, 'k', 1);  // slice(0, -1) would keep all but one
  const contrib = Array.from(h, (v, i) => v * weights[y * d + i]);
  const order = contrib.map((_, i) => i).sort((a, b) => contrib[b] - contrib[a] || a - b).slice(0, k);
  return { features: order, contributions: order.map((i) => contrib[i]) };
}
