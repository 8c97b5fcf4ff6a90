// `conceptlens splice compare`: concept-level differences between two image
// sets (distribution shift monitoring). Both sets are decomposed over the same
// dictionary with the same centring, so their weights are comparable; per
// concept the mean weights and their change get bootstrap intervals.
import { join } from 'node:path';
import { Option, type Command } from 'commander';
import { unitMean } from '../atlas/splice.js';
import { barsSvg } from '../atlas/svg.js';
import { ConceptLensError } from '../errors.js';
import { writeFileAtomic, requireDirTarget } from '../io/atomic.js';
import { formatCsv } from '../io/csv.js';
import { readMatrix, readVector } from '../io/matrix.js';
import { writeNpy } from '../io/npy.js';
import type { Mat } from '../matrix.js';
import { readVocabulary, SpliceModel } from '../methods/splice.js';
import { compareWeights, type Comparison } from '../methods/splice-compare.js';
import { integer, number } from './options.js';
import { progressBar } from './progress.js';
import { act, UsageError } from './run.js';
import { MAX_SEED } from '../random.js';

interface CompareOpts {
  a: string;
  b: string;
  weights?: boolean;
  concepts?: string;
  conceptNames: string;
  imageMean?: string;
  l1: number;
  resamples: number;
  confidence: number;
  seed: number;
  top: number;
  out: string;
  json?: boolean;
}

/** The two weight matrices: read as given (--weights), or decomposed over --concepts. */
async function weightsOf(o: CompareOpts, names: string[], signal: AbortSignal): Promise<[Mat, Mat]> {
  if (o.weights) {
    const a = readMatrix(o.a, { what: 'weights A', cols: names.length, colsFrom: `one per concept of ${o.conceptNames}` });
    return [a, readMatrix(o.b, { what: 'weights B', cols: names.length, colsFrom: `one per concept of ${o.conceptNames}` })];
  }
  if (!o.concepts) throw new UsageError('--concepts: needed to decompose the embeddings --a and --b (or pass --weights when they are SpLiCE weights)');
  const c = readMatrix(o.concepts, { what: 'concept embeddings', rows: names.length, rowsFrom: `one per concept of ${o.conceptNames}` });
  const a = readMatrix(o.a, { what: 'embeddings A', cols: c.cols, colsFrom: `the width of ${o.concepts}` });
  const b = readMatrix(o.b, { what: 'embeddings B', cols: c.cols, colsFrom: `the width of ${o.concepts}` });
  // One centre for both sets (given, or their pooled mean), so neither set's own mean hides the shift.
  const mean = o.imageMean ? readVector(o.imageMean, { what: 'image mean', length: c.cols, lengthFrom: `the width of ${o.concepts}` }) : unitMean([a, b]);
  const model = SpliceModel.fromEmbeddings(names, c.data, c.cols, mean, { l1: o.l1 });
  const bar = progressBar('splice', 'images', !o.json && process.stderr.isTTY);
  const decompose = async (x: Mat): Promise<Mat> =>
    ({ data: (await model.decompose(x.data, { signal, onProgress: (d, t) => bar.update(d, t) })).weights, rows: x.rows, cols: names.length });
  try {
    return [await decompose(a), await decompose(b)];
  } finally {
    bar.stop();
  }
}

function csv(r: Comparison): string {
  const head = ['concept', 'index', 'mean_a', 'ci_a_lo', 'ci_a_hi', 'mean_b', 'ci_b_lo', 'ci_b_hi', 'change', 'ci_lo', 'ci_hi', 'presence_a', 'presence_b', 'significant'];
  return formatCsv([head, ...r.shifts.map((s) => [s.concept, s.index, s.meanA, ...s.ciA, s.meanB, ...s.ciB, s.change, ...s.ci, s.presenceA, s.presenceB, s.significant ? 'yes' : 'no'])]);
}

