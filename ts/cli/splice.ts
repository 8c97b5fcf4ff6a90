/** `conceptlens splice decompose|path|images`: SpLiCE decompositions of embeddings stored as .npy, or of a folder of images. */
import type { Command } from 'commander';
import { readMatrix, readVector } from '../io/matrix.js';
import { writeNpy } from '../io/npy.js';
import { progressBar } from './progress.js';
import {
  buildDictionary, centreEmbeddings, quality, solveSplice, splicePath, SPLICE_SOLVERS, type Decomposition, type SpliceSolverName,
} from '../methods/splice.js';
import { spliceImages, type SpliceImagesOptions } from '../methods/splice-images.js';
import { integer, number, oneOf } from './options.js';
import { act, UsageError } from './run.js';
import { registerSpliceCompare } from './splice-compare.js';

interface CommonOptions {
  embeddings: string;
  concepts: string;
  imageMean?: string;
  raw?: boolean;
  solver: SpliceSolverName;
  tol?: number;
  json?: boolean;
}

/** The problem to solve: raw (as given) or SpLiCE's (centred dictionary, centred samples). */
interface Prepared {
  dictionary: Float32Array;
  samples: Float32Array;
  d: number;
  /** The embeddings cosines are measured against, and the mean added back (none when raw). */
  target: Float32Array;
  mean?: Float32Array;
}

function prepare(o: CommonOptions): Prepared {
  const c = readMatrix(o.concepts, { what: 'concepts' }), d = c.cols;
  const z = readMatrix(o.embeddings, { what: 'embeddings', cols: d, colsFrom: `the width of ${o.concepts}`, allowEmpty: true });
  if (o.raw && o.imageMean) throw new UsageError('--image-mean: --raw solves on the embeddings as given, so it takes no mean');
  if (o.raw) return { dictionary: c.data, samples: z.data, d, target: z.data };
  const mean = o.imageMean ? readVector(o.imageMean, { what: 'image mean', length: d, lengthFrom: `the width of ${o.concepts}` }) : new Float32Array(d);
  return { dictionary: buildDictionary(c.data, d), samples: centreEmbeddings(z.data, mean, d), d, target: z.data, mean };
}

/** Mean l0 and mean cosine between each recomposition and its embedding. */
function summaryQuality(p: Prepared, dec: Decomposition): { meanL0: number; meanCosine: number } {
  const q = quality(dec.weights, p.dictionary, p.d, p.target, p.mean);
  return { meanL0: mean(Float64Array.from(q.l0)), meanCosine: mean(q.cosine) };
}

const mean = (x: Float64Array) => x.reduce((a, b) => a + b, 0) / Math.max(1, x.length);

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
    .option('--image-mean <npy>', 'the modality mean μ (d values); without it z is only normalised')
    .option('--raw', 'solve on the embeddings and concepts exactly as given (no normalising or centring)')
    .option('--solver <name>', `one of ${SPLICE_SOLVERS.join(', ')}`, oneOf('--solver', SPLICE_SOLVERS), 'auto')
    .option('--tol <x>', 'relative duality gap (fista, ws) or residual bound (admm)', number('--tol', { min: 0, above: true }))
    .option('--json', 'print a JSON summary');
}

export function registerSplice(program: Command): void {
  const splice = program.command('splice').description('SpLiCE: sparse non-negative concept decompositions of embeddings');

  common(splice.command('decompose').description('weights w ≥ 0 minimising ‖Cᵀw − z‖² + λ‖w‖₁ for every embedding'))
    .requiredOption('--l1 <lambda>', 'λ, the l1 penalty (SpLiCE l1_penalty)', number('--l1', { min: 0 }))
    .requiredOption('--out <npy>', 'where to write the n×c weights (float32)')
    .option('--device <cpu|cuda>', "'cuda': the GPU FISTA solver (engine built with nvcc, a GPU present)", oneOf('--device', ['cpu', 'cuda'] as const), 'cpu')
    .action(act(async (o: CommonOptions & { l1: number; out: string; device: 'cpu' | 'cuda' }, { signal }) => {
      const p = prepare(o), bar = progressBar('splice', 'samples', !o.json && process.stderr.isTTY);
      const t0 = performance.now();
      const dec = await solveSplice(p.dictionary, p.samples, p.d, {
        l1: o.l1, solver: o.solver, tol: o.tol,
        device: o.device, signal, onProgress: (done, total) => bar.update(done, total),
      });
      const seconds = (performance.now() - t0) / 1000;
      bar.stop();
      writeNpy(o.out, dec.weights, [dec.n, dec.c]);
      const q = summaryQuality(p, dec);
      const summary = {
        n: dec.n, c: dec.c, d: p.d, l1: o.l1, solver: o.solver, mean_objective: mean(dec.objective),
        mean_gap: mean(dec.gap), mean_l0: q.meanL0, mean_cosine: q.meanCosine, samples_per_s: dec.n / seconds, seconds,
      };
      console.log(o.json ? JSON.stringify(summary) : Object.entries(summary).map(([k, v]) => `${k}: ${v}`).join('\n'));
    }));

  common(splice.command('path').description('λ whose decompositions have a target mean l0 (warm-started bisection on log λ)'))
    .requiredOption('--target-l0 <k>', 'target mean number of non-zero concepts per embedding', number('--target-l0', { min: 0, above: true }))
    .option('--l0-tol <x>', 'accept |mean l0 − target| ≤ x', number('--l0-tol', { min: 0 }), 0.5)
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
      const summary = { l1: r.l1, mean_l0: chosen.meanL0, mean_objective: chosen.meanObjective, points: r.points };
      console.log(o.json ? JSON.stringify(summary) : `l1: ${r.l1}\nmean_l0: ${chosen.meanL0}\nmean_objective: ${chosen.meanObjective}\nsteps: ${r.points.length}`);
    }));

  splice.command('images').description('embed a folder of images and decompose each image, the dataset and its classes')
    .requiredOption('--images <dir>', 'folder of images (sorted, recursive; unreadable files are skipped and listed)')
    .option('--model <onnx>', 'CLIP image encoder (ONNX export; CLIP preprocessing)')
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
