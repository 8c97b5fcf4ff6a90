// bench splice: every SpLiCE solver, and with --peers sklearn scikit-learn's
// sparse_encode, on the same problem in one run, with the same warm-up and
// repeats. The problem is the user's (--concepts/--embeddings, centred as
// `splice decompose` does) or generated: 'planted' (sparse non-negative
// mixtures of random unit concepts) or 'clip-mix' (a 10,000-concept
// dictionary of the real Detic CLIP text embeddings and their mixtures, as
// correlated as CLIP's; samples mix 5-15 of them). The full-dictionary
// solvers and the peer solve the first `baselineN` samples only; every
// contender's objective is recomputed from its weights in float64 and
// compared, per sample, with the best any contender reached.
import type { Command } from 'commander';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readMatrix, readVector } from '../ts/io/matrix.js';
import { readNpy, writeNpy } from '../ts/io/npy.js';
import { normaliseRows } from '../ts/matrix.js';
import { buildDictionary, centreEmbeddings, solveSplice, spliceProblem, type SpliceSolverName } from '../ts/methods/splice.js';
import { gaussian, randn, rng } from '../ts/random.js';
import { integer, listOption, number, numberList, oneOf } from '../ts/cli/options.js';
import { UsageError } from '../ts/cli/run.js';
import { deticConcepts } from './clip-data.js';
import { addRatios, peerTiming, runPeer } from './peers.js';
import { writeBenchPlot } from './plot.js';
import { addRunOptions, floorFields, gapToBest, generatorOption, refuseWithClipMix, machine, machinePeaks, reportAction, type BenchRow, type RunOptions } from './report.js';
import { timeWithCpu } from './measure.js';

export interface SpliceBenchParams extends RunOptions {
  data: 'planted' | 'clip-mix';
  concepts?: string;
  embeddings?: string;
  imageMean?: string;
  n: number;
  c: number;
  d: number;
  l1: number;
  k: number;
  noise: number;
  baselineN: number;
  solvers: SpliceSolverName[];
  /** Each solver again at each of these tolerances: the convergence curves. */
  tols?: number[];
}

/** A SpLiCE problem as the solvers take it: dictionary (c × d) and samples (n × d), both already centred. */
export interface SpliceBenchProblem {
  dictionary: Float32Array;
  samples: Float32Array;
  n: number;
  c: number;
  d: number;
  source: string;
}

/** 'planted': c random unit concepts; n samples of k concepts with weights in [0.2, 1] plus Gaussian noise. */
export function plantedSplice(n: number, c: number, d: number, k: number, noise: number, seed = 1) {
  const rand = rng(seed), dictionary = normaliseRows(randn(c * d, seed + 1), d), samples = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    for (let a = 0; a < k; a++) {
      const j = Math.floor(rand() * c), w = 0.2 + 0.8 * rand();
      for (let t = 0; t < d; t++) samples[i * d + t] += w * dictionary[j * d + t];
    }
    for (let t = 0; t < d; t++) samples[i * d + t] += noise * gaussian(rand);
  }
  return { dictionary, samples: normaliseRows(samples, d) };
}

/**
 * 'clip-mix': the 2,148 unit Detic CLIP text embeddings, then mixtures t·a + (1 − t)·b of two distinct ones
 * (t in [0.2, 0.8]) up to c concepts, SpLiCE-centred (buildDictionary). Each sample sums 5-15 of the normalised
 * concepts with weights in [0.2, 1] plus noise per coordinate, and is centred on the samples' own mean (the image
 * mean's stand-in) as SpLiCE centres images.
 */
