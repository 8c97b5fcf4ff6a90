// bench glm: LE's elastic-net ranking problem (standardised concepts X, n×p;
// standardised neurons Y, n×K) for every contender on the same data, with the
// same warm-up and repeats: conceptlens's coordinate descent (as it runs by
// default, moments 'auto', and on fp32 moments), GLM-SAGA as the reference
// runs it (re-implemented in the engine: labelled so), and with
// --peers sklearn scikit-learn's ElasticNet on a precomputed Gram (float64,
// as the issue measured it, and float32), Gram time included on both sides.
// Every contender's objective is recomputed from its weights by one float64
// yardstick, and compared with the best any contender reached per neuron.
import type { Command } from 'commander';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { elasticNetObjective, fitElasticNet, LE_ALPHA, LE_LAMBDA, standardisedRows, type GlmFit } from '../ts/methods/le/index.js';
import { readMatrix } from '../ts/io/matrix.js';
import { readNpy, writeNpy } from '../ts/io/npy.js';
import type { Mat } from '../ts/matrix.js';
import { randn } from '../ts/random.js';
import { integer, listOption, numberList, oneOf } from '../ts/cli/options.js';
import { UsageError } from '../ts/cli/run.js';
import { conceptMixtures, deticConcepts } from './clip-data.js';
import { addRatios, peerTiming, runPeer } from './peers.js';
import { writeBenchPlot } from './plot.js';
import { addRunOptions, floorFields, gapToBest, generatorOption, machine, machinePeaks, reportAction, type BenchRow, type RunOptions } from './report.js';
import { timeWithCpu } from './measure.js';

export interface GlmBenchParams extends RunOptions {
  data: 'planted' | 'clip-mix';
  x?: string;
  y?: string;
  n: number;
  p: number;
  neurons: number;
  solvers: string[];
  /** Each contender again at each of these stopping tolerances (its own criterion): the convergence curves. */
  tols?: number[];
}

const everyRow = (n: number) => Int32Array.from({ length: n }, (_, i) => i);
const standardise = (m: Mat) => standardisedRows(m, everyRow(m.rows));

/** Each neuron a noisy mix of 6 of the concept columns (seeded). */
function mixNeurons(X: Mat, K: number): Mat {
  const { rows: n, cols: p } = X, Y = randn(n * K, 4), pick = randn(K * 6, 5);
  for (let k = 0; k < K; k++)
    for (let t = 0; t < 6; t++) {
      const j = Math.floor(Math.abs(pick[k * 6 + t] * 7919)) % p, w = (t % 2 ? -0.5 : 1) * (1 + 0.1 * t);
      for (let i = 0; i < n; i++) Y[i * K + k] += w * X.data[i * p + j];
    }
  return standardise({ data: Y, rows: n, cols: K });
}

/** 'planted': concepts sharing 8 latent factors (as related concepts do). */
function plantedConcepts(n: number, p: number): Mat {
  const r = 8, Z = randn(n * r, 1), M = randn(r * p, 2), X = randn(n * p, 3);
  for (let i = 0; i < n; i++)
    for (let f = 0; f < r; f++) {
      const z = 0.4 * Z[i * r + f];
      for (let j = 0; j < p; j++) X[i * p + j] += z * M[f * p + j];
    }
  return standardise({ data: X, rows: n, cols: p });
}

/** 'clip-mix': cosines of n images (mixtures of two real CLIP concept embeddings) with p real concepts. */
function clipConcepts(n: number, p: number): Mat {
  const c = deticConcepts(), d = c.d;
  if (p > c.rows) throw new UsageError(`--p: clip-mix has ${c.rows} concepts, asked for ${p}`);
  const images = conceptMixtures(c, n, 11, 0.02), X = new Float32Array(n * p);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < p; j++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += images[i * d + k] * c.data[j * d + k];
      X[i * p + j] = s;
    }
  return standardise({ data: X, rows: n, cols: p });
}

/** The problem: the user's X and Y (standardised here), or a generator's. */
export function glmProblem(p: Pick<GlmBenchParams, 'data' | 'x' | 'y' | 'n' | 'p' | 'neurons'>): { X: Mat; Y: Mat; source: string } {
  if (p.x || p.y) {
    if (!p.x || !p.y) throw new UsageError('--x and --y go together: concepts X (n × p) and neurons Y (n × K)');
    const X = readMatrix(p.x, { what: 'concepts' }), Y = readMatrix(p.y, { what: 'neurons', rows: X.rows, rowsFrom: `one per row of ${p.x}` });
    return { X: standardise(X), Y: standardise(Y), source: `${p.x}, ${p.y}` };
  }
  const X = p.data === 'clip-mix' ? clipConcepts(p.n, p.p) : plantedConcepts(p.n, p.p);
  return { X, Y: mixNeurons(X, p.neurons), source: p.data };
}

