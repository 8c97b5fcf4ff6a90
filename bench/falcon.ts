// bench falcon-captions: FALCON's caption retrieval (top-5 per image, per-shard
// softmax(100·cos)) over a synthetic fp16 caption vocabulary in the LAION
// shard layout, streamed from disk. Reports captions scanned per second, the
// scan's effective GFLOP/s beside the machine's sgemm rate, the split between
// scanning and reading the winners' captions, CPU seconds and the process's
// peak resident memory; and `vocab build --dedupe` over the same shards
// (rows/s, memory). The machine's sequential read rate on the shard files
// and its sgemm rate are measured in the same run.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Option, type Command } from 'commander';
import { openCaptions, topCaptions, type VocabSearcher } from '../ts/methods/falcon/captions.js';
import { unitRows, writeSyntheticLaion } from '../ts/methods/falcon/synthetic.js';
import { Vocabulary } from '../ts/retrieval/vocabulary.js';
import { progressBar } from '../ts/cli/progress.js';
import { machine, median, printReport, type BenchRow } from './report.js';
import { cpuSeconds, sequentialReadRate, sgemmRate, withPeakRss } from './measure.js';
import { integer, list, listOption, oneOf } from '../ts/cli/options.js';

export interface FalconCaptionParams {
  rows: number;
  dim: number;
  shardRows: number;
  images: number[];
  repeats: number;
  captions: 'parquet' | 'txt';
  variants: string[];
}

/** The caption searches: softmax temperature, and whether rows are taken as unit norm. */
const SEARCHES: Record<string, { T: number; unit: boolean }> = {
  'per-shard-softmax-100': { T: 100, unit: false },
  'per-shard-softmax-100-unit-rows': { T: 100, unit: true },
  cosine: { T: 0, unit: false },
};

/** topCaptions `repeats` times after a warm-up: medians of the whole call, of its scan and of its caption reads. */
async function timeCaptions(vocab: Vocabulary, images: number, dim: number, T: number, unit: boolean, repeats: number) {
  const queries = unitRows(images, dim, 7);
  const runs: { total: number; cpu: number; scan: number; scanCpu: number; texts: number }[] = [];
  let scan = 0, scanCpu = 0, texts = 0;
  // The vocabulary's own search, split into its two halves to time them.
  const search: VocabSearcher = async (v, q, o) => {
    const t0 = performance.now(), c0 = process.cpuUsage(), r = await v.scan(q, o), t1 = performance.now();
    scanCpu = cpuSeconds(c0);
    const out = await v.finish(q, r, o);
    scan = (t1 - t0) / 1000;
    texts = (performance.now() - t1) / 1000;
    return out;
  };
  for (let i = 0; i <= repeats; i++) {
    const c0 = process.cpuUsage(), t0 = performance.now();
    await topCaptions(queries, images, vocab, { softmaxTemperature: T, unitRows: unit, search });
    if (i > 0) runs.push({ total: (performance.now() - t0) / 1000, cpu: cpuSeconds(c0), scan, scanCpu, texts });
  }
  const m = (f: (r: (typeof runs)[0]) => number) => median(runs.map(f));
  return { seconds: m((r) => r.total), cpu: m((r) => r.cpu), scan: m((r) => r.scan), scanCpu: m((r) => r.scanCpu), texts: m((r) => r.texts) };
}

