// bench distributed: sharded jobs on BullMQ + Redis, all on this machine.
// - per-job overhead: many tiny shards through one worker (the worker's idle
//   gap between jobs: marker write, BullMQ completion, next fetch), and the
//   queue latency of one job on an idle queue;
// - the shard time: a FALCON caption scan of one shard (64 images, top-5,
//   per-shard softmax(100·cos)) run locally, which sets the scaling;
// - throughput of the same sharded scan with 1, 2 and 3 worker processes,
//   against the local run; peak memory per worker and Redis commands per job.
// Every worker here shares this machine's cores, so beyond one worker per
// core the scan is CPU-bound: the worker rows measure queue overhead and
// contention, not cluster scaling (see the README's projection for that).
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { Redis } from 'ioredis';
import { Vocabulary } from '../ts/retrieval/vocabulary.js';
import { unitRows, writeSyntheticLaion } from '../ts/methods/falcon/synthetic.js';
import { distributedSearch } from '../ts/distributed/search.js';
import { readDone, type PartDone } from '../ts/distributed/store.js';
import { progressBar } from '../ts/cli/progress.js';
import { integer, listOption } from '../ts/cli/options.js';
import { freePort, RedisServer, WorkerProc } from './cluster.js';
import { machine, median, reportAction, type BenchRow } from './report.js';

export interface DistributedParams {
  shards: number;
  shardRows: number;
  dim: number;
  images: number;
  k: number;
  tinyShards: number;
  workers: string[];
}

/** The caption scan every row runs: FALCON's per-shard softmax(100·cos) top-k. */
const scan = (p: DistributedParams) => ({ k: p.k, metric: 'cosine' as const, softmaxTemperature: 100, texts: false });

async function shardsIn(dir: string, shards: number, rows: number, dim: number): Promise<string> {
  mkdirSync(dir, { recursive: true });
  if (!existsSync(join(dir, `text_emb_${shards - 1}.npy`))) {
    const bar = progressBar(`synthetic shards ${dir}`, 'rows');
    await writeSyntheticLaion(dir, { rows: shards * rows, dim, shardRows: rows, captions: 'txt', onProgress: bar.update });
    bar.stop();
  }
  return dir;
}

async function redisCommands(r: Redis): Promise<number> {
  return Number(/total_commands_processed:(\d+)/.exec(await r.info('stats'))?.[1]);
}

/** Handler seconds of each part, and the idle gaps of each worker between its jobs. */
function timings(marks: PartDone[]): { partSeconds: number[]; gaps: number[] } {
  const byWorker = new Map<string, PartDone[]>();
  for (const m of marks) byWorker.set(m.worker, [...(byWorker.get(m.worker) ?? []), m]);
  const gaps = [...byWorker.values()].flatMap((ms) => ms.sort((a, b) => a.startedAt - b.startedAt).slice(1).map((m, i) => (m.startedAt - ms[i].finishedAt) / 1000));
  return { partSeconds: marks.map((m) => (m.finishedAt - m.startedAt) / 1000), gaps };
}

const markers = (runDir: string) => readdirSync(join(runDir, 'parts')).filter((f) => f.endsWith('.done.json'))
  .map((f) => readDone(runDir, 'search', Number(/-(\d+)\.done\.json$/.exec(f)![1]))!);

/** One sharded run on n fresh worker processes: wall seconds, part timings, peak memory, Redis commands. */
async function sharded(redis: RedisServer, client: Redis, vocab: string, queries: Float32Array, n: number, p: DistributedParams, work: string) {
  const workers = Array.from({ length: n }, () => new WorkerProc(redis.url));
  try {
    await Promise.all(workers.map((w) => w.ready()));
    const cmd0 = await redisCommands(client);
    let runDir = '';
    const t0 = performance.now();
    await distributedSearch(vocab, queries, { ...scan(p), queue: redis.url, workDir: work, pollMs: 20, onStatus: (s) => (runDir = s.runDir) });
    const seconds = (performance.now() - t0) / 1000, marks = markers(runDir);
    const commands = (await redisCommands(client)) - cmd0;
    return { seconds, marks, ...timings(marks), peakRss: Math.max(...workers.map((w) => w.peakRss())), commandsPerJob: commands / marks.length };
  } finally {
    await Promise.all(workers.map((w) => w.drain()));
  }
}

