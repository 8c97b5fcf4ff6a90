// bench serve: the HTTP service under closed-loop load (autocannon), one
// query per request, at several concurrencies, with dynamic batching on and
// with --max-batch 1, in one run. The server is the real CLI in a child
// process on loopback, over a seeded uniform(-0.5, 0.5) vocabulary written as
// a .npy (fp32 by default: the same data as `bench topk`). Every answer is
// checked against an fp32 exact scan (ids equal, scores to 1e-5); /health is
// probed at a steady 20 requests/s during the highest-concurrency runs.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { Option, type Command } from 'commander';
import { floatsToHalves, halvesToFloats } from '../ts/engine/fp16.js';
import { writeNpy } from '../ts/io/npy.js';
import { packageRoot } from '../ts/package-root.js';
import { rng } from '../ts/random.js';
import { exactSearch, type SearchResult } from '../ts/retrieval/exact.js';
import { integer, list, number, oneOf } from '../ts/cli/options.js';
import { machine, reportAction, type BenchReport, type BenchRow } from './report.js';
import { randomMatrix } from './topk.js';

/** What `bench serve` measures on. */
export interface ServeBenchParams {
  n: number;
  d: number;
  k: number;
  dtype: 'fp32' | 'fp16';
  /** Connections of the closed-loop load, one run each. */
  concurrency: number[];
  /** Seconds per run. */
  duration: number;
  /** --max-batch of the batched server (the other runs with 1). */
  maxBatch: number;
  /** --max-delay-ms of both servers. */
  maxDelayMs: number;
  /** Distinct queries the load draws from. */
  pool: number;
}

interface Server {
  url: string;
  proc: ChildProcess;
}

/** The CLI's `serve` in a child process; resolves once it prints its URL. */
function startServer(vocab: string, p: ServeBenchParams, maxBatch: number): Promise<Server> {
  const args = [join(packageRoot, 'bin', 'conceptlens.js'), 'serve', '--vocab', vocab, '--port', '0',
    '--max-batch', String(maxBatch), '--max-delay-ms', String(p.maxDelayMs)];
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '', err = '';
    proc.stderr!.on('data', (b) => (err += b));
    proc.stdout!.on('data', (b) => {
      out += b;
      const url = /listening on (\S+)/.exec(out)?.[1];
      if (url) resolve({ url, proc });
    });
    proc.on('exit', (code) => reject(new Error(`conceptlens serve exited with ${code} before listening: ${err.trim()}`)));
  });
}

async function stopServer(s: Server): Promise<void> {
  const exited = new Promise((resolve) => s.proc.once('exit', resolve));
  s.proc.kill('SIGTERM');
  await exited;
}

interface Scrape {
  /** Rows and batches of the vocabulary's queue since the start. */
  rows: number;
  batches: number;
  /** The server's event-loop delay since the previous scrape (prom-client resets it on each), p99 and max. */
  lagP99: number;
  lagMax: number;
}

async function scrape(url: string): Promise<Scrape> {
  const lines = (await (await fetch(`${url}/metrics`)).text()).split('\n');
  const value = (sample: string) => Number(lines.find((l) => l.startsWith(`${sample} `))?.split(' ').pop() ?? 0);
  return {
    rows: value('conceptlens_batch_size_sum{queue="search:default"}'), batches: value('conceptlens_batch_size_count{queue="search:default"}'),
    lagP99: value('conceptlens_nodejs_eventloop_lag_p99_seconds'), lagMax: value('conceptlens_nodejs_eventloop_lag_max_seconds'),
  };
}

/** True when an answer equals the reference of query i (ids equal, scores to 1e-5 relative). */
function exact(body: string, ref: SearchResult, i: number): boolean {
  const a = JSON.parse(body) as { ids: number[][]; scores: number[][] };
  for (let j = 0; j < ref.k; j++) {
    const want = ref.scores[i * ref.k + j];
    if (a.ids[0][j] !== Number(ref.ids[i * ref.k + j]) || Math.abs(a.scores[0][j] - want) > 1e-5 * Math.max(1, Math.abs(want))) return false;
  }
  return true;
}

interface Load {
  result: autocannon.Result;
  /** 200 answers checked against the reference, and those not equal to it. */
  checked: number;
  wrong: number;
  /** 503 answers: work the server shed on purpose (queue at its bound, or under pressure), asked to retry. */
  shed: number;
  /** Any other status. */
  failed: number;
}

/** Closed-loop single-query load: each connection sends one query from the pool, waits for its answer, checks it. */
async function load(url: string, connections: number, seconds: number, bodies: string[], ref: SearchResult): Promise<Load> {
  const pick = rng(connections);
  const tally = { checked: 0, wrong: 0, shed: 0, failed: 0 };
  const result = await autocannon({
    url: `${url}/v1/search`, method: 'POST', connections, duration: seconds, timeout: 120,
    headers: { 'content-type': 'application/json' },
    requests: [{
      setupRequest: (req, context) => {
        const i = Math.floor(pick() * bodies.length);
        (context as { i: number }).i = i;
        return { ...req, body: bodies[i] };
      },
      onResponse: (status, body, context) => {
        if (status === 503) tally.shed++;
        else if (status !== 200) tally.failed++;
        else {
          tally.checked++;
          if (!exact(body, ref, (context as { i: number }).i)) tally.wrong++;
        }
      },
    }],
  });
  return { result, ...tally };
}