/** `vocab build --dedupe` over the shards: open with de-duplication, write the store. */
async function timeDedupeBuild(dir: string, rows: number): Promise<BenchRow> {
  const out = mkdtempSync(join(tmpdir(), 'falcon-dedupe-'));
  try {
    const { value, peak } = await withPeakRss(async () => {
      const t0 = performance.now(), c0 = process.cpuUsage();
      const v = await Vocabulary.open(dir, { dedupe: true });
      const t1 = performance.now(), c1 = cpuSeconds(c0);
      await v.save(join(out, 'store'));
      return { dedupe: (t1 - t0) / 1000, dedupeCpu: c1, seconds: (performance.now() - t0) / 1000, cpu: cpuSeconds(c0), kept: v.rows };
    });
    // TextHashSet: 16-byte slots, a power of two at most 3/4 full, sized for every row up front.
    const slots = 2 ** Math.ceil(Math.log2(Math.max(1024, rows / 0.75)));
    return { name: 'vocab-build-dedupe', seconds: value.seconds, rows_per_s: rows / value.seconds, cpu_s: value.cpu,
      dedupe_s: value.dedupe, dedupe_rows_per_s: rows / value.dedupe, dedupe_cpu_s: value.dedupeCpu, kept_rows: value.kept,
      hash_table_gib: (16 * slots) / 2 ** 30, peak_rss_gib: peak / 2 ** 30 };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

export async function benchFalconCaptions(p: FalconCaptionParams, dir: string) {
  const nshards = Math.ceil(p.rows / p.shardRows), marker = join(dir, `text_emb_${nshards - 1}.npy`);
  if (!existsSync(marker)) {
    const bar = progressBar('synthetic vocabulary', 'rows');
    await writeSyntheticLaion(dir, { rows: p.rows, dim: p.dim, shardRows: p.shardRows, captions: p.captions, onProgress: (d, t) => bar.update(d, t) });
    bar.stop();
  }
  const vocab = await openCaptions(dir);
  if (vocab.rows !== p.rows || vocab.dim !== p.dim) throw new Error(`${dir}: holds ${vocab.rows} × ${vocab.dim}, expected ${p.rows} × ${p.dim}; use an empty --dir`);
  const read = sequentialReadRate(Array.from({ length: nshards }, (_, i) => join(dir, `text_emb_${i}.npy`)));
  const results: BenchRow[] = [{ name: 'sequential-read-of-the-shards', seconds: read.seconds, gbps: read.gbps }];
  const sgemm = await sgemmRate();
  results.push({ name: 'openblas-sgemm', seconds: sgemm.seconds, gflops: sgemm.gflops, gflops_per_cpu_s: sgemm.perCpuSecond });
  for (const [name, { T, unit }] of Object.entries(SEARCHES).filter(([name]) => p.variants.includes(name)))
    for (const images of p.images) {
      const { value: t, peak } = await withPeakRss(() => timeCaptions(vocab, images, p.dim, T, unit, p.repeats));
      const flop = 2 * p.rows * images * p.dim;
      results.push({
        name: `${name} (${images} images)`, seconds: t.seconds, captions_per_s: p.rows / t.seconds, images_per_s: images / t.seconds,
        scan_s: t.scan, texts_s: t.texts, cpu_s: t.cpu, scan_cpu_s: t.scanCpu, gflops: flop / t.scan / 1e9, gflops_per_cpu_s: flop / t.scanCpu / 1e9,
        of_sgemm_per_cpu_s: flop / t.scanCpu / 1e9 / sgemm.perCpuSecond, scan_gbps: (p.rows * p.dim * 2) / t.scan / 1e9, peak_rss_gib: peak / 2 ** 30,
      });
    }
  if (p.variants.includes('dedupe-build')) results.push(await timeDedupeBuild(dir, p.rows));
  return { suite: 'falcon-captions', params: { ...p, vocab_bytes: p.rows * p.dim * 2 }, machine: await machine(), results };
}

export function registerBenchFalcon(bench: Command): void {
  bench
    .command('falcon-captions')
    .description('FALCON caption retrieval: top-5 captions per image over a synthetic fp16 LAION-layout vocabulary streamed from disk')
    .option('--rows <n>', 'caption vocabulary rows', integer('--rows'), 10000000)
    .option('--dim <d>', 'embedding dimension', integer('--dim'), 512)
    .option('--shard-rows <n>', 'rows per text_emb_{i}.npy shard', integer('--shard-rows'), 1000000)
    .addOption(new Option('--images <list>', 'comma list of image counts to caption (each one pass over the shards)')
      .argParser((v) => list(v).map(integer('--images'))).default([64], '64'))
    .option('--repeats <n>', 'timed repeats after a warm-up (median)', integer('--repeats'), 1)
    .option('--captions <kind>', 'caption files: parquet (LAION metadata_{i}.parquet) | txt', oneOf('--captions', ['parquet', 'txt']), 'parquet')
    .addOption(listOption('--variants <list>', 'comma list of per-shard-softmax-100,per-shard-softmax-100-unit-rows,cosine,dedupe-build', 'per-shard-softmax-100,per-shard-softmax-100-unit-rows,cosine',
      ['per-shard-softmax-100', 'per-shard-softmax-100-unit-rows', 'cosine', 'dedupe-build']))
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