const meanOf = (x: ArrayLike<number>) => Array.from(x).reduce((a, b) => a + b, 0) / x.length;

type Solver = 'cd' | 'cd-fp32' | 'saga';
const ROWS: Record<Solver, string> = { cd: 'conceptlens-cd', 'cd-fp32': 'conceptlens-cd-fp32', saga: 'glm-saga' };
const label = (solver: Solver, momentsBy?: string) => solver === 'saga'
  ? 'GLM-SAGA as the LE reference runs it (re-implemented in the conceptlens engine)'
  : `conceptlens coordinate descent (working sets, shared Gram; ${momentsBy} moments${solver === 'cd' ? ', as moments: auto chose' : ''})`;

/** One contender's timed fit at one tolerance: its row and each neuron's objective by the float64 yardstick. */
interface Run {
  row: BenchRow;
  objectives: Float64Array;
}

const nonzerosPerNeuron = (W: Float32Array, neurons: number) => W.reduce((a, w) => a + (w !== 0 ? 1 : 0), 0) / neurons;

/** A conceptlens solver; `tol` is its own stopping tolerance (cd: tol, saga: tolPerTarget), default when absent. */
async function ourRun(X: Mat, Y: Mat, p: GlmBenchParams, solver: Solver, tol?: number): Promise<Run> {
  let fit: GlmFit | undefined;
  const opts = solver === 'saga' ? { solver, ...(tol === undefined ? {} : { tolPerTarget: tol }) }
    : { solver: 'cd' as const, ...(solver === 'cd-fp32' ? { moments: 'fp32' as const } : {}), ...(tol === undefined ? {} : { tol }) };
  const { seconds, cpuSeconds } = await timeWithCpu(async () => (fit = await fitElasticNet(X, Y, opts)), p.repeats, p.warmup);
  return {
    row: { name: ROWS[solver], label: label(solver, fit!.momentsBy), seconds, cpu_seconds: cpuSeconds, neurons_per_s: Y.cols / seconds,
      nonzeros_per_neuron: nonzerosPerNeuron(fit!.weights, Y.cols), ...(fit!.momentsBy ? { moments_by: fit!.momentsBy } : {}) },
    objectives: elasticNetObjective(X, Y, fit!.weights, fit!.bias),
  };
}

/** The floor of the Gram solvers: their moments' multiply-adds at the peak of the arithmetic that ran them. */
const FLOOR = "multiply-adds of the moments, XᵀX (n·p(p+1)/2) and XᵀY (n·p·neurons), at the peak of the arithmetic that computed them (fp32 FMA, or int16 VNNI for moments_by int16)";

export async function benchGlm(p: GlmBenchParams) {
  const { X, Y, source } = glmProblem(p);
  const runs: Run[] = [], curve: (Run & { tol: number })[] = [];
  const solvers = p.solvers as Solver[];
  for (const solver of solvers) runs.push(await ourRun(X, Y, p, solver));
  const peers = p.peers.includes('sklearn') ? new SklearnPeers(X, Y, p) : undefined;
  const skipped: string[] = [];
  try {
    if (peers) runs.push(...peers.run(1e-6, skipped));
    // The convergence curves: every contender again at each tolerance.
    for (const tol of p.tols ?? []) {
      for (const solver of solvers) curve.push({ ...(await ourRun(X, Y, p, solver, tol)), tol });
      if (peers) curve.push(...peers.run(tol, skipped).map((r) => ({ ...r, tol })));
    }
  } finally {
    peers?.close();
  }
  const gap = gapToBest([...runs, ...curve].map((r) => r.objectives), Y.cols);
  const rows: BenchRow[] = runs.map(({ row, objectives: o }) => ({ ...row, mean_objective: meanOf(o), max_rel_gap_to_best: gap(o) }));
  addRatios(rows, rows.filter((r) => r.name.startsWith('sklearn')).map((r) => r.name), 'neurons_per_s');
  const pk = await machinePeaks(), moments = (X.rows * X.cols * (X.cols + 1)) / 2 + X.rows * X.cols * Y.cols;
  for (const r of rows) {
    const peak = r.moments_by === 'int16' ? pk.int16MacsPerS : r.moments_by === 'fp32' || r.name === 'sklearn-elasticnet-f32' ? pk.fp32MacsPerS : 0;
    Object.assign(r, floorFields(r.seconds, moments, peak));
  }
  const curves = curve.map(({ row, objectives: o, tol }) => ({ name: row.name, tol, seconds: row.seconds, max_rel_gap_to_best: gap(o) }));
  // The problem as solved: the user's files' sizes, not the generator's defaults.
  const problem = { data: p.x ? 'user' : p.data, n: X.rows, p: X.cols, neurons: Y.cols, source };
  const report = { suite: 'glm', params: { ...p, ...problem, lambda: LE_LAMBDA, alpha: LE_ALPHA, floor: FLOOR, skipped: [...new Set(skipped)] },
    machine: await machine(), results: rows, ...(p.tols ? { curves } : {}) };
  if (p.plot) writeBenchPlot(p.plot, report, { throughput: 'neurons_per_s', quality: 'max_rel_gap_to_best' });
  return report;
}

