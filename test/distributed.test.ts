// Sharded jobs on BullMQ and Redis, end to end with real parts: a Debian
// redis-server on a free loopback port, three `conceptlens worker` child
// processes, and the coordinator in this process (or as a CLI child that is
// killed and rerun). Every sharded result is compared bit for bit with the
// local run. Jobs are made slow where a kill must land mid-job with the
// worker's --delay option; lock and stalled intervals are short so that
// BullMQ's recovery takes a couple of seconds.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue } from 'bullmq';
import sharp from 'sharp';
import { floatsToHalves } from '../ts/engine/fp16.js';
import { readNpy, readNpyHeader, writeNpy, type TypedArray } from '../ts/io/npy.js';
import { Vocabulary } from '../ts/retrieval/vocabulary.js';
import { openCaptions, topCaptions } from '../ts/methods/falcon/captions.js';
import { embedImages } from '../ts/encoders/embed-images.js';
import { preprocessSpec } from '../ts/images/preprocess.js';
import { distributedSearch, distributedTopCaptions } from '../ts/distributed/search.js';
import { distributedEmbed } from '../ts/distributed/embed.js';
import { distributedSplice } from '../ts/distributed/splice.js';
import { distributedVocabBuild } from '../ts/distributed/dedupe.js';
import type { QueueOptions, RunStatus } from '../ts/distributed/coordinator.js';
import { localStamp } from '../ts/distributed/stamp.js';
import { QUEUE_NAME } from '../ts/distributed/connection.js';
import { meanPoolImageModel } from './onnx-graphs.js';
import { cliOk, rng, tempDir } from './helpers.js';
import { BIN, freePort, RedisServer, until, WorkerProc } from '../bench/cluster.js';

const SHARDS = 48, SHARD_ROWS = 400, DIM = 32;

// ---- data: 48 LAION-layout shards with cross-shard ties and repeated captions ----

/** Caption of global row r: pairs of rows share one (repeats within a shard), and every 3,000th pair again (across shards). */
const caption = (r: number) => `a photo of thing ${Math.floor(r / 2) % 3000} é`;

function writeShards(dir: string): Float32Array {
  const u = rng(11), all = Float32Array.from({ length: SHARDS * SHARD_ROWS * DIM }, () => u() - 0.5);
  // Rows 100..109 of shard 0 reappear in shards 20 and 41: equal scores in three shards, so ties cross shards.
  for (const [shard, at] of [[20, 5], [41, 0]])
    all.copyWithin((shard * SHARD_ROWS + at) * DIM, 100 * DIM, 110 * DIM);
  for (let s = 0; s < SHARDS; s++) {
    const rows = all.subarray(s * SHARD_ROWS * DIM, (s + 1) * SHARD_ROWS * DIM);
    writeNpy(join(dir, `text_emb_${s}.npy`), floatsToHalves(rows), [SHARD_ROWS, DIM], 'float16');
    writeFileSync(join(dir, `captions_${s}.txt`), Array.from({ length: SHARD_ROWS }, (_, j) => caption(s * SHARD_ROWS + j)).join('\n') + '\n');
  }
  return all;
}

/** 16 queries: six near the repeated rows (so the ties are in every top-k), ten random. */
function makeQueries(all: Float32Array, seed: number): Float32Array {
  const u = rng(seed), q = new Float32Array(16 * DIM);
  for (let i = 0; i < 16; i++)
    for (let c = 0; c < DIM; c++) q[i * DIM + c] = i < 6 ? all[(100 + i) * DIM + c] + 0.01 * (u() - 0.5) : u() - 0.5;
  return q;
}

const bits = (a: TypedArray) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
function sameBits(a: TypedArray, b: TypedArray, what: string): void {
  assert.equal(a.constructor, b.constructor, `${what}: array types`);
  assert.ok(bits(a).equals(bits(b)), `${what}: differ from the local run`);
}

const doneMarkers = (runDir: string) => readdirSync(join(runDir, 'parts')).filter((f) => f.endsWith('.done.json'));
const onlyRunDir = (work: string) => join(work, readdirSync(work).find((d) => !d.startsWith('.'))!);