export async function benchDistributed(p: DistributedParams, dir: string) {
  const main = await shardsIn(join(dir, `main-${p.shards}x${p.shardRows}x${p.dim}`), p.shards, p.shardRows, p.dim);
  const tiny = await shardsIn(join(dir, `tiny-${p.tinyShards}`), p.tinyShards, 1000, p.dim);
  const single = await shardsIn(join(dir, 'single'), 1, 1000, p.dim);
  const queries = unitRows(p.images, p.dim, 7), results: BenchRow[] = [];
  const redis = new RedisServer(await freePort());
  await redis.start();
  const client = new Redis(redis.url);
  try {
    // The shard time: one shard scanned locally, in this process, with all cores (after a warm-up pass over them all).
    const v = await Vocabulary.open(main);
    await v.search(queries, scan(p));
    let t0 = performance.now();
    await v.scan(queries, { ...scan(p), chunks: [0] });
    const shard = (performance.now() - t0) / 1000;
    results.push({ name: 'shard (local scan of one shard)', seconds: shard, captions_per_s: p.shardRows / shard });
    t0 = performance.now();
    await v.search(queries, scan(p));
    const local = (performance.now() - t0) / 1000;
    results.push({ name: 'all shards, local (no queue)', seconds: local, captions_per_s: (p.shards * p.shardRows) / local, shards_per_s: p.shards / local });

    // Per-job overhead: tiny shards through one worker; queue latency: one job on an idle queue.
    const work = mkdtempSync(join(dir, 'runs-'));
    const o = await sharded(redis, client, tiny, queries, 1, p, join(work, 'tiny'));
    const one = await sharded(redis, client, single, queries, 1, p, join(work, 'single'));
    results.push({
      name: 'per-job overhead (1 worker, tiny shards)', seconds: median(o.gaps), jobs: o.marks.length, wall_per_job_s: o.seconds / o.marks.length,
      median_job_s: median(o.partSeconds), queue_latency_s: (one.marks[0].startedAt - one.marks[0].queuedAt) / 1000,
      single_job_wall_s: one.seconds, redis_commands_per_job: o.commandsPerJob,
    });

    for (const n of p.workers.map(Number)) {
      const r = await sharded(redis, client, main, queries, n, p, join(work, `main-${n}`));
      results.push({
        name: `${n} worker${n > 1 ? 's' : ''}`, seconds: r.seconds, shards_per_s: p.shards / r.seconds, captions_per_s: (p.shards * p.shardRows) / r.seconds,
        speedup_vs_local: local / r.seconds, median_shard_s: median(r.partSeconds), peak_rss_mib_per_worker: r.peakRss / 2 ** 20,
        redis_commands_per_job: r.commandsPerJob,
      });
    }
    const peak = Number(/used_memory_peak:(\d+)/.exec(await client.info('memory'))?.[1]);
    results.push({ name: 'redis', seconds: 0, used_memory_peak_mib: peak / 2 ** 20 });
    rmSync(work, { recursive: true, force: true });
  } finally {
    client.disconnect();
    await redis.stop();
  }
  const m = await machine();
  return {
    suite: 'distributed', machine: m, results,
    params: { ...p, shard_bytes: p.shardRows * p.dim * 2, note: `every worker runs on this machine's ${m.cores} cores: beyond ${m.cores} compute threads the scan is CPU-bound` },
  };
}

export function registerBenchDistributed(bench: Command): void {
  bench
    .command('distributed')
    .description('sharded jobs on BullMQ + Redis on this machine: per-job overhead, shard time, throughput with 1, 2 and 3 workers (needs redis-server)')
    .option('--shards <n>', 'LAION-layout shards of the throughput runs', integer('--shards'), 8)
    .option('--shard-rows <n>', 'rows per shard (LAION\'s are 1,000,000)', integer('--shard-rows'), 250000)
    .option('--dim <d>', 'embedding dimension', integer('--dim'), 512)
    .option('--images <n>', 'image embeddings captioned per run', integer('--images'), 64)
    .option('--k <k>', 'captions per image', integer('--k'), 5)
    .option('--tiny-shards <n>', 'shards of 1,000 rows for the per-job overhead', integer('--tiny-shards'), 100)
    .addOption(listOption('--workers <list>', 'worker counts to run', '1,2,3'))
    .option('--dir <path>', 'where the shards go (generated when missing; kept); default a temporary directory, removed after')
    .option('--json', 'print one JSON object')
    .action(reportAction(async ({ dir: given, ...p }: DistributedParams & { dir?: string }) => {
      const dir = given ?? mkdtempSync(join(tmpdir(), 'conceptlens-bench-distributed-'));
      try {
        return await benchDistributed(p, dir);
      } finally {
        if (!given) rmSync(dir, { recursive: true, force: true });
      }
    }));
}
