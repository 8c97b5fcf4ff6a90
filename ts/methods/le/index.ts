// Linear Explanations (Oikarinen & Weng, ICML 2024): each neuron explained as
// a sparse linear combination of concept activations, found by an elastic-net
// ranking and a greedy search, and scored by simulation (correlation and
// ablation). Conventions: matrices are row-major, samples × columns.
export { fitElasticNet, elasticNetObjective, LE_ALPHA, LE_LAMBDA, type GlmOptions, type GlmFit } from './glm.js';
export { labelConcepts, conceptCosines, sigmoidConcepts, calibrateSigmoid, filterConcepts } from './concepts.js';
export { pearson, summarise, standardisedRows } from './stats.js';
export { seededSplit, validateSplit, readSplit, writeSplit, type Split } from './splits.js';
export { rankConcepts, greedySearch, explainNeurons, type GreedyOptions, type GreedyResult, type ExplainOptions } from './explain.js';
export { simulate, nameIndex, correlationScores } from './simulate.js';
export { ablationScores, type AblationOptions, type Head } from './ablate.js';
export {
  readExplanationsCsv, formatExplanationsCsv, writeExplanationsCsv, formatExplanation, MAX_TERMS, type Explanation,
} from './csv.js';