// ---- the fixture: Redis, three workers, the shards --------------------------

const dir = tempDir('conceptlens-dist-');
const laion = join(dir, 'laion');
let redis: RedisServer, workers: WorkerProc[] = [], all: Float32Array;
const extraWorkers: WorkerProc[] = [];

before(async () => {
  mkdirSync(laion);
  all = writeShards(laion);
  redis = new RedisServer(await freePort());
  await redis.start();
  // Worker 0 holds its jobs long enough to be killed mid-job; the others are slowed a little so a run outlasts the kill.
  workers = [new WorkerProc(redis.url, ['--delay', '4000']), new WorkerProc(redis.url, ['--delay', '40']), new WorkerProc(redis.url, ['--delay', '40'])];
  await Promise.all(workers.map((w) => w.ready()));
});

after(async () => {
  for (const w of [...workers, ...extraWorkers]) w.kill();
  await redis?.stop();
});

const queueOpts = (work: string, more: Partial<QueueOptions> = {}): QueueOptions => ({ queue: redis.url, workDir: join(dir, work), pollMs: 100, ...more });

test('a sharded search over 48 shards with 3 workers, one SIGKILLed mid-job, equals the local search bit for bit', async () => {
  const v = await Vocabulary.open(laion), queries = makeQueries(all, 1);
  const local = await v.search(queries, { k: 7, texts: false });
  const statuses: RunStatus[] = [];
  const run = distributedSearch(laion, queries, { k: 7, texts: false, ...queueOpts('w-search'), onStatus: (s) => statuses.push(s) });
  const victim = workers[0];
  const started = await until('the slow worker to start a job', () => victim.events.find((e) => e.event === 'start'));
  victim.kill();
  assert.equal(await victim.exited, null, 'killed by a signal');
  const r = await run;
  sameBits(r.ids, local.ids, 'ids');
  sameBits(r.scores, local.scores, 'scores');
  assert.equal(r.k, 7);
  // The ties across shards are in the answer, resolved to the lower id as locally.
  assert.deepEqual(Array.from(r.ids.subarray(0, 3), Number), [100, 20 * SHARD_ROWS + 5, 41 * SHARD_ROWS + 0]);
  // BullMQ's stalled-job check gave the killed worker's shard to another worker.
  const runDir = onlyRunDir(join(dir, 'w-search'));
  const marker = JSON.parse(readFileSync(join(runDir, 'parts', `search-${String(started.part).padStart(6, '0')}.done.json`), 'utf8'));
  assert.notEqual(marker.worker, started.worker);
  assert.equal(doneMarkers(runDir).length, SHARDS);
  const last = statuses.at(-1)!;
  assert.deepEqual([last.done, last.total, last.resumed], [SHARDS, SHARDS, 0]);
  assert.ok(last.workers >= 2);
  workers[0] = new WorkerProc(redis.url, ['--delay', '40']);  // back to three for the next tests
  await workers[0].ready();
});

test('sharded searches equal the local ones for every scoring path (cosine, centring shift, rewrite, de-duplicated, a store)', async () => {
  const queries = makeQueries(all, 2), store = join(dir, 'store');
  await cliOk(['vocab', 'build', '--from', laion, '--out', store, '--normalize', '--dedupe']);
  const cases = [
    { path: laion, open: {}, search: { k: 5, metric: 'cosine' as const } },
    { path: laion, open: { center: true }, search: { k: 4 } },                              // ip on centred rows: a score shift
    { path: laion, open: { normalize: true, center: true }, search: { k: 6, metric: 'cosine' as const } },  // rows rewritten
    { path: laion, open: { dedupe: true }, search: { k: 9 } },
    { path: store, open: {}, search: { k: 3, metric: 'cosine' as const } },
    { path: laion, open: {}, search: { k: 5, softmaxTemperature: 100 } },                  // FALCON's per-shard softmax
  ];
  for (const [i, c] of cases.entries()) {
    const v = await Vocabulary.open(c.path, c.open);
    const local = await v.search(queries, { ...c.search, texts: true });
    const r = await distributedSearch(v, queries, { ...c.search, texts: true, ...queueOpts(`w-paths-${i}`) });
    sameBits(r.ids, local.ids, `case ${i} ids`);
    sameBits(r.scores, local.scores, `case ${i} scores`);
    assert.deepEqual(r.texts, local.texts);
  }
});

