/** `conceptlens le`: Linear Explanations of neurons, and their simulation scores. */
import { Option, type Command } from 'commander';
import { writeFileAtomic } from '../io/atomic.js';
import { readLabels, readMatrix, readVector, type MatrixReadOptions } from '../io/matrix.js';
import { writeNpy } from '../io/npy.js';
import { readNames } from '../io/text.js';
import type { Mat } from '../matrix.js';
import { ConceptLensError } from '../errors.js';
import {
  ablationScores, calibrateSigmoid, conceptCosines, correlationScores, explainNeurons, filterConcepts, formatExplanation,
  readExplanationsCsv, readSplit, seededSplit, sigmoidConcepts, summarise, writeExplanationsCsv, writeSplit,
  type Explanation, type Split,
} from '../methods/le/index.js';
import { progressBar } from './progress.js';
import { integer, number, oneOf } from './options.js';
import { act, UsageError } from './run.js';
import { MAX_SEED } from '../random.js';

const matrix = (path: string, what: string, o: MatrixReadOptions = {}): Mat => readMatrix(path, { what, ...o });

interface SplitOpts {
  splits?: string;
  seed: number;
  json?: boolean;
}
const splitFor = (o: SplitOpts, n: number): Split => (o.splits ? readSplit(o.splits, n) : seededSplit(n, o.seed));

function report(label: string, scores: Float64Array): string {
  const s = summarise(scores);
  return `${label}: ${s.mean.toFixed(4)} ± ${s.sem.toFixed(4)} (mean ± std/√n over ${s.n} neurons)`;
}

/** A score's summary line (`and` appended), or with --json the summary as JSON with the run's other facts. */
function printScores(o: { json?: boolean }, label: string, scores: Float64Array, facts: Record<string, unknown>, and = ''): void {
  console.log(o.json ? JSON.stringify({ ...facts, metric: label, ...summarise(scores) }) : report(label, scores) + and);
}

function scored(exps: Explanation[], column: string, scores: Float64Array): Explanation[] {
  return exps.map((e, i) => ({ ...e, extra: { ...e.extra, [column]: String(scores[i]) } }));
}

interface ExplainOpts extends SplitOpts {
  activations: string;
  concepts: string;
  conceptNames: string;
  out: string;
  solver: 'cd' | 'saga';
  moments?: 'auto' | 'fp32' | 'int16';
  layer?: string;
  maxLength: number;
  tolerance: number;
  quiet?: boolean;
}

/** The names file, one per concept column of P. */
function conceptNames(path: string, P: Mat, concepts: string): string[] {
  const names = readNames(path);
  if (names.length !== P.cols) throw new UsageError(`concept names ${path}: has ${names.length} names, but ${concepts} has ${P.cols} concept columns`);
  return names;
}

async function explain(o: ExplainOpts, signal: AbortSignal): Promise<void> {
  if (o.moments && o.solver === 'saga') throw new UsageError('--moments would be ignored with --solver saga: GLM-SAGA computes no moments; give one or the other');
  const A = matrix(o.activations, 'activations');
  const P = matrix(o.concepts, 'concepts', { rows: A.rows, rowsFrom: `one per activation sample of ${o.activations}` });
  const names = conceptNames(o.conceptNames, P, o.concepts);
  const split = splitFor(o, A.rows);
  const bar = progressBar('explaining', 'neurons', o.quiet ? false : undefined);
  try {
    const exps = await explainNeurons(A, P, names, {
      split, solver: o.solver, moments: o.moments, layer: o.layer, maxLength: o.maxLength, tolerance: o.tolerance,
      signal, onProgress: (d, t) => bar.update(d, t),
    });
    bar.stop();
    // Outputs only once everything succeeded: a failed run leaves earlier ones as they were.
    writeExplanationsCsv(o.out, exps);
    if (!o.splits) {
      const dir = o.out.replace(/\.csv$/i, '') + '.splits';
      writeSplit(dir, split);
      console.error(`split 70/10/20 with seed ${o.seed}, recorded in ${dir} (pass --splits ${dir} to simulate)`);
    }
    if (!o.quiet && !o.json) for (const e of exps.slice(0, 20)) console.log(`unit ${e.unit} (val r ${e.valCorrelation.toFixed(3)}): ${formatExplanation(e)}`);
    printScores(o, 'validation correlation', Float64Array.from(exps, (e) => e.valCorrelation), { out: o.out }, ` → ${o.out}`);
  } finally {
    bar.stop();
  }
}

