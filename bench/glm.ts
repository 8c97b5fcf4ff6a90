// bench glm: LE's elastic-net ranking problem (standardised concepts X, n×p;
// standardised neurons Y, n×K) solved by exact coordinate descent and by the
// reference's GLM-SAGA, on the same synthetic data in one run. Reports
// neurons/s and each solver's mean objective and its gap to the best found.
import type { Command } from 'commander';
import { fitElasticNet, standardisedRows, type GlmFit } from '../ts/methods/le/index.js';
import type { Mat } from '../ts/matrix.js';
import { randn } from '../ts/random.js';
import { machine, printReport, timeMedian, type BenchRow } from './report.js';
import { integer, listOption } from '../ts/cli/options.js';

export interface GlmBenchParams {
  n: number;
  p: number;
  neurons: number;
  repeats: number;
  solvers: string[];
}

const everyRow = (n: number) => Int32Array.from({ length: n }, (_, i) => i);

/** Concepts sharing 8 latent factors (as related concepts do); each neuron a noisy mix of 6 concepts. */
export function glmProblem(n: number, p: number, K: number): { X: Mat; Y: Mat } {
  const r = 8, Z = randn(n * r, 1), M = randn(r * p, 2), X = randn(n * p, 3);
  for (let i = 0; i < n; i++)
    for (let f = 0; f < r; f++) {
      const z = 0.4 * Z[i * r + f];
      for (let j = 0; j < p; j++) X[i * p + j] += z * M[f * p + j];
    }
  const Y = randn(n * K, 4), pick = randn(K * 6, 5);
  for (let k = 0; k < K; k++)
    for (let t = 0; t < 6; t++) {
      const j = Math.floor(Math.abs(pick[k * 6 + t] * 7919)) % p, w = (t % 2 ? -0.5 : 1) * (1 + 0.1 * t);
      for (let i = 0; i < n; i++) Y[i * K + k] += w * X[i * p + j];
    }
  return { X: standardisedRows({ data: X, rows: n, cols: p }, everyRow(n)), Y: standardisedRows({ data: Y, rows: n, cols: K }, everyRow(n)) };
}

const meanOf = (x: ArrayLike<number>) => Array.from(x).reduce((a, b) => a + b, 0) / x.length;

export async function benchGlm(p: GlmBenchParams) {
  const { X, Y } = glmProblem(p.n, p.p, p.neurons);
  const fits = new Map<string, { seconds: number; cpuSeconds: number; fit: GlmFit }>();
  for (const solver of p.solvers) {
    let fit: GlmFit | undefined;
    // Process CPU time (all threads) beside wall time: steadier than wall time on a shared machine.
    const cpu0 = process.cpuUsage();
    const seconds = await timeMedian(async () => (fit = await fitElasticNet(X, Y, { solver: solver as 'cd' | 'saga' })), p.repeats, 0);
    const cpu = process.cpuUsage(cpu0);
    fits.set(solver, { seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6 / p.repeats, fit: fit! });
  }
  // The best objective any solver reached per neuron: the yardstick for relative accuracy.
  const best = new Float64Array(p.neurons).fill(Infinity);
  for (const { fit } of fits.values()) fit.objective.forEach((o, k) => (best[k] = Math.min(best[k], o)));
  const results: BenchRow[] = [...fits].map(([solver, { seconds, cpuSeconds, fit }]) => {
    const gaps = Array.from(fit.objective, (o, k) => (o - best[k]) / best[k]);
    return {
      name: solver === 'cd' ? 'conceptlens-cd' : 'glm-saga',
      seconds,
      cpu_seconds: cpuSeconds,
      neurons_per_s: p.neurons / seconds,
      mean_objective: meanOf(fit.objective),
      max_rel_gap_to_best: Math.max(...gaps),
      iterations: fit.iterations,
      nonzeros_per_neuron: fit.weights.reduce((a, w) => a + (w !== 0 ? 1 : 0), 0) / p.neurons,
    };
  });
  if (fits.has('cd') && fits.has('saga')) {
    const cd = results.find((r) => r.name === 'conceptlens-cd')!, saga = results.find((r) => r.name === 'glm-saga')!;
    cd.speedup_vs_saga = saga.seconds / cd.seconds;
    cd.cpu_speedup_vs_saga = (saga.cpu_seconds as number) / (cd.cpu_seconds as number);
  }
  return { suite: 'glm', params: { ...p }, machine: machine(), results };
}

export function registerBenchGlm(bench: Command): void {
  bench
    .command('glm')
    .description("elastic net for LE's concept ranking: coordinate descent vs GLM-SAGA (neurons/s, objective)")
    .option('--n <n>', 'samples', integer('--n'), 10000)
    .option('--p <p>', 'concepts', integer('--p'), 2000)
    .option('--neurons <k>', 'neurons solved as one batch', integer('--neurons'), 512)
    .option('--repeats <r>', 'timed runs per solver (median)', integer('--repeats'), 1)
    .addOption(listOption('--solvers <list>', 'comma-separated: cd,saga', 'cd,saga'))
    .option('--json', 'print one JSON object')
    .action(async ({ json, ...p }: GlmBenchParams & { json?: boolean }) => printReport(await benchGlm(p), !!json));
}