async function compare(o: CompareOpts, signal: AbortSignal): Promise<void> {
  requireDirTarget(o.out, 'comparison');
  const names = readVocabulary(o.conceptNames);
  const [wa, wb] = await weightsOf(o, names, signal);
  const r = compareWeights(wa, wb, names, { resamples: o.resamples, confidence: o.confidence, seed: o.seed });
  if (r.shifts.length === 0) throw new ConceptLensError('ERR_ARG', `${o.a}, ${o.b}: every weight is 0 in both sets; nothing to compare (lower --l1?)`);
  const level = `${Math.round(100 * o.confidence)}%`;
  if (!o.weights) {
    writeNpy(join(o.out, 'weights_a.npy'), wa.data, [wa.rows, wa.cols]);
    writeNpy(join(o.out, 'weights_b.npy'), wb.data, [wb.rows, wb.cols]);
  }
  writeFileAtomic(join(o.out, 'compare.csv'), csv(r));
  writeFileAtomic(join(o.out, 'compare.svg'), barsSvg({
    title: `SpLiCE concept shift: mean weight B − A, ${level} bootstrap intervals (${r.nA} vs ${r.nB} images)`,
    bars: r.shifts.slice(0, o.top).map((s) => ({ label: s.concept, value: s.change, lo: s.ci[0], hi: s.ci[1], accent: s.significant })),
    width: 720, digits: 4, note: `orange: interval excludes 0 (${r.resamples} resamples of each set)`,
  }) + '\n');
  const changed = r.shifts.filter((s) => s.significant);
  const summary = {
    nA: r.nA, nB: r.nB, resamples: r.resamples, confidence: r.confidence, concepts: r.shifts.length, significant: changed.length,
    top: changed.slice(0, o.top).map((s) => ({ concept: s.concept, change: s.change, ci: s.ci, meanA: s.meanA, meanB: s.meanB })),
    outputs: ['compare.csv', 'compare.svg'].map((f) => join(o.out, f)),
  };
  console.log(o.json ? JSON.stringify(summary) : [
    `${r.nA} vs ${r.nB} images; ${r.shifts.length} concepts used; ${changed.length} changed (${level} interval excludes 0):`,
    ...summary.top.map((s) => `  ${s.change > 0 ? '+' : ''}${s.change.toFixed(4)} [${s.ci[0].toFixed(4)}, ${s.ci[1].toFixed(4)}]  ${s.concept}`),
    `wrote ${summary.outputs.join(', ')}`,
  ].join('\n'));
}

/** Registers `splice compare` on the `splice` command. */
export function registerSpliceCompare(splice: Command): void {
  splice.command('compare')
    .description('concept-level shift between two image sets: per-concept mean weights with bootstrap intervals, the concepts that changed most, a figure')
    .requiredOption('--a <npy>', 'set A: n×d image embeddings (or n×c SpLiCE weights with --weights)')
    .requiredOption('--b <npy>', 'set B, as --a')
    .option('--weights', '--a and --b are SpLiCE weights already (columns = --concept-names)')
    // What only decomposing uses is refused with --weights rather than ignored.
    .addOption(new Option('--concepts <npy>', 'c×d concept embeddings to decompose over (rows aligned with --concept-names)').conflicts('weights'))
    .requiredOption('--concept-names <txt>', 'one concept per line (the first ", " part is the name)')
    .addOption(new Option('--image-mean <npy>', 'the modality mean μ (d values); without it the mean of both sets\' embeddings').conflicts('weights'))
    .addOption(new Option('--l1 <lambda>', 'λ, the l1 penalty (SpLiCE l1_penalty)').argParser(number('--l1', { min: 0 })).default(0.25).conflicts('weights'))
    .option('--resamples <n>', 'bootstrap resamples', integer('--resamples', 10), 1000)
    .option('--confidence <x>', 'two-sided confidence level of the intervals', number('--confidence', { min: 0, above: true, max: 0.999 }), 0.95)
    .option('--seed <n>', 'seed of the resampling', integer('--seed', 0, MAX_SEED), 0)
    .option('--top <k>', 'concepts in the figure and the summary', integer('--top'), 20)
    .requiredOption('--out <dir>', 'output folder: compare.csv, compare.svg (and weights_a/b.npy when decomposed)')
    .option('--json', 'print a JSON summary')
    .action(act((o: CompareOpts, { signal }) => compare(o, signal)));
}
