// bench splice: every SpLiCE solver on the same planted data (sparse
// non-negative mixtures of random unit concepts plus noise, normalised), in
// one run. The full-dictionary baselines (fista, admm) solve the first
// `baselineN` samples only; each row says how many it solved, and
// rel_objective_vs_ws compares its mean objective with ws's on those samples.
// Timed solves write into one preallocated weights buffer.
import type { Command } from 'commander';
import { normaliseRows } from '../ts/matrix.js';
import { solveSplice, type Decomposition, type SpliceSolverName } from '../ts/methods/splice.js';
import { gaussian, randn, rng } from '../ts/random.js';
import { machine, median, printReport, timeMedian, type BenchRow } from './report.js';
import { integer, listOption, number } from '../ts/cli/options.js';

export interface SpliceBenchParams {
  n: number;
  c: number;
  d: number;
  l1: number;
  k: number;
  noise: number;
  baselineN: number;
  repeats: number;
  solvers: SpliceSolverName[];
}

/** c random unit concepts and n samples, each k concepts with weights in [0.2, 1] plus Gaussian noise. */
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

const mean = (x: ArrayLike<number>, m = x.length) => Array.from(x).slice(0, m).reduce((a, b) => a + b, 0) / m;

export async function benchSplice(p: SpliceBenchParams) {
  const { dictionary, samples } = plantedSplice(p.n, p.c, p.d, p.k, p.noise);
  const results: BenchRow[] = [];
  let ws: Decomposition | undefined;
  for (const solver of p.solvers) {
    const full = solver === 'auto' || solver === 'ws', m = full ? p.n : Math.min(p.n, p.baselineN);
    const part = samples.subarray(0, m * p.d);
    let dec: Decomposition | undefined;
    const out = new Float32Array(m * p.c); // reused across repeats, as a long-running caller would
    const cpu: number[] = []; // CPU seconds of every process thread per run: robust to other load on the machine
    const seconds = await timeMedian(async () => {
      const c0 = process.cpuUsage();
      dec = await solveSplice(dictionary, part, p.d, { l1: p.l1, solver, out });
      const c1 = process.cpuUsage(c0);
      cpu.push((c1.user + c1.system) / 1e6);
    }, full ? p.repeats : 1, full ? 1 : 0);
    const cpuSeconds = median(cpu.slice(full ? 1 : 0));
    if (solver === 'ws') ws = dec;
    let l0 = 0;
    for (const w of dec!.weights) l0 += w > 0 ? 1 : 0;
    results.push({
      name: solver, seconds, samples: m, samples_per_s: m / seconds, cpu_seconds: cpuSeconds,
      samples_per_cpu_s: m / cpuSeconds, mean_objective: mean(dec!.objective),
      mean_l0: l0 / m, mean_rel_gap: mean(dec!.objective.map((o, i) => dec!.gap[i] / o)),
      max_iterations: Math.max(...dec!.iterations),
    });
  }
  if (ws)
    for (const r of results) r.rel_objective_vs_ws = (r.mean_objective as number) / mean(ws.objective, r.samples as number) - 1;
  return { suite: 'splice', params: { ...p }, machine: machine(), results };
}

export function registerBenchSplice(bench: Command): void {
  bench
    .command('splice')
    .description('SpLiCE solvers (auto, fista, admm, ws) on the same planted data')
    .option('--n <samples>', 'samples', integer('--n'), 5000)
    .option('--c <concepts>', 'dictionary size', integer('--c'), 10000)
    .option('--d <dim>', 'dimension', integer('--d'), 512)
    .option('--l1 <lambda>', 'λ', number('--l1'), 0.25)
    .option('--k <k>', 'planted concepts per sample', integer('--k'), 10)
    .option('--noise <sigma>', 'Gaussian noise per coordinate before normalising', number('--noise'), 0.02)
    .option('--baseline-n <m>', 'samples the full-dictionary baselines (fista, admm) solve', integer('--baseline-n'), 16)
    .option('--repeats <n>', 'timed repeats for auto/ws (median)', integer('--repeats'), 3)
    .addOption(listOption('--solvers <list>', 'comma list of auto,fista,admm,ws', 'auto,fista,admm,ws'))
    .option('--json', 'print one JSON object')
    .action(async ({ json, ...p }: SpliceBenchParams & { json?: boolean }) => printReport(await benchSplice(p), !!json));
}
