/** `conceptlens le`: Linear Explanations of neurons, and their simulation scores. */
import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { readNpy } from '../io/npy.js';
import {
  ablationScores, calibrateSigmoid, conceptCosines, correlationScores, explainNeurons, filterConcepts, readSplit,
  seededSplit, sigmoidConcepts, summarise, writeSplit, type Mat, type Split,
} from '../methods/le.js';
import { writeNpy } from '../io/npy.js';
import { halvesToFloats } from '../io/fp16.js';
import { writeFileAtomic } from '../io/atomic.js';
import { formatExplanation, readExplanationsCsv, writeExplanationsCsv, type Explanation } from '../methods/le-csv.js';
import { progressBar } from './progress.js';
import { integer, number } from './options.js';

/** A 2-D float32/float64 .npy as a float32 matrix. */
export function readMatrix(path: string, what: string): Mat {
  const a = readNpy(path);
  if (a.shape.length !== 2 || (a.dtype !== 'float32' && a.dtype !== 'float64'))
    throw new Error(`${what} ${path}: expected a 2-D float32 or float64 array (samples × columns), got ${a.dtype} of shape [${a.shape.join(', ')}]`);
  return { data: a.data instanceof Float32Array ? a.data : Float32Array.from(a.data as Float64Array), rows: a.shape[0], cols: a.shape[1] };
}

/** A 2-D embedding .npy (fp16, fp32 or fp64) as a float32 matrix. */
function readEmbeddings(path: string, what: string): Mat {
  const a = readNpy(path);
  if (a.dtype !== 'float16') return readMatrix(path, what);
  if (a.shape.length !== 2) throw new Error(`${what} ${path}: expected a 2-D array, got shape [${a.shape.join(', ')}]`);
  return { data: halvesToFloats(a.data as Uint16Array), rows: a.shape[0], cols: a.shape[1] };
}

/** One name per line; \n, \r\n or bare \r separate lines; a final newline adds no name. */
export function readNames(path: string): string[] {
  const lines = readFileSync(path, 'utf8').split(/\r\n|\r|\n/);
  if (lines.at(-1) === '') lines.pop();
  return lines;
}

function readInts(path: string, what: string): Int32Array {
  const a = readNpy(path);
  if (a.shape.length !== 1) throw new Error(`${what} ${path}: expected a 1-D integer array, got shape [${a.shape.join(', ')}]`);
  return Int32Array.from(Array.from(a.data as ArrayLike<number | bigint>, Number));
}

interface SplitOpts {
  splits?: string;
  seed: number;
}
const splitFor = (o: SplitOpts, n: number): Split => (o.splits ? readSplit(o.splits, n) : seededSplit(n, o.seed));

function report(label: string, scores: Float64Array): string {
  const s = summarise(scores);
  return `${label}: ${s.mean.toFixed(4)} ± ${s.sem.toFixed(4)} (mean ± std/√n over ${s.n} neurons)`;
}

function scored(exps: Explanation[], column: string, scores: Float64Array): Explanation[] {
  return exps.map((e, i) => ({ ...e, extra: { ...e.extra, [column]: String(scores[i]) } }));
}

function run(command: Command, fn: () => Promise<void> | void): Promise<void> {
  return Promise.resolve()
    .then(fn)
    .catch((err) => command.error(`error: ${err instanceof Error ? err.message : String(err)}`));
}

interface ExplainOpts extends SplitOpts {
  activations: string;
  concepts: string;
  conceptNames: string;
  out: string;
  solver: 'cd' | 'saga';
  layer?: string;
  maxLength: number;
  tolerance: number;
  quiet?: boolean;
}

