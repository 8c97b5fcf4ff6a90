// bench topk: exact top-k of conceptlens (fp32 and fp16 storage) against
// FAISS IndexFlatIP (same OpenBLAS, through our addon) and hnswlib-node, on
// the same random data in one run; or, with --vocab, a search of the user's
// vocabulary (a .npy, a LAION shard directory or a store, streamed from
// disk) with the user's queries, beside the machine's sequential read rate
// on the same files. Seconds are medians of the search alone.
import { statSync } from 'node:fs';
import { totalmem } from 'node:os';
import { Option, type Command } from 'commander';
import { exactSearch, PreparedRows, type Metric, type ScanKernel, type ScoreArithmetic, type SearchResult } from '../ts/retrieval/exact.js';
import { Vocabulary } from '../ts/retrieval/vocabulary.js';
import { readMatrix } from '../ts/io/matrix.js';
import { normaliseRows } from '../ts/matrix.js';
import { unitRows } from '../ts/methods/falcon/synthetic.js';
import { sequentialReadRate, withPeakRss } from './measure.js';
import { buildIndex, recallAtK, type IndexKind } from '../ts/retrieval/ann.js';
import { floatsToHalves, halvesToFloats } from '../ts/engine/fp16.js';
import { gaussian, rng } from '../ts/random.js';
import { readNpy } from '../ts/io/npy.js';
import { assetPath } from '../ts/assets.js';
import { engineInfo } from '../ts/engine/info.js';
import { integer, listOption, oneOf } from '../ts/cli/options.js';
import { UsageError } from '../ts/cli/run.js';
import { writeBenchPlot } from './plot.js';
import { addRunOptions, floorFields, generatorOption, refuseWithClipMix, machine, machinePeaks, reportAction, timeMedian, type BenchReport, type BenchRow, type RunOptions } from './report.js';

export interface TopkBenchParams extends Omit<RunOptions, 'peers'> {
  /** A vocabulary to search instead of generated data: a .npy, a LAION shard directory or a store. */
  vocab?: string;
  /** Queries for --vocab (a .npy of rows of its dimension); default --q seeded random unit rows. */
  queries?: string;
  /** Score for --vocab (default cosine); generated data is searched by inner product. */
  metric?: Metric;
  /** 'uniform': seeded uniform(-0.5, 0.5); 'clip-mix': real CLIP text embeddings (see clipMix). */
  data: 'uniform' | 'clip-mix';
  n: number;
  q: number;
  d: number;
  k: number;
  dtype: 'fp32' | 'fp16';
  contenders: string[];
}

/** Seeded uniform(-0.5, 0.5) data, so runs are comparable. */
export function randomMatrix(rows: number, d: number, seed: number): Float32Array {
  const rand = rng(seed);
  return Float32Array.from({ length: rows * d }, () => rand() - 0.5);
}

/** A unit-norm CLIP row from a real embedding table (rows × d). */
function realRow(table: Float32Array, d: number, i: number): Float32Array {
  const r = table.slice(i * d, (i + 1) * d);
  const norm = Math.hypot(...r);
  return r.map((x) => x / norm);
}

/**
 * CLIP-like data with CLIP's shared mean and outlier dimensions: vocabulary
 * rows mix two real LVIS concept embeddings (weights t, 1 − t) plus noise,
 * queries are real Objects365 concept embeddings plus noise. d is CLIP's 512.
 */
function clipMix(n: number, q: number): { vocab: Float32Array; queries: Float32Array; d: number } {
  const table = (name: string) => {
    const a = readNpy(assetPath(`embeddings/detic/${name}`));
    return { data: a.data instanceof Uint16Array ? halvesToFloats(a.data) : (a.data as Float32Array), rows: a.shape[0], d: a.shape[1] };
  };
  const lvis = table('lvis_v1_clip_a+cname.npy'), o365 = table('o365_clip_a+cnamefix.npy');
  const d = lvis.d, rand = rng(3), nrand = rng(4), noise = () => gaussian(nrand);
  const units = Array.from({ length: lvis.rows }, (_, i) => realRow(lvis.data, d, i));
  const vocab = new Float32Array(n * d);
  for (let j = 0; j < n; ++j) {
    const a = units[Math.floor(rand() * lvis.rows)], b = units[Math.floor(rand() * lvis.rows)], t = rand();
    for (let c = 0; c < d; ++c) vocab[j * d + c] = t * a[c] + (1 - t) * b[c] + 0.002 * noise();
  }
  const queries = new Float32Array(q * d);
  for (let i = 0; i < q; ++i) {
    const u = realRow(o365.data, d, i % o365.rows);
    for (let c = 0; c < d; ++c) queries[i * d + c] = u[c] + 0.002 * noise();
  }
  return { vocab, queries, d };
}

