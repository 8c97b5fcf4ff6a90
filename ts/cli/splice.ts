/** `conceptlens splice decompose|path|images`: SpLiCE decompositions of embeddings stored as .npy, or of a folder of images. */
import type { Command } from 'commander';
import { readNpy, writeNpy } from '../io/npy.js';
import { progressBar } from './progress.js';
import {
  buildDictionary, floatData, normaliseRows, solveSplice, splicePath, toFloat32, SPLICE_SOLVERS,
  type Decomposition, type SpliceSolverName,
} from '../methods/splice.js';
import { spliceImages, type SpliceImagesOptions } from '../methods/splice-images.js';
import { integer, number, oneOf } from './options.js';

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
  /** Unit embeddings cosines are measured against, and the mean added back (zeros when raw). */
  target: Float32Array;
  mean: Float32Array;
}

function matrix(path: string): { data: Float32Array; rows: number; d: number } {
  const a = readNpy(path);
  if (a.shape.length !== 2) throw new Error(`${path}: expected a 2-D array (rows × d), got shape [${a.shape.join(', ')}]`);
  return { data: toFloat32(floatData(a, path)), rows: a.shape[0], d: a.shape[1] };
}

function prepare(o: CommonOptions): Prepared {
  const z = matrix(o.embeddings), c = matrix(o.concepts), d = c.d;
  if (z.d !== d) throw new Error(`${o.embeddings}: expected d = ${d} columns (those of ${o.concepts}), got ${z.d}`);
  const mean = new Float32Array(d);
  if (o.imageMean) {
    const m = toFloat32(floatData(readNpy(o.imageMean), o.imageMean));
    if (m.length !== d) throw new Error(`${o.imageMean}: expected an image mean of ${d} values, got ${m.length}`);
    mean.set(m);
  }
  if (o.raw) return { dictionary: c.data, samples: z.data, d, target: z.data, mean: new Float32Array(d) };
  const unit = normaliseRows(z.data, d);
  const centred = normaliseRows(unit.map((x, k) => x - mean[k % d]), d);
  return { dictionary: buildDictionary(c.data, d), samples: centred, d, target: unit, mean };
}

/** Mean l0 and mean cosine between normalise(normalise(wC) + μ) (just wC when raw) and the target rows. */
function quality(p: Prepared, dec: Decomposition, raw: boolean): { meanL0: number; meanCosine: number } {
  const { d } = p;
  let l0 = 0, cos = 0;
  const mix = new Float32Array(d);
  for (let i = 0; i < dec.n; i++) {
    mix.fill(0);
    for (let j = 0; j < dec.c; j++) {
      const w = dec.weights[i * dec.c + j];
      if (w === 0) continue;
      l0++;
      for (let t = 0; t < d; t++) mix[t] += w * p.dictionary[j * d + t];
    }
    const rec = raw ? mix : normaliseRows(normaliseRows(mix, d).map((x, t) => x + p.mean[t]), d);
    let dot = 0, nr = 0, nz = 0;
    for (let t = 0; t < d; t++) dot += rec[t] * p.target[i * d + t], nr += rec[t] ** 2, nz += p.target[i * d + t] ** 2;
    cos += nr > 0 && nz > 0 ? dot / Math.sqrt(nr * nz) : 0;
  }
  return { meanL0: l0 / dec.n, meanCosine: cos / dec.n };
}

const mean = (x: Float64Array) => x.reduce((a, b) => a + b, 0) / Math.max(1, x.length);

// The command's options are the method's, less what the command supplies itself.
type ImagesOptions = Omit<SpliceImagesOptions, 'spec' | 'signal' | 'onProgress' | 'onSolveProgress'> & { json?: boolean };