interface SimulateOpts extends SplitOpts {
  explanations: string;
  concepts: string;
  conceptNames: string;
  activations: string;
  out?: string;
}

function loadForScoring(o: SimulateOpts) {
  const exps = readExplanationsCsv(o.explanations);
  const A = matrix(o.activations, 'activations');
  const P = matrix(o.concepts, 'concepts', { rows: A.rows, rowsFrom: `one per activation sample of ${o.activations}` });
  return { exps, A, P, names: conceptNames(o.conceptNames, P, o.concepts), split: splitFor(o, A.rows) };
}

function simulateCmd(o: SimulateOpts): void {
  const { exps, A, P, names, split } = loadForScoring(o);
  const scores = correlationScores(exps, P, names, A, split.test);
  if (o.out) writeExplanationsCsv(o.out, scored(exps, 'sim correlation', scores));
  printScores(o, 'simulation correlation (test split)', scores, { out: o.out ?? null });
}

interface AblateOpts extends SimulateOpts {
  headWeight: string;
  headBias: string;
  labels: string;
  mode: 'optim' | 'norm';
  temperature: number;
}

function ablateCmd(o: AblateOpts): void {
  const { exps, A, P, names, split } = loadForScoring(o);
  const W = matrix(o.headWeight, 'head weights', { cols: A.cols, colsFrom: `one per unit of ${o.activations}` });
  const b = readVector(o.headBias, { what: 'head bias', length: W.rows, lengthFrom: `one per class row of ${o.headWeight}` });
  const labels = readLabels(o.labels, { rows: A.rows, rowsFrom: `one per sample of ${o.activations}`, classes: W.rows });
  const scores = ablationScores(exps, P, names, A, { head: { W, b }, labels, split, mode: o.mode, temperature: o.temperature });
  if (o.out) writeExplanationsCsv(o.out, scored(exps, `sim ablation(${o.mode})`, scores));
  printScores(o, `simulation ablation (${o.mode}, test split)`, scores, { out: o.out ?? null });
}

function showCmd(o: { explanations: string; limit: number }): void {
  const exps = readExplanationsCsv(o.explanations);
  for (const e of exps.slice(0, o.limit)) console.log(`unit ${e.unit}: ${formatExplanation(e)}`);
  // valCorrelation is NaN when the CSV lacks the column, so an absent column reports nothing.
  const columns: Record<string, number[]> = { 'val correlation': exps.map((e) => e.valCorrelation) };
  for (const c of Object.keys(exps[0]?.extra ?? {}).filter((c) => c.startsWith('sim '))) columns[c] = exps.map((e) => Number(e.extra[c]));
  for (const [c, vals] of Object.entries(columns)) {
    const finite = vals.filter(Number.isFinite);
    if (finite.length > 0) console.log(report(c, Float64Array.from(finite)));
  }
}

interface ConceptsOpts {
  embeddings: string;
  text: string;
  names: string;
  out: string;
  namesOut: string;
  a: number;
  b: number;
  calibrateLabels?: string;
  classConcepts?: string;
  filter: boolean;
  json?: boolean;
}

