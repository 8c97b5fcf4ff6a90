// LE's correlation scoring: an explanation simulates its neuron as Σ w·P[:, c] + b.
import { argError, ConceptLensError } from '../../errors.js';
import { checkDisjointIndices, requireFiniteMatrix, type Mat } from '../../matrix.js';
import { uniqueNames } from '../../io/text.js';
import type { Explanation } from './csv.js';
import { column, pearson } from './stats.js';

/**
 * Activations A and concepts P over the same samples, each of its stated shape and finite: what every LE step
 * reads. Errors name the matrix (ERR_SHAPE, ERR_NAN).
 */
export function checkSamples(A: Mat, P: Mat): void {
  requireFiniteMatrix(A, 'activations');
  requireFiniteMatrix(P, 'concepts');
  if (P.rows !== A.rows) throw new ConceptLensError('ERR_SHAPE', `concepts: expected ${A.rows} rows (one per activation sample), got ${P.rows}`);
}

/** Σ w·P[:, concept] + bias over rows `ids`: the simulator's prediction of the neuron. */
export function simulate(e: Explanation, P: Mat, index: Map<string, number>, ids: Int32Array): Float64Array {
  const pred = new Float64Array(ids.length).fill(e.bias);
  e.concepts.forEach((c, t) => {
    const k = index.get(c);
    if (k === undefined) throw new ConceptLensError('ERR_ARG', `unit ${e.unit}: concept '${c}' is not among the simulator's concept names`);
    for (let i = 0; i < ids.length; i++) pred[i] += e.weights[t] * P.data[ids[i] * P.cols + k];
  });
  return pred;
}

/**
 * Concept name → column of P, for simulating explanations by name.
 * Names are trimmed.
 * @throws ConceptLensError ERR_SHAPE when there is not one name per column, ERR_FILE for an empty or repeated name.
 */
export function nameIndex(names: string[], P: Mat): Map<string, number> {
  if (names.length !== P.cols) throw new ConceptLensError('ERR_SHAPE', `concept names: expected ${P.cols} (one per concept column), got ${names.length}`);
  return new Map(uniqueNames(names, 'concept names').map((n, i) => [n, i]));
}

export function unitColumn(A: Mat, e: Explanation): number {
  if (!(Number.isInteger(e.unit) && e.unit >= 0 && e.unit < A.cols))
    throw new ConceptLensError('ERR_ARG', `unit ${e.unit}: outside the activations' ${A.cols} units`);
  return e.unit;
}

/** Correlation scoring: Pearson correlation of simulated and true activations on `ids` (the test split), per neuron. */
export function correlationScores(exps: Explanation[], P: Mat, names: string[], A: Mat, ids: Int32Array): Float64Array {
  checkSamples(A, P);
  // An id past A's rows would simulate and read NaN.
  checkDisjointIndices([['ids', ids]], A.rows, 'sample index');
  // A correlation needs two samples; fewer scored every explanation 0.
  if (ids.length < 2) throw argError('ids', 'at least 2 sample indices to correlate over', ids.length);
  const index = nameIndex(names, P);
  return Float64Array.from(exps, (e) => pearson(simulate(e, P, index, ids), column(A, unitColumn(A, e), ids)));
}
