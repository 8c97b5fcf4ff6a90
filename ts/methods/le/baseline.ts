// The baseline LE's simulation scores are compared with: each neuron
// explained by the one concept most correlated with it.
import type { Mat } from '../../matrix.js';
import { checkSamples } from './simulate.js';
import { validateSplit, type Split } from './splits.js';
import { column, pearson } from './stats.js';

/**
 * Per unit (column of A), the concept of P most correlated (|r|) with it on train+val, and that concept's test
 * correlation signed as chosen: the single-best-concept baseline of LE's simulation scores.
 */
export function singleBestScores(A: Mat, P: Mat, split: Split): Float64Array {
  checkSamples(A, P);
  validateSplit(split, A.rows);
  const fitIds = Int32Array.from([...split.train, ...split.val]);
  return Float64Array.from({ length: A.cols }, (_, u) => {
    const a = column(A, u, fitIds);
    let best = 0, arg = 0;
    for (let k = 0; k < P.cols; k++) {
      const r = pearson(column(P, k, fitIds), a);
      if (Math.abs(r) > Math.abs(best)) best = r, arg = k;
    }
    // No correlated concept (or none at all): nothing to score, and P may have no column `arg` to read.
    return best === 0 ? 0 : Math.sign(best) * pearson(column(P, arg, split.test), column(A, u, split.test));
  });
}