const FLOOR = "multiply-adds of every query with every row at the peak of what computes the scores: q·n·d in fp32 (GEMM, FAISS), or q·n·d/2 in int8 (the int8 screen multiplies in Winograd's pairs, one product per two dimensions)";

const CONTENDERS = ['conceptlens', 'conceptlens-prepared', 'conceptlens-fp16', 'conceptlens-sgemm', 'conceptlens-bf16', 'faiss', 'hnsw'];

/** What computes a search's every score: what the engine reports for its scans, FAISS's fp32 GEMM, or 'none' (HNSW). */
type Arithmetic = ScoreArithmetic | 'none';

/** A conceptlens scan's row name: storage, kernel, and the screen the engine reports it took. */
function scanName(dtype: string, kernel: ScanKernel, scoredBy: ScoreArithmetic): string {
  return `conceptlens-exact-${dtype}${kernel === 'sgemm' ? '-sgemm' : scoredBy !== 'fp32' ? `-${scoredBy}screen` : ''}`;
}

/**
 * A search's floor (see floorFields): its q·n·d multiply-adds at the peak of the arithmetic that computes every score
 * (fp32 for GEMMs; int8 for the int8 screen, which needs half of them; bf16's peak is not measured, so its rows have none).
 */
async function floorOf(arithmetic: Arithmetic, seconds: number, macs: number) {
  const pk = await machinePeaks();
  return arithmetic === 'int8' ? floorFields(seconds, macs / 2, pk.int8MacsPerS) : floorFields(seconds, macs, arithmetic === 'fp32' ? pk.fp32MacsPerS : 0);
}

async function row(name: string, seconds: number, p: TopkBenchParams, recall: number, arithmetic: Arithmetic, extra: Record<string, unknown> = {}): Promise<BenchRow> {
  return {
    name,
    seconds,
    queries_per_s: p.q / seconds,
    gflops: (2 * p.n * p.q * p.d) / seconds / 1e9,
    [`recall_at_${p.k}`]: recall,
    ...(await floorOf(arithmetic, seconds, p.q * p.n * p.d)),
    ...extra,
  };
}

/**
 * The user's vocabulary, streamed from disk: each search's seconds and GB/s (the bytes of its shard files over the
 * seconds) beside the machine's sequential read rate on the same files, and recall against the fp32 tiles.
 */