/** LE(CLIP): P = sigmoid(a·(cos + b)), (a, b) given or calibrated on labels, then LE's concept filter. */
async function conceptsCmd(o: ConceptsOpts, signal: AbortSignal): Promise<void> {
  const names = readNames(o.names);
  const text = matrix(o.text, 'concept text embeddings', { rows: names.length, rowsFrom: `one per name of ${o.names}` });
  const images = matrix(o.embeddings, 'image embeddings', { cols: text.cols, colsFrom: `the width of ${o.text}` });
  if (o.calibrateLabels && !o.classConcepts) throw new UsageError('--calibrate-labels needs --class-concepts (one concept name per class id, comma-separated)');
  const classes = o.classConcepts?.split(',').map((c) => c.trim()) ?? [];
  const cols = classes.map((c) => {
    const k = names.indexOf(c);
    if (k < 0) throw new UsageError(`--class-concepts: '${c}' is not a concept in ${o.names}`);
    return k;
  });
  const labels = o.calibrateLabels ? readLabels(o.calibrateLabels, { rows: images.rows, rowsFrom: `one per image of ${o.embeddings}`, classes: classes.length }) : undefined;
  const cos = await conceptCosines(images, text, { signal });
  let { a, b } = o;
  if (labels) {
    const sub = { data: new Float32Array(cos.rows * cols.length), rows: cos.rows, cols: cols.length };
    const onehot = { data: new Float32Array(cos.rows * cols.length), rows: cos.rows, cols: cols.length };
    for (let i = 0; i < cos.rows; i++)
      cols.forEach((k, j) => {
        sub.data[i * cols.length + j] = cos.data[i * cos.cols + k];
        onehot.data[i * cols.length + j] = labels[i] === j ? 1 : 0;
      });
    ({ a, b } = calibrateSigmoid(sub, onehot));
    console.error(`calibrated on ${classes.length} class concepts: a = ${a}, b = ${b}`);
  }
  const P = sigmoidConcepts(cos, a, b);
  const kept = o.filter ? filterConcepts(P, names) : { P, names };
  // An empty P explains nothing, and le explain would refuse it: say why here, before writing it.
  if (kept.P.cols === 0)
    throw new ConceptLensError('ERR_ARG', `--a, --b: no concept has a top-5 mean probability >= 0.5 at a = ${a}, b = ${b} ` +
      `(the largest cosine is ${cos.data.reduce((m, v) => Math.max(m, v), -Infinity).toFixed(4)}); fit (a, b) to these embeddings with --calibrate-labels and --class-concepts, or give another --b`);
  writeNpy(o.out, kept.P.data, [kept.P.rows, kept.P.cols]);
  writeFileAtomic(o.namesOut, kept.names.join('\n') + '\n');
  const summary = { out: o.out, namesOut: o.namesOut, images: kept.P.rows, concepts: kept.P.cols, of: names.length, a, b };
  console.log(o.json ? JSON.stringify(summary) : `P: ${kept.P.rows} × ${kept.P.cols} (of ${names.length} concepts; a = ${a}, b = ${b}) → ${o.out}, names → ${o.namesOut}`);
}

/** The options of the commands that score neurons on a split: the split, and a JSON summary of the score. */
const splitOptions = (c: Command) =>
  c.option('--splits <dir>', 'train/val/test index files: DIR/{train,val,test}_ids.npy or .txt')
    .option('--json', 'print a JSON summary (the score\'s mean, sem and n)')
    // The seed only draws a split, so with --splits it would be silently ignored.
    .addOption(new Option('--seed <n>', 'seed of the 70/10/20 split when --splits is absent')
      .argParser(integer('--seed', 0, MAX_SEED)).default(0).conflicts('splits'));

const scoringOptions = (c: Command) =>
  splitOptions(c.requiredOption('--explanations <csv>', 'explanations in the reference CSV layout')
    .requiredOption('--concepts <npy>', "simulator's concept probabilities, samples × concepts")
    .requiredOption('--concept-names <txt>', 'one name per concept column')
    .requiredOption('--activations <npy>', 'true activations, samples × units')
    .option('--out <csv>', 'write the explanations with the score column added'));