export function clipMixSplice(n: number, c: number, noise: number): SpliceBenchProblem {
  const real = deticConcepts(), d = real.d, m = real.rows;
  if (c < m) throw new UsageError(`--c: clip-mix starts from the ${m} real concepts, so at least ${m}, got ${c}`);
  const raw = new Float32Array(c * d), U = real.data, pick = rng(1);
  raw.set(U);
  for (let j = m; j < c; j++) {
    const a = Math.floor(pick() * m), b = (a + 1 + Math.floor(pick() * (m - 1))) % m, t = 0.2 + 0.6 * pick();
    for (let x = 0; x < d; x++) raw[j * d + x] = t * U[a * d + x] + (1 - t) * U[b * d + x];
  }
  const V = normaliseRows(raw, d), rand = rng(2), X = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    const k = 5 + Math.floor(rand() * 11);
    for (let a = 0; a < k; a++) {
      const j = Math.floor(rand() * c), w = 0.2 + 0.8 * rand();
      for (let x = 0; x < d; x++) X[i * d + x] += w * V[j * d + x];
    }
    for (let x = 0; x < d; x++) X[i * d + x] += noise * gaussian(rand);
  }
  const x32 = Float32Array.from(X), unit = normaliseRows(x32, d), mean = new Float64Array(d);
  for (let t = 0; t < unit.length; t++) mean[t % d] += unit[t] / n;
  return { dictionary: buildDictionary(raw, d), samples: centreEmbeddings(x32, mean, d), n, c, d, source: 'clip-mix' };
}

/** The problem: the user's embeddings over their concepts (centred as `splice decompose` does), or a generator's. */
export function spliceBenchProblem(p: Pick<SpliceBenchParams, 'data' | 'concepts' | 'embeddings' | 'imageMean' | 'n' | 'c' | 'd' | 'k' | 'noise'>): SpliceBenchProblem {
  if (p.imageMean && !p.embeddings) throw new UsageError('--image-mean goes with --embeddings: the mean of your image embeddings');
  if (p.concepts || p.embeddings) {
    if (!p.concepts || !p.embeddings) throw new UsageError('--concepts and --embeddings go together: concept embeddings (c × d) and image embeddings (n × d)');
    const concepts = readMatrix(p.concepts, { what: 'concept embeddings' });
    const z = readMatrix(p.embeddings, { what: 'image embeddings', cols: concepts.cols, colsFrom: `the width of ${p.concepts}` });
    const mean = p.imageMean ? readVector(p.imageMean, { what: 'image mean', length: concepts.cols, lengthFrom: `the width of ${p.concepts}` }) : undefined;
    const s = spliceProblem(concepts, Float32Array.from(z.data), { mean });
    return { dictionary: s.dictionary, samples: s.samples, n: z.rows, c: concepts.rows, d: s.d, source: `${p.embeddings} over ${p.concepts}` };
  }
  if (p.data === 'clip-mix') return clipMixSplice(p.n, p.c, p.noise);
  return { ...plantedSplice(p.n, p.c, p.d, p.k, p.noise), n: p.n, c: p.c, d: p.d, source: 'planted' };
}

/** Per sample ‖z − Cᵀw‖² + λ‖w‖₁ in float64: the one yardstick for every contender's weights. */
export function spliceObjectives(pr: SpliceBenchProblem, weights: Float32Array, m: number, l1: number): Float64Array {
  const { dictionary: C, samples: Z, c, d } = pr, out = new Float64Array(m), r = new Float64Array(d);
  for (let i = 0; i < m; i++) {
    for (let t = 0; t < d; t++) r[t] = Z[i * d + t];
    let l1sum = 0;
    for (let j = 0; j < c; j++) {
      const w = weights[i * c + j];
      if (w === 0) continue;
      l1sum += w;
      for (let t = 0; t < d; t++) r[t] -= w * C[j * d + t];
    }
    let rr = 0;
    for (let t = 0; t < d; t++) rr += r[t] * r[t];
    out[i] = rr + l1 * l1sum;
  }
  return out;
}

const LABELS: Record<string, string> = {
  auto: 'conceptlens auto (picks the working-set solver on CPU)',
  ws: 'conceptlens working set (active-set Cholesky, certified duality gap)',
  fista: 'FISTA on the full dictionary (conceptlens engine)',
  admm: "ADMM on the full dictionary, as SpLiCE's reference solves it (conceptlens engine)",
};

