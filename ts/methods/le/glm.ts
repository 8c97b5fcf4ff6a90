// LE's concept ranking: a multi-target elastic net, solved natively
// (exact coordinate descent by default, or GLM-SAGA as the reference runs it).
import type { ProgressOptions } from '../../abort.js';
import { glmFit, glmObjective } from '../../engine/glm.js';
import { argError, ConceptLensError } from '../../errors.js';
import type { Mat } from '../../matrix.js';
import { requireSeed } from '../../random.js';

/** Options of {@link fitElasticNet}; unset ones take the engine's defaults (the reference's settings). */
export interface GlmOptions extends ProgressOptions {
  /** 'cd': exact coordinate descent (default); 'saga': GLM-SAGA as the reference runs it. */
  solver?: 'cd' | 'saga';
  /** λ, the overall penalty weight (default {@link LE_LAMBDA}). */
  lambda?: number;
  /** α in [0, 1], the L1 share of the penalty (default {@link LE_ALPHA}). */
  alpha?: number;
  /** cd: converged when no coordinate would move by this much, in units of its feature's standard deviation (default 1e-9). */
  tol?: number;
  /** cd: most passes per target (default 100,000). */
  maxPasses?: number;
  /**
   * cd: what computes the moments XᵀX and XᵀY. 'fp32': fp32 GEMMs. 'int16': each centred column rounded to a 12-bit
   * integer grid of its own scale, the products exact integer sums (AVX-512 VNNI; about twice the fp32 rate). A fit on
   * them is checked by one exact pass over the data: with each target's support and signs held the objective is
   * quadratic, so the exact gradient there says how far its minimum lies; targets more than 1e-8 of their objective away
   * take that step. 'auto' (default): 'int16' where the CPU has VNNI and every column of X and Y lies within 8 standard
   * deviations of its mean, kept when no target lay more than 1e-7 away (on LE's problem the largest is 6e-9), else
   * fitted again on 'fp32' (an ill-conditioned problem). The fit's `momentsBy` says which the weights came from.
   */
  moments?: 'auto' | 'fp32' | 'int16';
  /** saga: rows per minibatch (default 512). */
  batch?: number;
  /** saga: step size (default 5e-4). */
  step?: number;
  /** saga: most epochs (default 500). */
  maxEpochs?: number;
  /** saga: stop after this many epochs without improving the best objective by `tolPerTarget`·targets (default 5). */
  lookbehind?: number;
  /** saga: improvement per target that counts as progress (default 1e-5). */
  tolPerTarget?: number;
  /** saga: seeds the minibatch order, an integer in 0..2³¹−1 (default 0). */
  seed?: number;
}

/** A multi-target elastic-net fit from {@link fitElasticNet}. */
export interface GlmFit {
  /** targets × features, row-major. */
  weights: Float32Array;
  /** Unpenalised intercept per target. */
  bias: Float32Array;
  /** Exact float64 objective per target. */
  objective: Float64Array;
  /** cd: most passes any target took; saga: epochs run. */
  iterations: number;
  /** cd: what computed the moments (see {@link GlmOptions.moments}). */
  momentsBy?: 'fp32' | 'int16';
}


/** LE's regularisation: GLM-SAGA's λ_max 0.05 divided by α = 0.99. */
export const LE_ALPHA = 0.99;
/** LE's λ: GLM-SAGA's λ_max 0.05 divided by {@link LE_ALPHA} (≈ 0.0505). */
export const LE_LAMBDA = 0.05 / 0.99;

/** Per column k of Y: min (1/2n)‖y − Xw − β₀‖² + λ(α‖w‖₁ + ½(1−α)‖w‖²), off the JS thread. */
export function fitElasticNet(X: Mat, Y: Mat, opts: GlmOptions = {}): Promise<GlmFit> {
  if (X.rows !== Y.rows) throw new ConceptLensError('ERR_SHAPE', `Y: expected ${X.rows} rows (as X), got ${Y.rows}`);
  const { signal, onProgress, ...rest } = opts;
  checkPenalty(rest);
  // Unset options fall back to the native defaults (the reference's settings).
  const options = Object.fromEntries(Object.entries({ lambda: LE_LAMBDA, alpha: LE_ALPHA, ...rest }).filter(([, v]) => v !== undefined));
  return glmFit(X.data, X.rows, X.cols, Y.data, Y.cols, options, { signal, onProgress });
}

/**
 * The exact float64 objective of {@link fitElasticNet} per target (column of Y) for given weights (targets × features)
 * and bias; λ and α default to {@link LE_LAMBDA} and {@link LE_ALPHA}.
 */
export function elasticNetObjective(X: Mat, Y: Mat, weights: Float32Array, bias: Float32Array,
  en: { lambda?: number; alpha?: number } = {}): Float64Array {
  return glmObjective(X.data, X.rows, X.cols, Y.data, Y.cols, weights, bias, { lambda: LE_LAMBDA, alpha: LE_ALPHA, ...en });
}


/** λ ≥ 0, α in [0, 1], positive tolerances and steps, a seed in 0..2³¹−1: an error naming the option otherwise. */
function checkPenalty(o: Omit<GlmOptions, 'signal' | 'onProgress'>): void {
  if (o.lambda !== undefined && !(Number.isFinite(o.lambda) && o.lambda >= 0)) throw argError('lambda', 'a finite number ≥ 0', o.lambda);
  if (o.alpha !== undefined && !(o.alpha >= 0 && o.alpha <= 1)) throw argError('alpha', 'a number in [0, 1]', o.alpha);
  for (const k of ['tol', 'step'] as const)
    if (o[k] !== undefined && !(Number.isFinite(o[k]) && o[k]! > 0)) throw argError(k, 'a finite number > 0', o[k]);
  if (o.tolPerTarget !== undefined && !(Number.isFinite(o.tolPerTarget) && o.tolPerTarget >= 0)) throw argError('tolPerTarget', 'a finite number >= 0', o.tolPerTarget);
  if (o.solver !== undefined && o.solver !== 'cd' && o.solver !== 'saga') throw argError('solver', "'cd' or 'saga'", o.solver);
  if (o.moments !== undefined && !['auto', 'fp32', 'int16'].includes(o.moments)) throw argError('moments', "'auto', 'fp32' or 'int16'", o.moments);
  // The engine takes any integer >= 0; the library's seeds stop at 2³¹−1 everywhere.
  if (o.seed !== undefined) requireSeed(o.seed);
}