test('sharded FALCON caption retrieval (per-shard softmax top-k) equals topCaptions', async () => {
  const vocab = await openCaptions(laion), images = makeQueries(all, 3);
  for (const opts of [{ k: 5 }, { k: 3, unitRows: true }, { k: 4, softmaxTemperature: 0 }]) {
    const local = await topCaptions(images, 16, vocab, opts);
    const r = await distributedTopCaptions(images, 16, vocab, { ...opts, ...queueOpts('w-captions') });
    assert.deepEqual(r, local);
  }
});

test('the search command with --queue: the coordinator killed mid-run and rerun finishes without recomputing finished shards', async () => {
  const queries = join(dir, 'q-cli.npy'), out = join(dir, 'cli'), work = join(dir, 'w-cli');
  writeNpy(queries, makeQueries(all, 4), [16, DIM]);
  await cliOk(['search', '--vocab', laion, '--queries', queries, '--k', '6', '--out', `${out}-local`]);
  const args = [BIN, 'search', '--vocab', laion, '--queries', queries, '--k', '6', '--out', out, '--queue', redis.url, '--work-dir', work, '--json'];
  const first = spawn(process.execPath, args, { stdio: 'ignore' });
  const runDir = await until('the run directory', () => { try { return onlyRunDir(work); } catch { return undefined; } });
  await until('some shards done', () => doneMarkers(runDir).length >= 6);
  // Paused, the workers finish only the jobs they hold: the run stays unfinished however slowly the kill lands.
  const queue = new Queue(QUEUE_NAME, { connection: { host: '127.0.0.1', port: redis.port } });
  await queue.pause();
  first.kill('SIGKILL');
  await new Promise((ok) => first.once('exit', ok));
  const before = new Map(doneMarkers(runDir).map((f) => [f, statSync(join(runDir, 'parts', f)).mtimeMs]));
  await queue.resume();
  await queue.close();
  assert.ok(before.size < SHARDS, 'killed mid-run');
  const summary = JSON.parse(await cliOk(args.slice(1)));
  assert.equal(summary.queries, 16);
  for (const [f, mtime] of before) assert.equal(statSync(join(runDir, 'parts', f)).mtimeMs, mtime, `${f} was rewritten`);
  for (const s of ['ids', 'scores']) assert.ok(readFileSync(`${out}.${s}.npy`).equals(readFileSync(`${out}-local.${s}.npy`)), `${s} differ`);
  // Each shard was computed once: no worker reports two 'done' for one job of this run.
  const runJobs = workers.flatMap((w) => w.events).filter((e) => e.event === 'done' && e.runDir === runDir);
  assert.equal(new Set(runJobs.map((e) => e.job)).size, runJobs.length);
  assert.equal(runJobs.length, SHARDS);
});

test('Redis restarted empty mid-run: lost jobs are queued again and the result is the local one', async () => {
  const v = await Vocabulary.open(laion), queries = makeQueries(all, 5);
  const local = await v.search(queries, { k: 5, texts: false });
  const statuses: RunStatus[] = [];
  const run = distributedSearch(v, queries, { k: 5, texts: false, ...queueOpts('w-restart'), onStatus: (s) => statuses.push(s) });
  await until('a few shards done', () => (statuses.at(-1)?.done ?? 0) >= 4);
  await redis.stop();
  await sleep(300);
  await redis.start();
  const r = await run;
  sameBits(r.ids, local.ids, 'ids');
  sameBits(r.scores, local.scores, 'scores');
  assert.ok(statuses.at(-1)!.requeued > 0, 'jobs lost with Redis were queued again');
});