interface Solved {
  row: BenchRow;
  objectives: Float64Array;
}

/** One solver, timed; `tol` its stopping tolerance (relative duality gap; ADMM's residual bound), default when absent. */
async function solveOne(pr: SpliceBenchProblem, p: SpliceBenchParams, solver: SpliceSolverName, tol?: number): Promise<Solved> {
  const full = solver === 'auto' || solver === 'ws', m = full ? pr.n : Math.min(pr.n, p.baselineN);
  const part = pr.samples.subarray(0, m * pr.d), out = new Float32Array(m * pr.c); // reused, as a long-running caller would
  const { seconds, cpuSeconds } = await timeWithCpu(() => solveSplice(pr.dictionary, part, pr.d, { l1: p.l1, solver, out, tol }), p.repeats, p.warmup);
  return {
    row: { name: solver, label: LABELS[solver], seconds, samples: m, samples_per_s: m / seconds, cpu_seconds: cpuSeconds,
      samples_per_cpu_s: m / cpuSeconds, mean_l0: out.reduce((a, w) => a + (w > 0 ? 1 : 0), 0) / m },
    objectives: spliceObjectives(pr, out, m, p.l1),
  };
}

/**
 * scikit-learn's sparse_encode (lasso_cd, positive) on the first baselineN samples, with the Gram computed once per
 * dictionary and timed apart (gram_seconds), as conceptlens's rows carry no per-dictionary cost spread over few samples.
 */
