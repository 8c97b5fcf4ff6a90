// bench falcon-captions: FALCON's caption retrieval (top-5 per image, per-shard
// softmax(100·cos)) over a synthetic fp16 caption vocabulary in the LAION
// shard layout, streamed from disk. Reports captions scanned per second and
// the process's peak resident memory.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { openCaptions, topCaptions } from '../ts/methods/falcon/captions.js';
import { unitRows, writeSyntheticLaion } from '../ts/methods/falcon/synthetic.js';
import { progressBar } from '../ts/cli/progress.js';
import { machine, printReport, timeMedian, type BenchRow } from './report.js';
import { integer, listOption, oneOf } from '../ts/cli/options.js';

export interface FalconCaptionParams {
  rows: number;
  dim: number;
  shardRows: number;
  images: number;
  repeats: number;
  captions: 'parquet' | 'txt';
  variants: string[];
}

/** Runs fn while sampling resident memory; returns fn's value and the peak RSS in bytes. */
async function withPeakRss<T>(fn: () => Promise<T>): Promise<{ value: T; peak: number }> {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
  try {
    const value = await fn();
    return { value, peak: Math.max(peak, process.memoryUsage().rss) };
  } finally {
    clearInterval(timer);
  }
}

export async function benchFalconCaptions(p: FalconCaptionParams, dir: string) {
  const marker = join(dir, `text_emb_${Math.ceil(p.rows / p.shardRows) - 1}.npy`);
  if (!existsSync(marker)) {
    const bar = progressBar('synthetic vocabulary', 'rows');
    await writeSyntheticLaion(dir, { rows: p.rows, dim: p.dim, shardRows: p.shardRows, captions: p.captions, onProgress: (d, t) => bar.update(d, t) });
    bar.stop();
  }
  const vocab = await openCaptions(dir);
  if (vocab.rows !== p.rows || vocab.dim !== p.dim) throw new Error(`${dir}: holds ${vocab.rows} × ${vocab.dim}, expected ${p.rows} × ${p.dim}; use an empty --dir`);
  const queries = unitRows(p.images, p.dim, 7);
  const results: BenchRow[] = [];
  const runs = [['per-shard-softmax-100', 100, false], ['per-shard-softmax-100-unit-rows', 100, true], ['cosine', 0, false]] as const;
  for (const [name, T, unit] of runs.filter(([name]) => p.variants.includes(name))) {
    const { value: seconds, peak } = await withPeakRss(() => timeMedian(() => topCaptions(queries, p.images, vocab, { softmaxTemperature: T, unitRows: unit }), p.repeats, 0));
    results.push({ name, seconds, captions_per_s: p.rows / seconds, images_per_s: p.images / seconds, peak_rss_gib: peak / 2 ** 30 });
  }
  return { suite: 'falcon-captions', params: { ...p, vocab_bytes: p.rows * p.dim * 2 }, machine: machine(), results };
}

export function registerBenchFalcon(bench: Command): void {
  bench
    .command('falcon-captions')
    .description('FALCON caption retrieval: top-5 captions per image over a synthetic fp16 LAION-layout vocabulary streamed from disk')
    .option('--rows <n>', 'caption vocabulary rows', integer('--rows'), 10000000)
    .option('--dim <d>', 'embedding dimension', integer('--dim'), 512)
    .option('--shard-rows <n>', 'rows per text_emb_{i}.npy shard', integer('--shard-rows'), 1000000)
    .option('--images <n>', 'image embeddings to caption', integer('--images'), 64)
    .option('--repeats <n>', 'timed repeats (median)', integer('--repeats'), 1)
    .option('--captions <kind>', 'caption files: parquet (LAION metadata_{i}.parquet) | txt', oneOf('--captions', ['parquet', 'txt']), 'parquet')
    .addOption(listOption('--variants <list>', 'comma list of per-shard-softmax-100,per-shard-softmax-100-unit-rows,cosine', 'per-shard-softmax-100,per-shard-softmax-100-unit-rows,cosine'))
    .option('--dir <path>', 'shard directory (generated when empty; kept); default a temporary one, removed after')
    .option('--json', 'print one JSON object')
    .action(async ({ dir: given, json, ...p }: FalconCaptionParams & { dir?: string; json?: boolean }) => {
      const dir = given ?? mkdtempSync(join(tmpdir(), 'falcon-captions-'));
      mkdirSync(dir, { recursive: true });
      try {
        printReport(await benchFalconCaptions(p, dir), !!json);
      } finally {
        if (!given) rmSync(dir, { recursive: true, force: true });
      }
    });
}