export function registerLe(program: Command): void {
  const le = program.command('le').description('Linear Explanations: neurons as sparse linear combinations of concepts');
  const solverOpt = oneOf('--solver', ['cd', 'saga'] as const);
  splitOptions(le.command('explain')
    .description('explain each unit by elastic-net ranking and greedy search (writes the reference CSV layout)')
    .requiredOption('--activations <npy>', 'activations, samples × units (float32/float64)')
    .requiredOption('--concepts <npy>', 'concept probabilities P, samples × concepts')
    .requiredOption('--concept-names <txt>', 'one name per concept column')
    .requiredOption('--out <csv>', 'output CSV')
    .option('--solver <cd|saga>', "elastic net: exact coordinate descent, or the reference's GLM-SAGA", solverOpt, 'cd')
    .option('--moments <auto|fp32|int16>', "cd: XᵀX and XᵀY from fp32 GEMMs, or from columns rounded to 12 bits (AVX-512 VNNI, about twice as fast; the minimum moves ~1e-8); auto (default) rounds where every column lies within 8 standard deviations, and refits on fp32 if the fit's exact check finds rounding moved a minimum by more than 1e-7",
      oneOf('--moments', ['auto', 'fp32', 'int16'] as const))
    .option('--layer <name>', 'layer name for the CSV')
    .option('--max-length <n>', 'most concepts per explanation', integer('--max-length'), 10)
    .option('--tolerance <r>', 'least validation-correlation gain to keep a concept', number('--tolerance', { min: 0 }), 0.02)
    .option('--quiet', 'print only the summary'))
    .action(act((o: ExplainOpts, { signal }) => explain(o, signal)));
  scoringOptions(le.command('simulate').description('correlation scoring: Pearson r of simulated vs true activations on the test split'))
    .action(act((o: SimulateOpts) => simulateCmd(o)));
  scoringOptions(le.command('ablate').description('ablation scoring through a linear head: 1 − Σ|L_sim − L_orig| / Σ|L_mean − L_orig|'))
    .requiredOption('--head-weight <npy>', 'classes × units weights of the linear head after the layer')
    .requiredOption('--head-bias <npy>', 'its bias, classes values')
    .requiredOption('--labels <npy>', 'class label per sample (1-D integers)')
    .option('--mode <optim|norm>', 'fit the simulation on val (optim) or match its statistics (norm)', oneOf('--mode', ['optim', 'norm'] as const), 'optim')
    .option('--temperature <T>', 'logits are divided by T (> 0)', number('--temperature', { min: 0, above: true }), 1.1)
    .action(act((o: AblateOpts) => ablateCmd(o)));
  le.command('concepts')
    .description('LE(CLIP) concept matrix: P = sigmoid(a·(cos(image, concept text) + b)), then keep concepts whose top-5 mean ≥ 0.5')
    .requiredOption('--embeddings <npy>', 'image embeddings in the text space, images × d')
    .requiredOption('--text <npy>', 'concept text embeddings, concepts × d (fp16/fp32)')
    .requiredOption('--names <txt>', 'one name per concept row')
    .requiredOption('--out <npy>', 'P, images × kept concepts (float32)')
    .requiredOption('--names-out <txt>', 'names of the kept concepts')
    .option('--a <a>', 'sigmoid slope (the reference explainer: 60)', number('--a'), 60)
    .option('--b <b>', 'sigmoid shift (the reference explainer: -0.09)', number('--b'), -0.09)
    .option('--calibrate-labels <npy>', 'calibrate (a, b) by grid search against these class labels')
    .option('--class-concepts <list>', 'with --calibrate-labels: the concept name of each class id, comma-separated')
    .option('--no-filter', 'keep every concept')
    .option('--json', 'print a JSON summary')
    .action(act((o: ConceptsOpts, { signal }) => conceptsCmd(o, signal)));
  le.command('show').description('print explanations in text form and the mean ± sem of their score columns')
    .requiredOption('--explanations <csv>', 'explanations CSV')
    .option('--limit <n>', 'explanations to print', integer('--limit', 0), 10)
    .action(act((o: { explanations: string; limit: number }) => showCmd(o)));
}