/** scikit-learn's ElasticNet (Gram precomputed) in float64 and float32, on the problem written once as .npy files. */
class SklearnPeers {
  private readonly dir = mkdtempSync(join(tmpdir(), 'conceptlens-glm-'));

  constructor(private readonly X: Mat, private readonly Y: Mat, private readonly p: GlmBenchParams) {
    writeNpy(join(this.dir, 'X.npy'), X.data, [X.rows, X.cols]);
    writeNpy(join(this.dir, 'Y.npy'), Y.data, [Y.rows, Y.cols]);
  }

  /** Both precisions at scikit-learn's `tol`; a peer that cannot run adds why to `skipped`. */
  run(tol: number, skipped: string[]): Run[] {
    const { X, Y, p, dir } = this, runs: Run[] = [];
    for (const dtype of ['float64', 'float32']) {
      const out = join(dir, `W-${dtype}.npy`), name = `sklearn-elasticnet-${dtype === 'float64' ? 'f64' : 'f32'}`;
      const r = runPeer('sklearn_enet.py', {
        x: join(dir, 'X.npy'), y: join(dir, 'Y.npy'), lambda: LE_LAMBDA, alpha: LE_ALPHA, tol, warmup: p.warmup, repeats: p.repeats, dtype, out,
      });
      if ('skipped' in r) {
        skipped.push(r.skipped);
        continue;
      }
      const W = readNpy(out).data as Float32Array;
      runs.push({
        row: { name, label: r.row.label, ...peerTiming(r.row), cpu_seconds: r.row.cpu_seconds, neurons_per_s: Y.cols / r.row.seconds,
          nonzeros_per_neuron: nonzerosPerNeuron(W, Y.cols) },
        objectives: elasticNetObjective(X, Y, W, new Float32Array(Y.cols)),
      });
    }
    return runs;
  }

  close(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export function registerBenchGlm(bench: Command): void {
  const OWN = ['x', 'y'];
  const cmd = bench
    .command('glm')
    .description("elastic net for LE's concept ranking: conceptlens coordinate descent vs GLM-SAGA and scikit-learn (neurons/s, objective)")
    .addOption(generatorOption('--data <kind>', 'planted (8 shared factors) | clip-mix (cosines with real CLIP concepts; needs the assets mirror)', OWN,
      oneOf('--data', ['planted', 'clip-mix'] as const), 'planted'))
    .option('--x <npy>', 'your concepts, n × p (standardised here); with --y instead of a generator')
    .option('--y <npy>', 'your neurons, n × K (standardised here)')
    .addOption(generatorOption('--n <n>', 'samples', OWN, integer('--n'), 10000))
    .addOption(generatorOption('--p <p>', 'concepts', OWN, integer('--p'), 2000))
    .addOption(generatorOption('--neurons <k>', 'neurons solved as one batch', OWN, integer('--neurons'), 512))
    .addOption(listOption('--solvers <list>', "conceptlens solvers: cd (moments 'auto', as fitElasticNet runs by default), cd-fp32 (on fp32 moments), saga (takes minutes at full size)", 'cd,cd-fp32', ['cd', 'cd-fp32', 'saga']))
    .option('--tols <list>', "also run every contender at each of these stopping tolerances (each solver's own: cd's tol (both cd rows), saga's tolPerTarget, scikit-learn's tol): its objective gap against time, as curves in the JSON and the plot (saga at a tight one runs to its epoch cap)",
      numberList('--tols', { min: 0, above: true }));
  addRunOptions(cmd, { repeats: 3, peers: ['sklearn'], plot: "draw neurons/s bars and each contender's objective gap against its time" })
    .action(reportAction(benchGlm));
}
