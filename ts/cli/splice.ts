/** `conceptlens splice decompose|path|images`: SpLiCE decompositions of embeddings stored as .npy, or of a folder of images. */
import { Option, type Command } from 'commander';
import { readMatrix, readVector } from '../io/matrix.js';
import { writeNpy } from '../io/npy.js';
import { progressBar } from './progress.js';
import {
  meanStats, sampleStats, solveSplice, spliceProblem, splicePath, SPLICE_SOLVERS, type SpliceProblem, type SpliceSolverName,
} from '../methods/splice.js';
import { distributedSplice, type SpliceRunResult } from '../distributed/splice.js';
import { spliceImages, type SpliceImagesOptions } from '../methods/splice-images.js';
import { existingFile, integer, number, oneOf } from './options.js';
import { act, UsageError } from './run.js';
import { registerSpliceCompare } from './splice-compare.js';
import { addQueueOptions, withQueueStatus, type QueueFlags } from './queue.js';

interface CommonOptions {
  embeddings: string;
  concepts: string;
  imageMean?: string;
  raw?: boolean;
  solver: SpliceSolverName;
  tol?: number;
  json?: boolean;
}

/** The problem the command solves, from its files. */
function prepare(o: CommonOptions): SpliceProblem {
  const c = readMatrix(o.concepts, { what: 'concepts' });
  const z = readMatrix(o.embeddings, { what: 'embeddings', cols: c.cols, colsFrom: `the width of ${o.concepts}`, allowEmpty: true });
  const mean = o.imageMean ? readVector(o.imageMean, { what: 'image mean', length: c.cols, lengthFrom: `the width of ${o.concepts}` }) : undefined;
  return spliceProblem(c, z.data, { raw: o.raw, mean });
}

interface DecomposeOptions extends CommonOptions, QueueFlags {
  l1: number;
  out: string;
  device: 'cpu' | 'cuda';
}

/** The local decomposition: weights written to --out, the run's shape and means returned. */
async function decomposeHere(o: DecomposeOptions, signal: AbortSignal): Promise<Omit<SpliceRunResult, 'out'>> {
  const p = prepare(o), bar = progressBar('splice', 'samples', !o.json && process.stderr.isTTY);
  try {
    const dec = await solveSplice(p.dictionary, p.samples, p.d, {
      l1: o.l1, solver: o.solver, tol: o.tol,
      device: o.device, signal, onProgress: (done, total) => bar.update(done, total),
    });
    bar.stop();
    writeNpy(o.out, dec.weights, [dec.n, dec.c]);
    return { n: dec.n, c: dec.c, d: p.d, ...meanStats([sampleStats(p, dec)], dec.n) };
  } finally {
    bar.stop();
  }
}

/** Solves here or (--queue) in parts of rows on the workers; one summary either way (seconds: the whole run). */
async function decompose(o: DecomposeOptions, signal: AbortSignal): Promise<void> {
  if (o.queue && o.device !== 'cpu') throw new UsageError('--device cuda: a --queue run solves on the workers\' CPUs; drop one of the two');
  const t0 = performance.now();
  const r = await withQueueStatus('splice', o, { workDir: `${o.out}.runs`, signal }, (q) => q
    ? distributedSplice({ ...q, embeddings: o.embeddings, concepts: o.concepts, imageMean: o.imageMean, raw: o.raw,
      l1: o.l1, solver: o.solver, tol: o.tol, out: o.out, partRows: o.partRows })
    : decomposeHere(o, signal));
  const seconds = (performance.now() - t0) / 1000;
  const summary = {
    n: r.n, c: r.c, d: r.d, l1: o.l1, solver: o.solver, mean_objective: r.meanObjective,
    mean_gap: r.meanGap, mean_l0: r.meanL0, mean_cosine: r.meanCosine, samples_per_s: r.n / seconds, seconds,
  };
  console.log(o.json ? JSON.stringify(summary) : Object.entries(summary).map(([k, v]) => `${k}: ${v}`).join('\n'));
}

// The command's options are the method's, less what the command supplies itself.
type ImagesOptions = Omit<SpliceImagesOptions, 'spec' | 'signal' | 'onProgress' | 'onSolveProgress'> & { json?: boolean };

async function imagesAction(o: ImagesOptions, signal: AbortSignal): Promise<void> {
  const show = !o.json && process.stderr.isTTY;
  const embedBar = progressBar('embed', 'images', show), solveBar = progressBar('splice', 'images', show);
  try {
    const { json: _json, ...method } = o;
    const r = await spliceImages({
      ...method, standin: !!o.standin, signal,
      onProgress: (done, total) => embedBar.update(done, total), onSolveProgress: (done, total) => solveBar.update(done, total),
    });
    embedBar.stop();
    solveBar.stop();
    if (r.centredOn === 'images') console.error('no --image-mean: centred on the mean of these images\' embeddings');
    if (r.skipped.length) {
      console.error(`skipped ${r.skipped.length} file(s) that are not readable images:`);
      for (const s of r.skipped) console.error(`  ${s.path}: ${s.reason}`);
    }
    const summary = {
      images: r.images, skipped: r.skipped.map((s) => s.path), concepts: r.concepts, d: r.d, classes: r.classes,
      centred_on: r.centredOn === 'file' ? o.imageMean : 'mean of these images', mean_l0: r.meanL0, mean_cosine: r.meanCosine,
      samples_per_s: r.samplesPerSecond, embed_seconds: r.embedSeconds, solve_seconds: r.solveSeconds,
      top: r.top.slice(0, 5).map((t) => ({ concept: t.concept, weight: t.weight })), outputs: r.outputs,
    };
    console.log(o.json ? JSON.stringify(summary) : [
      `images: ${r.images} (${r.skipped.length} skipped), concepts: ${r.concepts}, d: ${r.d}, classes: ${r.classes}`,
      `mean l0: ${r.meanL0.toFixed(2)}, mean cosine: ${r.meanCosine.toFixed(4)}, ${r.samplesPerSecond.toFixed(1)} samples/s`,
      `top concepts: ${summary.top.map((t) => `${t.concept} (${t.weight.toFixed(4)})`).join(', ')}`,
      `wrote ${r.outputs.join(', ')}`,
    ].join('\n'));
  } finally {
    embedBar.stop();
    solveBar.stop();
  }
}