test('Redis unreachable: a clear ERR_QUEUE at start, and mid-run after redisTimeoutMs, never a partial result', async () => {
  const v = await Vocabulary.open(laion), queries = makeQueries(all, 6), closed = await freePort();
  await assert.rejects(distributedSearch(v, queries, { k: 3, queue: `redis://127.0.0.1:${closed}`, workDir: join(dir, 'w-none') }),
    { code: 'ERR_QUEUE', message: new RegExp(`cannot reach Redis at redis://127.0.0.1:${closed} \\(.*ECONNREFUSED`) });
  const w = spawn(process.execPath, [BIN, 'worker', '--queue', `redis://127.0.0.1:${closed}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  w.stderr!.on('data', (b) => (err += b));
  assert.equal(await new Promise((ok) => w.once('exit', ok)), 1);
  assert.match(err, /error: cannot reach Redis at/);

  const statuses: RunStatus[] = [];
  const run = distributedSearch(v, queries, { k: 3, ...queueOpts('w-gone', { redisTimeoutMs: 1500 }), onStatus: (s) => statuses.push(s) });
  await until('the jobs queued', () => statuses.length >= 1);
  await redis.stop();
  try {
    await assert.rejects(run, { code: 'ERR_QUEUE', message: /lost Redis at redis:\/\/127\.0\.0\.1:\d+ for \d+ s .*parts are done and kept in .*rerun the same command/ });
  } finally {
    await redis.start();
  }
});

test('a shard that fails on every try fails the run with its error and shard named; a worker of another build refuses jobs, saying why', async () => {
  // Row 10 of shard 7 holds NaN: opening reads headers only, so only that shard's scan finds it.
  const copy = join(dir, 'laion-bad');
  mkdirSync(copy);
  for (const f of readdirSync(laion)) writeFileSync(join(copy, f), readFileSync(join(laion, f)));
  const bad = join(copy, 'text_emb_7.npy'), h = readNpyHeader(bad), bytes = readFileSync(bad);
  bytes.fill(0xff, h.dataOffset + 10 * DIM * 2, h.dataOffset + 11 * DIM * 2);  // fp16 0xffff: NaN
  writeFileSync(bad, bytes);
  const queries = makeQueries(all, 7);
  const local = await (await Vocabulary.open(copy)).search(queries, { k: 3 }).then(() => assert.fail('NaN row accepted'), (e) => e);
  assert.match(local.message, /text_emb_7\.npy: row 10, column 0 is NaN; expected finite values$/);
  await assert.rejects(distributedSearch(copy, queries, { k: 3, ...queueOpts('w-bad') }),
    { code: local.code, message: `shard 7 (text_emb_7.npy) failed after 1 try: ${local.message}` });

  // A job from a coordinator of another version: the worker refuses it and says which builds differ.
  const queue = new Queue(QUEUE_NAME, { connection: { host: '127.0.0.1', port: redis.port } });
  try {
    const stamp = { version: '0.0.0-other', engine: 'feedfacefeedface' };
    const job = await queue.add('search', { stamp, kind: 'search', runDir: join(dir, 'nowhere'), part: 0, payload: {} }, { jobId: 'skew-test', attempts: 3 });
    await until('the job to fail', async () => (await queue.getJobState(job.id!)) === 'failed');
    const failed = (await queue.getJob(job.id!))!;
    assert.equal(failed.attemptsMade, 1, 'refused once, not retried');
    const own = localStamp();
    assert.match(failed.failedReason, new RegExp(`^\\[ERR_QUEUE\\] worker .* refuses the job: it runs conceptlens ${own.version}, engine build ${own.engine}, `
      + 'the run was started by conceptlens 0\\.0\\.0-other, engine build feedfacefeedface'));
  } finally {
    await queue.close();
  }
});

test('sharded embed, splice decompose and vocab build --dedupe equal their local runs', async () => {
  // embed: 37 images (one broken, one not an image) in parts of 2 batches of 4, with folder labels.
  const images = join(dir, 'images'), model = join(dir, 'mean.onnx');
  writeFileSync(model, meanPoolImageModel(8, 8));
  for (let i = 0; i < 37; i++) {
    mkdirSync(join(images, `class${i % 3}`), { recursive: true });
    const px = Buffer.alloc(12 * 10 * 3, (i * 37) % 251);
    for (let j = 0; j < px.length; j += 7) px[j] = (i * 13 + j) % 256;
    writeFileSync(join(images, `class${i % 3}`, `img${String(i).padStart(2, '0')}.png`), await sharp(px, { raw: { width: 12, height: 10, channels: 3 } }).png().toBuffer());
  }
  writeFileSync(join(images, 'class1', 'broken.png'), 'not a png');
  writeFileSync(join(images, 'class2', 'notes.txt'), 'not an image');
  const spec = { ...preprocessSpec('imagenet'), resize: 8, crop: 8 };
  const base = { model, images, spec, batchSize: 4, labelSource: 'folder' as const };
  const local = await embedImages({ ...base, out: join(dir, 'emb-local.npy'), labelsOut: join(dir, 'lab-local.npy') });
  const r = await distributedEmbed({ ...base, out: join(dir, 'emb.npy'), labelsOut: join(dir, 'lab.npy'), partImages: 8, ...queueOpts('w-embed') });
  assert.deepEqual(r, local);
  for (const f of ['emb', 'lab']) assert.ok(readFileSync(join(dir, `${f}.npy`)).equals(readFileSync(join(dir, `${f}-local.npy`))), `${f} differ`);

  // splice decompose: 300 embeddings in parts of 64, against the command's own output.
  const u = rng(9), concepts = join(dir, 'concepts.npy'), z = join(dir, 'z.npy'), mean = join(dir, 'mean.npy');
  writeNpy(concepts, Float32Array.from({ length: 120 * DIM }, () => u() - 0.5), [120, DIM]);
  writeNpy(z, Float32Array.from({ length: 300 * DIM }, () => u() - 0.5), [300, DIM]);
  writeNpy(mean, Float32Array.from({ length: DIM }, () => 0.1 * (u() - 0.5)), [DIM]);
  const cli = JSON.parse(await cliOk(['splice', 'decompose', '--embeddings', z, '--concepts', concepts, '--image-mean', mean, '--l1', '0.05', '--out', join(dir, 'w-local.npy'), '--json']));
  const s = await distributedSplice({ embeddings: z, concepts, imageMean: mean, l1: 0.05, out: join(dir, 'w.npy'), partRows: 64, ...queueOpts('w-splice') });
  assert.ok(readFileSync(join(dir, 'w.npy')).equals(readFileSync(join(dir, 'w-local.npy'))), 'weights differ');
  assert.equal(s.n, 300);
  assert.ok(Math.abs(s.meanL0 - cli.mean_l0) < 1e-9 && Math.abs(s.meanCosine - cli.mean_cosine) < 1e-9);

  // vocab build --dedupe: the same store, file for file.
  await cliOk(['vocab', 'build', '--from', laion, '--out', join(dir, 'dedupe-local'), '--dedupe', '--normalize']);
  const v = await distributedVocabBuild(laion, join(dir, 'dedupe'), { normalize: true, buckets: 5, ...queueOpts('w-dedupe') });
  const files = (p: string) => JSON.parse(readFileSync(join(dir, p, 'manifest.json'), 'utf8')).files;
  assert.deepEqual(files('dedupe'), files('dedupe-local'));
  assert.ok(v.rows < v.sourceRows && v.rows === 3000);
});

test('SIGTERM drains a worker: its running job finishes and is recorded, then it exits 0', async () => {
  const w = new WorkerProc(redis.url, ['--delay', '1500']);
  extraWorkers.push(w);
  await w.ready();
  const run = distributedSearch(laion, makeQueries(all, 8), { k: 2, texts: false, ...queueOpts('w-drain') });
  const started = await until('the draining worker to start a job', () => w.events.find((e) => e.event === 'start'));
  w.proc.kill('SIGTERM');
  assert.equal(await w.exited, 0);
  assert.ok(w.events.some((e) => e.event === 'done' && e.job === started.job), 'the running job finished before exit');
  await run;
  assert.equal(readNpy(join(onlyRunDir(join(dir, 'w-drain')), 'queries.npy')).shape[0], 16);
});