async function imagesAction(o: ImagesOptions): Promise<void> {
  const show = !o.json && process.stderr.isTTY;
  const embedBar = progressBar('embed', 'images', show), solveBar = progressBar('splice', 'images', show);
  const ac = new AbortController(), onSigint = () => ac.abort();
  process.once('SIGINT', onSigint);
  try {
    const { json: _json, ...method } = o;
    const r = await spliceImages({
      ...method, standin: !!o.standin, signal: ac.signal,
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
    process.off('SIGINT', onSigint);
  }
}

function common(cmd: Command): Command {
  return cmd
    .requiredOption('--embeddings <npy>', 'n×d embeddings to decompose (fp32/fp16)')
    .requiredOption('--concepts <npy>', 'c×d concept embeddings, one row per concept')
    .option('--image-mean <npy>', 'the modality mean μ (d values); without it z is only normalised')
    .option('--raw', 'solve on the embeddings and concepts exactly as given (no normalising or centring)')
    .option('--solver <name>', `one of ${SPLICE_SOLVERS.join(', ')}`, 'auto')
    .option('--tol <x>', 'relative duality gap (fista, ws) or residual bound (admm)', number('--tol'))
    .option('--json', 'print a JSON summary');
}

function run(action: (o: any) => Promise<void>) {
  return async (o: any, command: Command) => {
    try {
      await action(o);
    } catch (err) {
      command.error(`error: ${err instanceof Error ? err.message : String(err)}`);
    }
  };
}

export function registerSplice(program: Command): void {
  const splice = program.command('splice').description('SpLiCE: sparse non-negative concept decompositions of embeddings');

  common(splice.command('decompose').description('weights w ≥ 0 minimising ‖Cᵀw − z‖² + λ‖w‖₁ for every embedding'))
    .requiredOption('--l1 <lambda>', 'λ, the l1 penalty (SpLiCE l1_penalty)', number('--l1'))
    .requiredOption('--out <npy>', 'where to write the n×c weights (float32)')
    .option('--device <cpu|cuda>', "'cuda': the GPU FISTA solver (engine built with nvcc, a GPU present)", 'cpu')
    .action(run(async (o: CommonOptions & { l1: number; out: string; device: 'cpu' | 'cuda' }) => {
      const p = prepare(o), bar = progressBar('splice', 'samples', !o.json && process.stderr.isTTY);
      const t0 = performance.now();
      const dec = await solveSplice(p.dictionary, p.samples, p.d, {
        l1: o.l1, solver: o.solver, tol: o.tol,
        device: o.device, onProgress: (done, total) => bar.update(done, total),
      });
      const seconds = (performance.now() - t0) / 1000;
      bar.stop();
      writeNpy(o.out, dec.weights, [dec.n, dec.c]);
      const q = quality(p, dec, !!o.raw);
      const summary = {
        n: dec.n, c: dec.c, d: p.d, l1: o.l1, solver: o.solver, mean_objective: mean(dec.objective),
        mean_gap: mean(dec.gap), mean_l0: q.meanL0, mean_cosine: q.meanCosine, samples_per_s: dec.n / seconds, seconds,
      };
      console.log(o.json ? JSON.stringify(summary) : Object.entries(summary).map(([k, v]) => `${k}: ${v}`).join('\n'));
    }));

  common(splice.command('path').description('λ whose decompositions have a target mean l0 (warm-started bisection on log λ)'))
    .requiredOption('--target-l0 <k>', 'target mean number of non-zero concepts per embedding', number('--target-l0'))
    .option('--l0-tol <x>', 'accept |mean l0 − target| ≤ x', number('--l0-tol'), 0.5)
    .option('--out <npy>', 'write the n×c weights at the chosen λ')
    .action(run(async (o: CommonOptions & { targetL0: number; l0Tol: number; out?: string }) => {
      const p = prepare(o), bar = progressBar('splice path', 'samples', !o.json && process.stderr.isTTY);
      const r = await splicePath(p.dictionary, p.samples, p.d, o.targetL0, {
        solver: o.solver, l0Tol: o.l0Tol, tol: o.tol,
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
    .requiredOption('--l1 <lambda>', 'λ, the l1 penalty (SpLiCE l1_penalty)', number('--l1'))
    .option('--labels-from <how>', 'class decompositions with labels from class folders (folder) or ImageNet file names (wnid)', oneOf('--labels-from', ['folder', 'wnid']))
    .option('--top <k>', 'concepts listed per image', integer('--top'), 10)
    .requiredOption('--out <dir>', 'output folder (outside --images)')
    .option('--json', 'print a JSON summary')
    .action(run(imagesAction));
}
