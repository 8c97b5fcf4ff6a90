// bench topk: exact top-k of conceptlens (fp32 and fp16 storage) against
// FAISS IndexFlatIP (same OpenBLAS, through our addon) and hnswlib-node, on
// the same random data in one run. Seconds are medians of the search alone.
import type { Command } from 'commander';
import { exactSearch, type SearchResult } from '../ts/retrieval/exact.js';
import { buildIndex, recallAtK, type IndexKind } from '../ts/retrieval/ann.js';
import { floatsToHalves } from '../ts/io/fp16.js';
import { rng } from '../ts/random.js';
import { native } from '../ts/native.js';
import { machine, printReport, timeMedian, type BenchRow } from './report.js';

export interface TopkBenchParams {
  n: number;
  q: number;
  d: number;
  k: number;
  dtype: 'fp32' | 'fp16';
  repeats: number;
  contenders: string[];
}

/** Seeded uniform(-0.5, 0.5) data, so runs are comparable. */
export function randomMatrix(rows: number, d: number, seed: number): Float32Array {
  const rand = rng(seed);
  return Float32Array.from({ length: rows * d }, () => rand() - 0.5);
}

function row(name: string, seconds: number, p: TopkBenchParams, recall: number, extra: Record<string, unknown> = {}): BenchRow {
  return {
    name,
    seconds,
    queries_per_s: p.q / seconds,
    gflops: (2 * p.n * p.q * p.d) / seconds / 1e9,
    [`recall_at_${p.k}`]: recall,
    ...extra,
  };
}

export async function benchTopk(p: TopkBenchParams) {
  const vocab = randomMatrix(p.n, p.d, 1), queries = randomMatrix(p.q, p.d, 2);
  const results: BenchRow[] = [];
  const want = (c: string) => p.contenders.includes(c);
  // The reference for recall: fp32 storage scanned by fp32 GEMM tiles.
  const exact = await exactSearch(queries, vocab, p.d, { k: p.k, kernel: 'sgemm' });
  const variants: [string, string, Float32Array | Uint16Array, 'auto' | 'sgemm'][] = [
    ['conceptlens-sgemm', 'conceptlens-exact-fp32-sgemm', vocab, 'sgemm'],
    ['conceptlens', `conceptlens-exact-fp32${native().info().bf16Screening ? '-bf16screen' : ''}`, vocab, 'auto'],
  ];
  if (want('conceptlens-fp16') || p.dtype === 'fp16') variants.push(['conceptlens-fp16', `conceptlens-exact-fp16${native().info().bf16Screening ? '-bf16screen' : ''}`, floatsToHalves(vocab), 'auto']);
  for (const [contender, name, data, kernel] of variants) {
    if (!want(contender)) continue;
    let r: SearchResult | undefined;
    const s = await timeMedian(async () => (r = await exactSearch(queries, data, p.d, { k: p.k, kernel })), p.repeats);
    results.push(row(name, s, p, recallAtK(r!.ids, exact.ids, p.q, p.k), { vocab_bytes: data.byteLength }));
  }
  for (const [contender, kind] of [['faiss', 'faiss-flat'], ['hnsw', 'hnsw']] as [string, IndexKind][]) {
    if (!want(contender)) continue;
    const t0 = performance.now();
    const index = await buildIndex(kind, vocab, p.d, { metric: 'ip' });
    const build = (performance.now() - t0) / 1000;
    let r: { ids: BigInt64Array } | undefined;
    const s = await timeMedian(async () => (r = await index.search(queries, p.k)), p.repeats);
    const name = kind === 'faiss-flat' ? 'faiss-IndexFlatIP' : 'hnswlib-node';
    results.push(row(name, s, p, recallAtK(r!.ids, exact.ids, p.q, p.k), { build_seconds: build }));
  }
  const base = results.find((r) => r.name.startsWith('faiss'));
  if (base) for (const r of results) r.ratio_vs_faiss = r.seconds / base.seconds;
  return { suite: 'topk', params: { ...p }, machine: machine(), results };
}

export function registerBenchTopk(bench: Command): void {
  bench
    .command('topk')
    .description('exact top-k: conceptlens vs FAISS IndexFlatIP vs hnswlib-node')
    .option('--n <rows>', 'vocabulary rows', '1000000')
    .option('--q <queries>', 'queries', '1000')
    .option('--d <dim>', 'dimension', '512')
    .option('--k <k>', 'neighbours', '10')
    .option('--dtype <dtype>', 'conceptlens storage: fp32|fp16 (both are measured when fp16)', 'fp32')
    .option('--repeats <n>', 'timed repeats (median)', '3')
    .option('--contenders <list>', 'comma list of conceptlens,conceptlens-fp16,conceptlens-sgemm,faiss,hnsw', 'conceptlens,conceptlens-fp16,conceptlens-sgemm,faiss')
    .option('--json', 'print one JSON object')
    .action(async (o) => {
      const p: TopkBenchParams = {
        n: +o.n, q: +o.q, d: +o.d, k: +o.k, dtype: o.dtype, repeats: +o.repeats,
        contenders: String(o.contenders).split(','),
      };
      printReport(await benchTopk(p), !!o.json);
    });
}