function common(cmd: Command): Command {
  return cmd
    .requiredOption('--embeddings <npy>', 'n×d embeddings to decompose (fp32/fp16)')
    .requiredOption('--concepts <npy>', 'c×d concept embeddings, one row per concept')
    .addOption(new Option('--image-mean <npy>', 'the modality mean μ (d values); without it z is only normalised').conflicts('raw'))
    .option('--raw', 'solve on the embeddings and concepts exactly as given (no normalising or centring)')
    .option('--solver <name>', `one of ${SPLICE_SOLVERS.join(', ')}`, oneOf('--solver', SPLICE_SOLVERS), 'auto')
    .option('--tol <x>', 'relative duality gap (fista, ws) or residual bound (admm)', number('--tol', { min: 0, above: true }))
    .option('--json', 'print a JSON summary');
}

export function registerSplice(program: Command): void {
  const splice = program.command('splice').description('SpLiCE: sparse non-negative concept decompositions of embeddings');

  addQueueOptions(common(splice.command('decompose').description('weights w ≥ 0 minimising ‖Cᵀw − z‖² + λ‖w‖₁ for every embedding')),
    'parts of rows of the embeddings', 'OUT.runs')
    .requiredOption('--l1 <lambda>', 'λ, the l1 penalty (SpLiCE l1_penalty)', number('--l1', { min: 0 }))
    .requiredOption('--out <npy>', 'where to write the n×c weights (float32)')
    .option('--device <cpu|cuda>', "'cuda': the GPU FISTA solver (engine built with nvcc, a GPU present)", oneOf('--device', ['cpu', 'cuda'] as const), 'cpu')
    .option('--part-rows <n>', 'with --queue: embeddings per job (default 4096)', integer('--part-rows'))
    .action(act((o: DecomposeOptions, { signal }) => decompose(o, signal)));

  common(splice.command('path').description('λ whose decompositions have a target mean l0 (warm-started bisection on log λ)'))
    .requiredOption('--target-l0 <k>', 'target mean number of non-zero concepts per embedding', number('--target-l0', { min: 0, above: true }))
    .option('--l0-tol <x>', 'accept |mean l0 − target| ≤ x', number('--l0-tol', { min: 0, above: true }), 0.5)
    .option('--out <npy>', 'write the n×c weights at the chosen λ')
    .action(act(async (o: CommonOptions & { targetL0: number; l0Tol: number; out?: string }, { signal }) => {
      const p = prepare(o), bar = progressBar('splice path', 'samples', !o.json && process.stderr.isTTY);
      const r = await splicePath(p.dictionary, p.samples, p.d, o.targetL0, {
        solver: o.solver, l0Tol: o.l0Tol, tol: o.tol, signal,
        onProgress: (done, total) => bar.update(done, total),
      });
      bar.stop();
      if (o.out) writeNpy(o.out, r.weights, [r.n, r.c]);
      const chosen = r.points.find((pt) => pt.l1 === r.l1)!;
      const summary = { l1: r.l1, mean_l0: chosen.meanL0, mean_objective: chosen.meanObjective, reached: r.reached, points: r.points };
      if (!r.reached)
        console.error(`warning: no λ tried gives a mean l0 within ${o.l0Tol} of ${o.targetL0}; the closest, ${chosen.meanL0}, is at λ = ${r.l1}`);
      console.log(o.json ? JSON.stringify(summary) : `l1: ${r.l1}\nmean_l0: ${chosen.meanL0}\nmean_objective: ${chosen.meanObjective}\nsteps: ${r.points.length}\nreached: ${r.reached}`);
    }));

  splice.command('images').description('embed a folder of images and decompose each image, the dataset and its classes')
    .requiredOption('--images <dir>', 'folder of images (sorted, recursive; unreadable files are skipped and listed)')
    .option('--model <onnx>', 'CLIP image encoder (ONNX export; CLIP preprocessing)', existingFile('--model'))
    .option('--standin', 'STAND-IN CLIP ViT-B/32 space tower (SqueezeNet 1.1 mapped onto LVIS text embeddings)')
    .requiredOption('--concepts <npy>', 'concept embeddings (rows aligned with --concept-names, fp32/fp16)')
    .requiredOption('--concept-names <txt>', 'one concept per line (the first ", " part is the name)')
    .option('--vocab-last <n>', 'use the last n concepts (SpLiCE vocabularies run least to most frequent)', integer('--vocab-last'))
    .option('--image-mean <npy>', 'the modality mean μ (d values); without it the images\' own mean is used')
    .requiredOption('--l1 <lambda>', 'λ, the l1 penalty (SpLiCE l1_penalty)', number('--l1', { min: 0 }))
    .option('--labels-from <how>', 'class decompositions with labels from class folders (folder) or ImageNet file names (wnid)', oneOf('--labels-from', ['folder', 'wnid']))
    .option('--top <k>', 'concepts listed per image', integer('--top'), 10)
    .requiredOption('--out <dir>', 'output folder (outside --images)')
    .option('--json', 'print a JSON summary')
    .action(act((o: ImagesOptions, { signal }) => imagesAction(o, signal)));
  registerSpliceCompare(splice);
}
