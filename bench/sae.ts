// bench sae: samples/s of one SAE training step (forward, backward, Adam,
// decoder constraint, statistics) per variant, on the same batch for every
// contender: the user's features (--features, first --batch rows), planted
// sparse data (items sum 16 random unit atoms with positive weights, plus
// noise) or 'clip-mix' (the same sums of the 2,148 real CLIP concept
// embeddings of the assets mirror: CLIP's shared mean and outlier dimensions
// included, d = 512). Two conceptlens rows per variant, each the median of --repeats
// steps: phase 'init', after --warmup steps from random initialisation, and
// phase 'trained', after --train more steps, when ReLU-L1's codes have thinned
// out enough for its sparse path (l0, sparse_path and screened say what
// the step did).
// With --peers torch, PyTorch runs the same SAE (bench/peers/torch_sae.py) on
// the same batch with the same warm-up and repeats: its row is phase 'init'.
import type { Command } from 'commander';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { engineInfo } from '../ts/engine/info.js';
import { readMatrix } from '../ts/io/matrix.js';
import { writeNpy } from '../ts/io/npy.js';
import { createTrainer, type SaeKind } from '../ts/methods/sae.js';
import { plantedMixtures } from '../ts/random.js';
import { integer, listOption, oneOf } from '../ts/cli/options.js';
import { deticConcepts } from './clip-data.js';
import { peerTiming, runPeer } from './peers.js';
import { writeBenchPlot } from './plot.js';
import { addRunOptions, floorFields, generatorOption, refuseWithClipMix, machine, machinePeaks, reportAction, timeMedian, type BenchRow, type RunOptions } from './report.js';

export interface SaeBenchParams extends RunOptions {
  data: 'planted' | 'clip-mix';
  features?: string;
  d: number;
  expansion: number;
  batch: number;
  k: number;
  train: number;
  variants: SaeKind[];
}

/** The batch every contender steps on: the user's first `batch` rows, or a generator's. */
function saeBatch(p: SaeBenchParams): { x: Float32Array; d: number; source: string } {
  if (p.features) {
    const f = readMatrix(p.features, { what: 'features' });
    if (f.rows < p.batch) throw new Error(`--features: ${p.features} has ${f.rows} rows, fewer than --batch ${p.batch}`);
    return { x: Float32Array.from(f.data.subarray(0, p.batch * f.cols)), d: f.cols, source: p.features };
  }
  const mix = { active: [16, 16] as [number, number], weight: [0.5, 1.5] as [number, number] };
  if (p.data === 'clip-mix') {
    const c = deticConcepts();
    return { x: plantedMixtures(p.batch, c.d, c.rows, 1, { ...mix, dictionary: c.data }).x, d: c.d, source: 'clip-mix' };
  }
  return { x: plantedMixtures(p.batch, p.d, p.expansion * p.d, 1, mix).x, d: p.d, source: 'planted' };
}

async function conceptlensRows(kind: SaeKind, x: Float32Array, d: number, p: SaeBenchParams): Promise<BenchRow[]> {
  const t = createTrainer({ d, m: p.expansion * d, kind, k: p.k });
  let last = await t.step(x, p.batch, null);
  const step = async () => (last = await t.step(x, p.batch, null));
  const row = (phase: string, seconds: number): BenchRow =>
    ({ name: `conceptlens-${kind}${phase === 'init' ? '' : `-${phase}`}`, kind, phase, seconds, samples_per_s: p.batch / seconds, l0: last.l0, sparse_path: last.sparse,
      screened: last.screened });
  const init = row('init', await timeMedian(step, p.repeats, Math.max(0, p.warmup - 1)));
  for (let s = 0; s < p.train; s++) await step();
  return [init, row('trained', await timeMedian(step, p.repeats, 0))];
}

/** PyTorch's step of the same SAE per variant, on the same batch (written once to an .npy). */
function torchRows(x: Float32Array, d: number, p: SaeBenchParams): { rows: BenchRow[]; skipped: string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'conceptlens-sae-')), rows: BenchRow[] = [], skipped: string[] = [];
  try {
    const features = join(dir, 'X.npy');
    writeNpy(features, x, [p.batch, d]);
    for (const kind of p.variants) {
      const r = runPeer('torch_sae.py', { features, m: p.expansion * d, kind, k: p.k, batch: p.batch, warmup: p.warmup,
        repeats: p.repeats, threads: engineInfo().computeThreads });
      if ('skipped' in r) skipped.push(r.skipped);
      else rows.push({ name: `torch-${kind}`, label: r.row.label, kind, phase: 'init', ...peerTiming(r.row), samples_per_s: r.row.samples_per_s });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { rows, skipped };
}

export async function benchSae(p: SaeBenchParams) {
  const { x, d, source } = saeBatch(p), results: BenchRow[] = [];
  for (const kind of p.variants) results.push(...(await conceptlensRows(kind, x, d, p)));
  const torch = p.peers.includes('torch') ? torchRows(x, d, p) : { rows: [], skipped: [] };
  for (const r of results) {
    const peer = torch.rows.find((t) => t.kind === r.kind);
    if (peer && r.phase === 'init') r.speedup_vs_torch = (r.samples_per_s as number) / (peer.samples_per_s as number);
  }
  results.push(...torch.rows);
  // The dense step's floor (conceptlens's dense path, PyTorch's step): its five GEMMs at the fp32 peak. Sparse
  // steps skip most of that arithmetic, so it bounds nothing there and they have none.
  const m = p.expansion * d, fp32 = (await machinePeaks()).fp32MacsPerS;
  for (const r of results) if (r.sparse_path === false || r.name.startsWith('torch-')) Object.assign(r, floorFields(r.seconds, 5 * p.batch * d * m, fp32));
  const floor = "fp32 multiply-adds of the dense step's five GEMMs (encoder, decoder and three in the backward pass: 5·batch·d·m) at the fp32 peak; dense steps only";
  const report = { suite: 'sae', params: { ...p, data: p.features ? 'user' : p.data, d, m, source, floor, skipped: torch.skipped },
    machine: await machine(), results };
  if (p.plot) writeBenchPlot(p.plot, report, { throughput: 'samples_per_s' });
  return report;
}

export function registerBenchSae(bench: Command): void {
  const cmd = bench.command('sae')
    .description('SAE training step throughput (samples/s) for relu-l1, topk and batchtopk, against PyTorch on the same batch')
    .addOption(generatorOption('--data <kind>', 'planted (sums of random unit atoms) | clip-mix (the same sums of the real CLIP concept embeddings; needs the assets mirror; d = 512)',
      ['features'], oneOf('--data', ['planted', 'clip-mix'] as const), 'planted'))
    .option('--features <npy>', 'your features (rows × d): the first --batch rows are the batch, instead of a generator')
    .addOption(generatorOption('--d <n>', 'input dimension of the planted data', ['features'], integer('--d'), 512))
    .option('--expansion <n>', 'latents per input dimension', integer('--expansion'), 8)
    .option('--batch <n>', 'batch size', integer('--batch'), 4096)
    .option('--k <n>', 'active latents (topk, batchtopk)', integer('--k'), 32)
    .option('--train <n>', "training steps before the 'trained' timing", integer('--train', 0), 100)
    .addOption(listOption('--variants <list>', 'comma-separated variants', 'relu-l1,topk,batchtopk', ['relu-l1', 'topk', 'batchtopk']));
  refuseWithClipMix(cmd, ['d']);
  addRunOptions(cmd, { repeats: 5, peers: ['torch'], plot: 'draw samples/s bars per contender and phase' })
    .action(reportAction(benchSae));
}