function loadRow(mode: string, maxBatch: number, c: number, l: Load, before: Scrape, after: Scrape): BenchRow {
  const r = l.result, batches = after.batches - before.batches;
  return {
    name: `${mode} c=${c}`, seconds: r.latency.p50 / 1000, mode, max_batch: maxBatch, concurrency: c,
    requests_per_s: r['2xx'] / r.duration, p50_ms: r.latency.p50, p99_ms: r.latency.p99,
    mean_batch: batches ? (after.rows - before.rows) / batches : 0,
    answers: r['2xx'], checked: l.checked, not_exact: l.wrong, shed_503: l.shed, errors: r.errors + l.failed,
  };
}

/** /health as a client saw it, and the server's own event-loop delay over the same run. */
function healthRow(mode: string, c: number, h: autocannon.Result, after: Scrape): BenchRow {
  return {
    name: `/health under ${mode} c=${c}`, seconds: h.latency.p50 / 1000, p50_ms: h.latency.p50, p99_ms: h.latency.p99, answers: h['2xx'],
    server_loop_delay_p99_ms: after.lagP99 * 1000, server_loop_delay_max_ms: after.lagMax * 1000,
  };
}

/** /health at 20 requests/s from one connection while the load runs. */
function healthProbe(url: string, seconds: number): Promise<autocannon.Result> {
  return autocannon({ url: `${url}/health`, connections: 1, overallRate: 20, duration: seconds });
}

async function runMode(mode: string, maxBatch: number, vocab: string, p: ServeBenchParams, bodies: string[], ref: SearchResult): Promise<BenchRow[]> {
  const server = await startServer(vocab, p, maxBatch), rows: BenchRow[] = [], top = Math.max(...p.concurrency);
  try {
    await load(server.url, top, Math.min(3, p.duration), bodies, ref); // warm-up, not reported
    for (const c of p.concurrency) {
      const before = await scrape(server.url);
      const [l, health] = await Promise.all([load(server.url, c, p.duration, bodies, ref), c === top ? healthProbe(server.url, p.duration) : undefined]);
      const after = await scrape(server.url);
      rows.push(loadRow(mode, maxBatch, c, l, before, after));
      if (health) rows.push(healthRow(mode, c, health, after));
    }
  } finally {
    await stopServer(server);
  }
  return rows;
}

/** Batched throughput over unbatched, per concurrency, on the batched rows. */
function addSpeedups(rows: BenchRow[]): void {
  for (const b of rows.filter((r) => r.mode === 'batched')) {
    const u = rows.find((r) => r.mode === 'unbatched' && r.concurrency === b.concurrency);
    if (u) b.speedup_vs_unbatched = (b.requests_per_s as number) / (u.requests_per_s as number);
  }
}

/** Runs every concurrency against a batched server, then against an unbatched one, on the same data and queries. */
export async function benchServe(p: ServeBenchParams): Promise<BenchReport> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-serve-')), vocabPath = join(dir, 'vocab.npy');
  try {
    let vocab = randomMatrix(p.n, p.d, 1);
    if (p.dtype === 'fp16') {
      const halves = floatsToHalves(vocab);
      writeNpy(vocabPath, halves, [p.n, p.d], 'float16');
      vocab = halvesToFloats(halves); // the reference scans the values the server holds
    } else writeNpy(vocabPath, vocab, [p.n, p.d]);
    const queries = randomMatrix(p.pool, p.d, 2);
    const ref = await exactSearch(queries, vocab, p.d, { k: p.k, kernel: 'sgemm' });
    const bodies = Array.from({ length: p.pool }, (_, i) => JSON.stringify({ queries: [Array.from(queries.subarray(i * p.d, (i + 1) * p.d))], k: p.k }));
    const rows = [
      ...(await runMode('batched', p.maxBatch, vocabPath, p, bodies, ref)),
      ...(await runMode('unbatched', 1, vocabPath, p, bodies, ref)),
    ];
    addSpeedups(rows);
    return { suite: 'serve', params: { ...p }, machine: await machine(), results: rows };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Adds `bench serve`. */
export function registerBenchServe(bench: Command): void {
  bench
    .command('serve')
    .description('the HTTP service under single-query load: batching on vs --max-batch 1, every answer checked exact')
    .option('--n <rows>', 'vocabulary rows', integer('--n'), 200_000)
    .option('--d <dim>', 'dimension', integer('--d'), 512)
    .option('--k <k>', 'results per query', integer('--k'), 10)
    .option('--dtype <dtype>', 'vocabulary storage: fp32 | fp16', oneOf('--dtype', ['fp32', 'fp16']), 'fp32')
    .addOption(new Option('--concurrency <list>', 'connections, one run each (comma list)').argParser((v) => list(v).map(integer('--concurrency'))).default([1, 16, 64], '1,16,64'))
    .option('--duration <s>', 'seconds per run', number('--duration', { min: 1 }), 20)
    .option('--max-batch <n>', 'rows per native call of the batched server', integer('--max-batch'), 64)
    .option('--max-delay-ms <ms>', "how long a batch's oldest request waits for more", number('--max-delay-ms', { min: 0 }), 2)
    .option('--pool <n>', 'distinct queries drawn from', integer('--pool'), 256)
    .option('--json', 'print one JSON object')
    .action(reportAction(benchServe));
}