async function benchVocab(p: TopkBenchParams & { vocab: string; metric: Metric }) {
  const v = await Vocabulary.open(p.vocab);
  const queries = p.queries ? readMatrix(p.queries, { what: 'queries', cols: v.dim }).data : unitRows(p.q, v.dim, 2);
  const nq = queries.length / v.dim, files = [...new Set(v.shards.map((s) => s.header.path))];
  const bytes = files.reduce((a, f) => a + statSync(f).size, 0);
  const read = sequentialReadRate(files);
  const results: BenchRow[] = [{ name: 'sequential-read-of-the-shards', seconds: read.seconds, gbps: read.gbps }];
  const exact = await v.scan(queries, { k: p.k, metric: p.metric, kernel: 'sgemm' });
  const kernels: [string, ScanKernel][] = [['conceptlens', 'auto'], ['conceptlens-sgemm', 'sgemm'], ...engineInfo().screening.slice(1).map((f): [string, ScanKernel] => [`conceptlens-${f}`, f])];
  for (const [contender, kernel] of kernels) {
    if (!p.contenders.includes(contender)) continue;
    let r: SearchResult | undefined;
    const { value: seconds, peak } = await withPeakRss(() => timeMedian(async () => (r = await v.scan(queries, { k: p.k, metric: p.metric, kernel })), p.repeats, p.warmup));
    results.push({ name: scanName(v.dtype === 'float16' ? 'fp16' : 'fp32', kernel, r!.scoredBy!), seconds, queries_per_s: nq / seconds, gbps: bytes / seconds / 1e9, of_read_rate: bytes / seconds / 1e9 / read.gbps,
      gflops: (2 * v.rows * nq * v.dim) / seconds / 1e9, [`recall_at_${p.k}`]: recallAtK(r!.ids, exact.ids, nq, p.k), peak_rss_gib: peak / 2 ** 30,
      ...(await floorOf(r!.scoredBy!, seconds, nq * v.rows * v.dim)) });
  }
  const faissBytes = 2 * v.rows * v.dim * 4;  // our fp32 copy and FAISS's
  if (p.contenders.includes('faiss') && faissBytes > totalmem() / 2)
    results.push({ name: `faiss-IndexFlatIP (skipped: needs ${(faissBytes / 2 ** 30).toFixed(1)} GiB in memory)`, seconds: NaN });
  else if (p.contenders.includes('faiss')) {
    const all = await v.toFloat32(), data = p.metric === 'cosine' ? normaliseRows(all, v.dim, { name: 'vocabulary' }) : all;
    const q = p.metric === 'cosine' ? normaliseRows(queries, v.dim, { name: 'queries' }) : queries;
    const index = await buildIndex('faiss-flat', data, v.dim, { metric: 'ip' });
    let r: { ids: BigInt64Array } | undefined;
    const seconds = await timeMedian(async () => (r = await index.search(q, p.k)), p.repeats, p.warmup);
    results.push({ name: 'faiss-IndexFlatIP (in memory, fp32)', seconds, queries_per_s: nq / seconds, [`recall_at_${p.k}`]: recallAtK(r!.ids, exact.ids, nq, p.k),
      ...(await floorOf('fp32', seconds, nq * v.rows * v.dim)) });
  }
  const base = results.find((r) => r.name.startsWith('faiss') && r.seconds > 0);
  if (base) for (const r of results) if (r.name.startsWith('conceptlens')) r.ratio_vs_faiss = r.seconds / base.seconds;
  const searched = new Set(['faiss', ...kernels.map(([c]) => c)]);
  const skipped = p.contenders.filter((c) => !searched.has(c)).map((c) => `${c}: not measured with --vocab (generated data only)`);
  return { suite: 'topk', params: { ...p, data: 'user', n: v.rows, rows: v.rows, d: v.dim, dtype: v.dtype, q: nq, vocab_bytes: bytes, floor: FLOOR, skipped },
    machine: await machine(), results };
}

/**
 * The vocabulary prepared once (its screening copy rounded, frame and bounds computed): the preparation's seconds
 * apart, the search's median alone, and whether its results equal the unprepared scan's bit for bit.
 */
async function benchPrepared(p: TopkBenchParams, vocab: Float32Array, queries: Float32Array, exact: SearchResult, unprepared?: SearchResult): Promise<BenchRow> {
  const t0 = performance.now();
  const prepared = await PreparedRows.prepare(vocab, p.d);
  const prepareSeconds = (performance.now() - t0) / 1000;
  let r: SearchResult | undefined;
  const s = await timeMedian(async () => (r = await exactSearch(queries, vocab, p.d, { k: p.k, prepared })), p.repeats, p.warmup);
  const same = unprepared && r!.ids.every((id, i) => id === unprepared.ids[i]) && r!.scores.every((x, i) => Object.is(x, unprepared.scores[i]));
  return row(`conceptlens-exact-fp32-prepared-${r!.scoredBy === 'fp32' ? 'none' : r!.scoredBy}screen`, s, p, recallAtK(r!.ids, exact.ids, p.q, p.k), r!.scoredBy!, {
    prepare_seconds: prepareSeconds, screening_copy_bytes: prepared.screeningBytes,
    ...(unprepared ? { same_as_unprepared: same } : {}),
  });
}

export async function benchTopk(p: TopkBenchParams): Promise<BenchReport> {
  if (p.queries && !p.vocab) throw new UsageError('--queries goes with --vocab (queries of its dimension); generated data makes its own');
  if (p.metric && !p.vocab) throw new UsageError('--metric goes with --vocab: generated data is searched by inner product');
  const report = p.vocab ? await benchVocab({ ...p, vocab: p.vocab, metric: p.metric ?? 'cosine' }) : await benchGenerated(p);
  if (p.plot) writeBenchPlot(p.plot, report, { throughput: 'queries_per_s' });
  return report;
}

