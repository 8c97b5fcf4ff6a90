// bench sae: samples/s of one native SAE training step (forward, backward,
// Adam, decoder constraint, statistics) per variant, on planted sparse data:
// items are sums of a few random unit atoms with positive weights, plus noise.
import type { Command } from 'commander';
import { rng } from '../ts/random.js';
import { createTrainer, type SaeKind, type SaeTrainer } from '../ts/methods/sae.js';
import { machine, printReport, timeMedian, type BenchRow } from './report.js';
import { integer, listOption } from '../ts/cli/options.js';

export interface SaeBenchParams {
  d: number;
  expansion: number;
  batch: number;
  k: number;
  repeats: number;
  variants: SaeKind[];
}

export function plantedData(rows: number, d: number, atoms: number, active: number, seed: number): Float32Array {
  const rand = rng(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  const dict = new Float32Array(atoms * d);
  for (let j = 0; j < atoms; j++) {
    let nn = 0;
    for (let c = 0; c < d; c++) nn += (dict[j * d + c] = gauss()) ** 2;
    for (let c = 0; c < d; c++) dict[j * d + c] /= Math.sqrt(nn);
  }
  const x = new Float32Array(rows * d);
  for (let i = 0; i < rows; i++) {
    for (let a = 0; a < active; a++) {
      const j = Math.floor(rand() * atoms), w = 0.5 + rand();
      for (let c = 0; c < d; c++) x[i * d + c] += w * dict[j * d + c];
    }
    for (let c = 0; c < d; c++) x[i * d + c] += 0.01 * gauss();
  }
  return x;
}

export async function benchSae(p: SaeBenchParams) {
  const m = p.expansion * p.d;
  const x = plantedData(p.batch, p.d, m, 16, 1);
  const results: BenchRow[] = [];
  for (const kind of p.variants) {
    const t: SaeTrainer = createTrainer({ d: p.d, m, kind, k: p.k });
    let last = await t.step(x, p.batch, null);
    const seconds = await timeMedian(async () => (last = await t.step(x, p.batch, null)), p.repeats, 1);
    results.push({ name: kind, seconds, samples_per_s: p.batch / seconds, l0: last.l0, sparse_path: last.sparse });
  }
  return { suite: 'sae', params: { ...p, m }, machine: machine(), results };
}

export function registerBenchSae(bench: Command): void {
  bench.command('sae')
    .description('SAE training step throughput (samples/s) for relu-l1, topk and batchtopk')
    .option('--d <n>', 'input dimension', integer('--d'), 512)
    .option('--expansion <n>', 'latents per input dimension', integer('--expansion'), 8)
    .option('--batch <n>', 'batch size', integer('--batch'), 4096)
    .option('--k <n>', 'active latents (topk, batchtopk)', integer('--k'), 32)
    .option('--repeats <n>', 'timed steps (median)', integer('--repeats'), 5)
    .addOption(listOption('--variants <list>', 'comma-separated variants', 'relu-l1,topk,batchtopk'))
    .option('--json', 'one JSON line')
    .action(async ({ json, ...p }: SaeBenchParams & { json?: boolean }) => printReport(await benchSae(p), !!json));
}