async function explain(o: ExplainOpts): Promise<void> {
  const A = readMatrix(o.activations, 'activations');
  const P = readMatrix(o.concepts, 'concepts');
  const names = readNames(o.conceptNames);
  if (names.length !== P.cols)
    throw new Error(`concept names ${o.conceptNames}: has ${names.length} names, but ${o.concepts} has ${P.cols} concept columns`);
  const split = splitFor(o, A.rows);
  if (!o.splits) {
    const dir = o.out.replace(/\.csv$/i, '') + '.splits';
    writeSplit(dir, split);
    console.error(`split 70/10/20 with seed ${o.seed}, recorded in ${dir} (pass --splits ${dir} to simulate)`);
  }
  const bar = progressBar('explaining', 'neurons', o.quiet ? false : undefined);
  const ac = new AbortController();
  process.once('SIGINT', () => ac.abort());
  try {
    const exps = await explainNeurons(A, P, names, {
      split, solver: o.solver, layer: o.layer, maxLength: o.maxLength, tolerance: o.tolerance,
      signal: ac.signal, onProgress: (d, t) => bar.update(d, t),
    });
    bar.stop();
    writeExplanationsCsv(o.out, exps);
    if (!o.quiet) for (const e of exps.slice(0, 20)) console.log(`unit ${e.unit} (val r ${e.valCorrelation.toFixed(3)}): ${formatExplanation(e)}`);
    console.log(report('validation correlation', Float64Array.from(exps, (e) => e.valCorrelation)) + ` → ${o.out}`);
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
  const A = readMatrix(o.activations, 'activations');
  const P = readMatrix(o.concepts, 'concepts');
  const names = readNames(o.conceptNames);
  if (names.length !== P.cols)
    throw new Error(`concept names ${o.conceptNames}: has ${names.length} names, but ${o.concepts} has ${P.cols} concept columns`);
  return { exps, A, P, names, split: splitFor(o, A.rows) };
}

function simulateCmd(o: SimulateOpts): void {
  const { exps, A, P, names, split } = loadForScoring(o);
  const scores = correlationScores(exps, P, names, A, split.test);
  console.log(report('simulation correlation (test split)', scores));
  if (o.out) writeExplanationsCsv(o.out, scored(exps, 'sim correlation', scores));
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
  const W = readMatrix(o.headWeight, 'head weights');
  const b = readNpy(o.headBias);
  if (b.dtype !== 'float32' && b.dtype !== 'float64') throw new Error(`head bias ${o.headBias}: expected float32 or float64, got ${b.dtype}`);
  const scores = ablationScores(exps, P, names, A, {
    head: { W, b: Float32Array.from(b.data as Float32Array | Float64Array) }, labels: readInts(o.labels, 'labels'), split, mode: o.mode, temperature: o.temperature,
  });
  console.log(report(`simulation ablation (${o.mode}, test split)`, scores));
  if (o.out) writeExplanationsCsv(o.out, scored(exps, `sim ablation(${o.mode})`, scores));
}

function showCmd(o: { explanations: string; limit: number }): void {
  const exps = readExplanationsCsv(o.explanations);
  for (const e of exps.slice(0, o.limit)) console.log(`unit ${e.unit}: ${formatExplanation(e)}`);
  const columns = Object.keys(exps[0]?.extra ?? {}).filter((c) => c.startsWith('sim '));
  for (const c of columns) {
    const vals = exps.map((e) => Number(e.extra[c])).filter(Number.isFinite);
    console.log(report(c, Float64Array.from(vals)));
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
}

/** LE(CLIP): P = sigmoid(a·(cos + b)), (a, b) given or calibrated on labels, then LE's concept filter. */
async function conceptsCmd(o: ConceptsOpts): Promise<void> {
  const names = readNames(o.names);
  const text = readEmbeddings(o.text, 'concept text embeddings');
  if (names.length !== text.rows) throw new Error(`concept names ${o.names}: has ${names.length} names, but ${o.text} has ${text.rows} rows`);
  const cos = await conceptCosines(readEmbeddings(o.embeddings, 'image embeddings'), text);
  let { a, b } = o;
  if (o.calibrateLabels) {
    if (!o.classConcepts) throw new Error('--calibrate-labels needs --class-concepts (one concept name per class id, comma-separated)');
    const classes = o.classConcepts.split(',').map((c) => c.trim());
    const cols = classes.map((c) => {
      const k = names.indexOf(c);
      if (k < 0) throw new Error(`--class-concepts: '${c}' is not a concept in ${o.names}`);
      return k;
    });
    const labels = readInts(o.calibrateLabels, 'labels');
    if (labels.length !== cos.rows) throw new Error(`labels ${o.calibrateLabels}: ${labels.length} labels for ${cos.rows} images`);
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
  writeNpy(o.out, kept.P.data, [kept.P.rows, kept.P.cols]);
  writeFileAtomic(o.namesOut, kept.names.join('\n') + '\n');
  console.log(`P: ${kept.P.rows} × ${kept.P.cols} (of ${names.length} concepts; a = ${a}, b = ${b}) → ${o.out}, names → ${o.namesOut}`);
}

const splitOptions = (c: Command) =>
  c.option('--splits <dir>', 'train/val/test index files: DIR/{train,val,test}_ids.npy or .txt')
    .option('--seed <n>', 'seed of the 70/10/20 split when --splits is absent', integer('--seed', 0), 0);

const scoringOptions = (c: Command) =>
  splitOptions(c.requiredOption('--explanations <csv>', 'explanations in the reference CSV layout')
    .requiredOption('--concepts <npy>', "simulator's concept probabilities, samples × concepts")
    .requiredOption('--concept-names <txt>', 'one name per concept column')
    .requiredOption('--activations <npy>', 'true activations, samples × units')
    .option('--out <csv>', 'write the explanations with the score column added'));

export function registerLe(program: Command): void {
  const le = program.command('le').description('Linear Explanations: neurons as sparse linear combinations of concepts');
  splitOptions(le.command('explain')
    .description('explain each unit by elastic-net ranking and greedy search (writes the reference CSV layout)')
    .requiredOption('--activations <npy>', 'activations, samples × units (float32/float64)')
    .requiredOption('--concepts <npy>', 'concept probabilities P, samples × concepts')
    .requiredOption('--concept-names <txt>', 'one name per concept column')
    .requiredOption('--out <csv>', 'output CSV')
    .option('--solver <cd|saga>', "elastic net: exact coordinate descent, or the reference's GLM-SAGA", 'cd')
    .option('--layer <name>', 'layer name for the CSV')
    .option('--max-length <n>', 'most concepts per explanation', integer('--max-length'), 10)
    .option('--tolerance <r>', 'least validation-correlation gain to keep a concept', number('--tolerance'), 0.02)
    .option('--quiet', 'print only the summary'))
    .action((o: ExplainOpts, c: Command) => run(c, () => explain(o)));
  scoringOptions(le.command('simulate').description('correlation scoring: Pearson r of simulated vs true activations on the test split'))
    .action((o: SimulateOpts, c: Command) => run(c, () => simulateCmd(o)));
  scoringOptions(le.command('ablate').description('ablation scoring through a linear head: 1 − Σ|L_sim − L_orig| / Σ|L_mean − L_orig|'))
    .requiredOption('--head-weight <npy>', 'classes × units weights of the linear head after the layer')
    .requiredOption('--head-bias <npy>', 'its bias, classes values')
    .requiredOption('--labels <npy>', 'class label per sample (1-D integers)')
    .option('--mode <optim|norm>', 'fit the simulation on val (optim) or match its statistics (norm)', 'optim')
    .option('--temperature <T>', 'logits are divided by T', number('--temperature'), 1.1)
    .action((o: AblateOpts, c: Command) => run(c, () => ablateCmd(o)));
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
    .action((o: ConceptsOpts, c: Command) => run(c, () => conceptsCmd(o)));
  le.command('show').description('print explanations in text form and the mean ± sem of their score columns')
    .requiredOption('--explanations <csv>', 'explanations CSV')
    .option('--limit <n>', 'explanations to print', integer('--limit', 0), 10)
    .action((o: { explanations: string; limit: number }, c: Command) => run(c, () => showCmd(o)));
}