function sklearnPeer(pr: SpliceBenchProblem, p: SpliceBenchParams): Solved | string {
  const dir = mkdtempSync(join(tmpdir(), 'conceptlens-splice-')), m = Math.min(pr.n, p.baselineN);
  try {
    const C = join(dir, 'C.npy'), Z = join(dir, 'Z.npy'), W = join(dir, 'W.npy');
    writeNpy(C, pr.dictionary, [pr.c, pr.d]);
    writeNpy(Z, pr.samples.subarray(0, m * pr.d), [m, pr.d]);
    const r = runPeer('sklearn_sparse_encode.py', { dictionary: C, samples: Z, l1: p.l1, warmup: p.warmup, repeats: p.repeats, out: W });
    if ('skipped' in r) return r.skipped;
    const weights = readNpy(W).data as Float32Array;
    return {
      row: { name: 'sklearn-sparse-encode', label: r.row.label, ...peerTiming(r.row), samples: m, samples_per_s: m / r.row.seconds,
        gram_seconds: r.row.gram_seconds, mean_l0: weights.reduce((a, w) => a + (w > 0 ? 1 : 0), 0) / m },
      objectives: spliceObjectives(pr, weights, m, p.l1),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchSplice(p: SpliceBenchParams) {
  const pr = spliceBenchProblem(p), solved: Solved[] = [];
  for (const solver of p.solvers) solved.push(await solveOne(pr, p, solver));
  const peer = p.peers.includes('sklearn') ? sklearnPeer(pr, p) : undefined;
  if (peer && typeof peer !== 'string') solved.push(peer);
  // The convergence curves: every solver again at each tolerance (scikit-learn's sparse_encode takes none).
  const curve: (Solved & { tol: number })[] = [];
  for (const tol of p.tols ?? []) for (const solver of p.solvers) curve.push({ ...(await solveOne(pr, p, solver, tol)), tol });
  const gap = gapToBest([...solved, ...curve].map((s) => s.objectives), pr.n);
  // The floor: certifying a sample's weights needs every atom's correlation with its residual at least once. FISTA
  // runs in float64, so it has no fp32 floor (as glm's float64 peer has none).
  const fp32 = (await machinePeaks()).fp32MacsPerS;
  const rows = solved.map(({ row, objectives: o }) => ({
    ...row, seconds_per_sample: row.seconds / (row.samples as number), mean_objective: o.reduce((a, v) => a + v, 0) / o.length,
    max_rel_gap_to_best: gap(o),
    ...(row.name === 'fista' ? {} : floorFields(row.seconds, (row.samples as number) * pr.c * pr.d, fp32)),
  }));
  addRatios(rows, ['sklearn-sparse-encode'], 'samples_per_s');
  const floor = 'fp32 multiply-adds of one correlation of every atom with every sample (samples·c·d), at the fp32 peak';
  // With your own data the generator's k and noise played no part.
  const params = { ...p, ...(p.concepts ? { k: undefined, noise: undefined } : {}), data: p.concepts ? 'user' : p.data, n: pr.n, c: pr.c, d: pr.d,
    source: pr.source, floor, skipped: typeof peer === 'string' ? [peer] : [] };
  const curves = curve.map(({ row, objectives: o, tol }) => ({ name: row.name, tol, seconds: row.seconds,
    seconds_per_sample: row.seconds / (row.samples as number), max_rel_gap_to_best: gap(o) }));
  const report = { suite: 'splice', params, machine: await machine(), results: rows, ...(p.tols ? { curves } : {}) };
  // Per sample: the full-dictionary solvers and the peer solve only the first --baseline-n samples.
  if (p.plot) writeBenchPlot(p.plot, report, { throughput: 'samples_per_s', quality: 'max_rel_gap_to_best', time: 'seconds_per_sample' });
  return report;
}

export function registerBenchSplice(bench: Command): void {
  const OWN = ['concepts', 'embeddings'];
  const cmd = bench
    .command('splice')
    .description('SpLiCE solvers (auto, ws, fista, admm) and scikit-learn on the same problem (samples/s, objective)')
    .addOption(generatorOption('--data <kind>', 'planted (random unit concepts) | clip-mix (real CLIP concept embeddings and their mixtures; needs the assets mirror)',
      OWN, oneOf('--data', ['planted', 'clip-mix'] as const), 'planted'))
    .option('--concepts <npy>', 'your concept embeddings (c × d); with --embeddings instead of a generator')
    .option('--embeddings <npy>', 'your image embeddings (n × d), centred on --image-mean as splice decompose does')
    .option('--image-mean <npy>', 'the image mean for --embeddings (default: none, only normalised)')
    .addOption(generatorOption('--n <samples>', 'samples', OWN, integer('--n'), 5000))
    .addOption(generatorOption('--c <concepts>', 'dictionary size', OWN, integer('--c'), 10000))
    .addOption(generatorOption('--d <dim>', 'dimension (planted; clip-mix is 512)', OWN, integer('--d'), 512))
    .option('--l1 <lambda>', 'λ', number('--l1', { min: 0 }), 0.25)
    .addOption(generatorOption('--k <k>', 'planted concepts per sample', OWN, integer('--k'), 10))
    .addOption(generatorOption('--noise <sigma>', 'Gaussian noise per coordinate before normalising', OWN, number('--noise', { min: 0 }), 0.02))
    .option('--baseline-n <m>', 'samples the full-dictionary solvers (fista, admm) and the peers solve', integer('--baseline-n'), 32)
    .addOption(listOption('--solvers <list>', 'comma list of auto,ws,fista,admm (the full-dictionary fista and admm take minutes per sample on clip-mix)', 'ws',
      ['auto', 'ws', 'fista', 'admm']))
    .option('--tols <list>', "also run every solver at each of these tolerances (relative duality gap; ADMM's residual bound): its objective gap against time, as curves in the JSON and the plot",
      numberList('--tols', { min: 0, above: true }));
  refuseWithClipMix(cmd, ['d', 'k']);
  addRunOptions(cmd, { repeats: 3, peers: ['sklearn'], plot: "draw samples/s bars and each contender's objective gap against its time" })
    .action(reportAction(benchSplice));
}