async function benchGenerated(p: TopkBenchParams): Promise<BenchReport> {
  const { vocab, queries, d } = p.data === 'clip-mix' ? clipMix(p.n, p.q) : { vocab: randomMatrix(p.n, p.d, 1), queries: randomMatrix(p.q, p.d, 2), d: p.d };
  p = { ...p, d };
  const results: BenchRow[] = [];
  const want = (c: string) => p.contenders.includes(c);
  // The reference for recall: fp32 storage scanned by fp32 GEMM tiles.
  const exact = await exactSearch(queries, vocab, p.d, { k: p.k, kernel: 'sgemm' });
  const variants: [string, string, Float32Array | Uint16Array, ScanKernel][] = [
    ['conceptlens-sgemm', 'fp32', vocab, 'sgemm'],
    ['conceptlens', 'fp32', vocab, 'auto'],
  ];
  for (const f of engineInfo().screening.slice(1)) variants.push([`conceptlens-${f}`, 'fp32', vocab, f]);
  if (want('conceptlens-fp16') || p.dtype === 'fp16') variants.push(['conceptlens-fp16', 'fp16', floatsToHalves(vocab), 'auto']);
  let unprepared: SearchResult | undefined;
  for (const [contender, dtype, data, kernel] of variants) {
    if (!want(contender)) continue;
    let r: SearchResult | undefined;
    const s = await timeMedian(async () => (r = await exactSearch(queries, data, p.d, { k: p.k, kernel })), p.repeats, p.warmup);
    if (contender === 'conceptlens') unprepared = r;
    results.push(await row(scanName(dtype, kernel, r!.scoredBy!), s, p, recallAtK(r!.ids, exact.ids, p.q, p.k), r!.scoredBy!, { vocab_bytes: data.byteLength }));
  }
  if (want('conceptlens-prepared')) results.push(await benchPrepared(p, vocab, queries, exact, unprepared));
  for (const [contender, kind] of [['faiss', 'faiss-flat'], ['hnsw', 'hnsw']] as [string, IndexKind][]) {
    if (!want(contender)) continue;
    const t0 = performance.now();
    const index = await buildIndex(kind, vocab, p.d, { metric: 'ip' });
    const build = (performance.now() - t0) / 1000;
    let r: { ids: BigInt64Array } | undefined;
    const s = await timeMedian(async () => (r = await index.search(queries, p.k)), p.repeats, p.warmup);
    const name = kind === 'faiss-flat' ? 'faiss-IndexFlatIP' : 'hnswlib-node';
    results.push(await row(name, s, p, recallAtK(r!.ids, exact.ids, p.q, p.k), kind === 'faiss-flat' ? 'fp32' : 'none', { build_seconds: build }));
  }
  const base = results.find((r) => r.name.startsWith('faiss'));
  if (base) for (const r of results) r.ratio_vs_faiss = r.seconds / base.seconds;
  return { suite: 'topk', params: { ...p, metric: 'ip', floor: FLOOR }, machine: await machine(), results };
}

export function registerBenchTopk(bench: Command): void {
  const cmd = bench
    .command('topk')
    .description('exact top-k: conceptlens vs FAISS IndexFlatIP vs hnswlib-node; or a search of --vocab from disk beside its read rate')
    .addOption(generatorOption('--data <kind>', 'uniform (seeded random) | clip-mix (real CLIP text embeddings mixed; needs the assets mirror; d = 512)', ['vocab'],
      oneOf('--data', ['uniform', 'clip-mix']), 'uniform'))
    .addOption(generatorOption('--n <rows>', 'vocabulary rows', ['vocab'], integer('--n'), 1000000))
    .addOption(new Option('--q <queries>', 'queries (generated, or random unit rows for --vocab)').argParser(integer('--q')).default(1000).conflicts('queries'))
    .addOption(generatorOption('--d <dim>', 'dimension (uniform; clip-mix is 512)', ['vocab'], integer('--d'), 512))
    .option('--k <k>', 'neighbours', integer('--k'), 10)
    .addOption(generatorOption('--dtype <dtype>', 'conceptlens storage: fp32|fp16 (both are measured when fp16)', ['vocab'], oneOf('--dtype', ['fp32', 'fp16']), 'fp32'))
    .option('--vocab <path>', 'search this vocabulary (a .npy, a LAION shard directory or a store) from disk instead of generated data')
    .option('--queries <npy>', 'queries for --vocab (rows of its dimension; default --q seeded random unit rows)')
    .option('--metric <metric>', 'score for --vocab: ip | cosine (default cosine)', oneOf('--metric', ['ip', 'cosine']))
    .addOption(listOption('--contenders <list>', `comma list of ${CONTENDERS.join(',')} (with --vocab: conceptlens, its kernels and faiss)`,
      'conceptlens,conceptlens-prepared,conceptlens-fp16,conceptlens-sgemm,faiss', CONTENDERS));
  refuseWithClipMix(cmd, ['d']);
  addRunOptions(cmd, { repeats: 3, plot: 'draw queries/s bars per contender' }).action(reportAction(benchTopk));
}
