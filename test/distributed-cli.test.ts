// The shard-parallel commands with --queue as a user runs them: each one a
// child process (bin/conceptlens.js) against a Debian redis-server and two
// `conceptlens worker`s (bench/cluster.ts), its outputs compared byte for
// byte with the same command run without --queue. The data are small and
// generated: images drawn with sharp, a colour-detector ONNX model (the
// FALCON target and its image encoder at once), four LAION-layout shards.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, sep } from 'node:path';
import sharp from 'sharp';
import { floatsToHalves } from '../ts/engine/fp16.js';
import { writeNpy } from '../ts/io/npy.js';
import { colourMapModel, meanPoolImageModel } from './onnx-graphs.js';
import { rng, runCli, tempDir } from './helpers.js';
import { BIN, freePort, RedisServer, until, WorkerProc } from '../bench/cluster.js';

const DIM = 16;  // the colour model's channels: the caption vocabulary's width

// ---- data ----------------------------------------------------------------

/** Colour detectors (red, green, blue, brightness) and twelve weak random channels: groups of one colour each. */
function colourModel(): Uint8Array {
  const u = rng(3), w = new Float32Array(DIM * 3), b = new Float32Array(DIM);
  [[1, -1, -1], [-1, 1, -1], [-1, -1, 1], [1 / 3, 1 / 3, 1 / 3]].forEach((r, i) => w.set(r, i * 3));
  for (let i = 12; i < w.length; i++) w[i] = 0.2 * (u() - 0.5);
  for (let i = 4; i < DIM; i++) b[i] = 0.1 * u();
  return colourMapModel(w, b);
}

/** 18 PNGs in class folders: five each of red, green and blue beside a white strip, three near-white (the counterfactuals). */
async function drawImages(): Promise<Map<string, Buffer>> {
  const colours: [string, number[]][] = [['red', [230, 20, 20]], ['green', [20, 210, 30]], ['blue', [25, 30, 220]], ['white', [250, 250, 250]]];
  const out = new Map<string, Buffer>();
  for (let i = 0; i < 18; i++) {
    const [name, rgb] = colours[Math.min(3, Math.floor(i / 5))], px = Buffer.alloc(32 * 32 * 3), split = 13 + (i % 5) * 2;
    for (let p = 0; p < 32 * 32; p++) for (let ch = 0; ch < 3; ch++) px[p * 3 + ch] = p % 32 < split ? rgb[ch] : 245 - (i % 4) * 5;
    out.set(join(name, `img${String(i).padStart(2, '0')}.png`), await sharp(px, { raw: { width: 32, height: 32, channels: 3 } }).png().toBuffer());
  }
  return out;
}

/** Four shards of 30 captions (each caption in several rows, within and across shards). */
function writeLaion(at: string): void {
  const u = rng(5), adj = ['red', 'green', 'blue', 'white', 'bright', 'dark'], noun = ['apple', 'leaf', 'sky', 'stone', 'car', 'wall'];
  mkdirSync(at);
  for (let s = 0; s < 4; s++) {
    writeNpy(join(at, `text_emb_${s}.npy`), floatsToHalves(Float32Array.from({ length: 30 * DIM }, () => u() - 0.3)), [30, DIM], 'float16');
    const caption = (r: number) => `a ${adj[r % 6]} ${noun[Math.floor(r / 6) % 6]} on a table`;
    writeFileSync(join(at, `captions_${s}.txt`), Array.from({ length: 30 }, (_, j) => caption((s * 30 + j) % 50)).join('\n') + '\n');
  }
}

/** 30 images × 64 features: images 0..11 fire feature 2; every image carries feature 7, so the others are counterfactuals. */
function writeRepresentations(path: string): void {
  const u = rng(7), r = Float32Array.from({ length: 30 * 64 }, () => 0.1 * u());
  for (let x = 0; x < 30; x++) r[x * 64 + 7] = 3, r[x * 64 + 2] = x < 12 ? 5 : 0;
  writeNpy(path, r, [30, 64]);
}

async function writeData(): Promise<void> {
  for (const how of ['local', 'queued']) mkdirSync(join(dir, how));
  const images = await drawImages();
  for (const [rel, png] of images)
    for (const root of ['images', 'embed-images']) {
      mkdirSync(join(dir, root, rel, '..'), { recursive: true });
      writeFileSync(join(dir, root, rel), png);
    }
  writeFileSync(join(dir, 'embed-images', 'white', 'broken.png'), 'not a png');
  writeFileSync(join(dir, 'colours.onnx'), colourModel());
  writeFileSync(join(dir, 'mean.onnx'), meanPoolImageModel(8, 8));
  writeLaion(laion);
  const u = rng(9), rows = (n: number, scale = 1) => Float32Array.from({ length: n * DIM }, () => scale * (u() - 0.5));
  writeNpy(join(dir, 'C.npy'), rows(40), [40, DIM]);
  writeNpy(join(dir, 'Z.npy'), rows(50), [50, DIM]);
  writeNpy(join(dir, 'mean.npy'), rows(1, 0.2), [DIM]);
  writeNpy(join(dir, 'E.npy'), rows(30), [30, DIM]);
  writeRepresentations(join(dir, 'R.npy'));
}

// ---- the cluster and the CLI ---------------------------------------------

const dir = tempDir('conceptlens-dist-cli-'), laion = join(dir, 'laion');
let redis: RedisServer | undefined;
const workers: WorkerProc[] = [];

before(async () => {
  await writeData();
  redis = new RedisServer(await freePort());
  await redis.start();
  workers.push(new WorkerProc(redis.url), new WorkerProc(redis.url));
  await Promise.all(workers.map((w) => w.ready()));
});

after(async () => {
  for (const w of workers) w.kill();
  await Promise.all(workers.map((w) => w.exited));
  await redis?.stop();
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `conceptlens ...args` as a child process. */
function cli(args: string[]): Promise<Run> {
  const p = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '', stderr = '';
  p.stdout.on('data', (b) => (stdout += b));
  p.stderr.on('data', (b) => (stderr += b));
  return new Promise((ok) => p.once('close', (code) => ok({ code, stdout, stderr })));
}

/**
 * The command locally (outputs under `local`) and with --queue and `queuedOnly` (job sizes, refused without it; under
 * `queued`), at once; both must succeed.
 */
async function bothWays(args: (out: string) => string[], queuedOnly: string[] = []): Promise<{ local: Run; queued: Run; at: (name: string) => [string, string] }> {
  const [local, queued] = await Promise.all([cli(args(join(dir, 'local'))), cli([...args(join(dir, 'queued')), ...queuedOnly, '--queue', redis!.url])]);
  for (const [how, r] of [['local', local], ['--queue', queued]] as const) assert.equal(r.code, 0, `${how} run failed: ${r.stderr}`);
  return { local, queued, at: (name) => [join(dir, 'local', name), join(dir, 'queued', name)] };
}

function sameFiles(at: (name: string) => [string, string], names: string[]): void {
  for (const name of names) {
    const [a, b] = at(name);
    assert.ok(readFileSync(b).equals(readFileSync(a)), `${name} differs from the local run's`);
  }
}

/** Waits for the workers to report `n` parts done in runs under `workDir`, and no more: the work went through the queue. */
async function workersDid(workDir: string, n: number): Promise<void> {
  const parts = () => new Set(workers.flatMap((w) => w.events)
    .filter((e) => e.event === 'done' && e.runDir?.startsWith(workDir + sep)).map((e) => `${e.runDir} ${e.kind} ${e.part}`));
  await until(`${n} parts done under ${workDir}`, () => parts().size >= n);
  assert.equal(parts().size, n);
}

// ---- the commands --------------------------------------------------------

test('embed --queue: the embeddings, labels and summary are the local run\'s', async () => {
  const { local, queued, at } = await bothWays((out) => ['embed', '--model', join(dir, 'mean.onnx'), '--images', join(dir, 'embed-images'),
    '--resize', '8', '--crop', '8', '--batch', '2', '--out', join(out, 'emb.npy'), '--labels-out', join(out, 'labels.npy'), '--json'], ['--part-images', '8']);
  sameFiles(at, ['emb.npy', 'labels.npy']);
  const summary = (r: Run) => ({ ...JSON.parse(r.stdout), out: undefined, labelsOut: undefined });
  assert.deepEqual(summary(queued), summary(local));
  assert.equal(summary(local).skipped.length, 1, 'the broken file is reported');
  await workersDid(join(dir, 'queued', 'emb.npy.runs'), 3);  // 19 image files in parts of 8
});

test('splice decompose --queue: the weights and the summary\'s figures are the local run\'s', async () => {
  const { local, queued, at } = await bothWays((out) => ['splice', 'decompose', '--embeddings', join(dir, 'Z.npy'), '--concepts', join(dir, 'C.npy'),
    '--image-mean', join(dir, 'mean.npy'), '--l1', '0.05', '--out', join(out, 'W.npy'), '--json'], ['--part-rows', '16']);
  sameFiles(at, ['W.npy']);
  const figures = (r: Run) => ({ ...JSON.parse(r.stdout), seconds: undefined, samples_per_s: undefined });
  assert.deepEqual(figures(queued), figures(local));
  assert.equal(figures(local).n, 50);
  await workersDid(join(dir, 'queued', 'W.npy.runs'), 4);
});

test('vocab build --dedupe --queue: the same store, file for file', async () => {
  const { local, at } = await bothWays((out) => ['vocab', 'build', '--from', laion, '--out', join(out, 'store'), '--dedupe', '--normalize', '--json']);
  const files = readdirSync(join(dir, 'local', 'store')).sort();
  assert.deepEqual(readdirSync(join(dir, 'queued', 'store')).sort(), files);
  sameFiles(at, files.map((f) => join('store', f)));
  assert.equal(JSON.parse(local.stdout).rows, 36);
  await workersDid(join(dir, 'queued', 'store.runs'), 4 + 1);  // a scan per shard, then one caption bucket
});

test('falcon run --queue: groups, concepts, every group\'s explanation and the report are the local run\'s', async () => {
  const model = join(dir, 'colours.onnx');
  const { at } = await bothWays((out) => ['falcon', 'run', '--model', model, '--layer', 'map', '--encoder', model, '--images', join(dir, 'images'),
    '--captions', laion, '--sigmas', '2', '--more-than', '2', '--all-groups', '--out', join(out, 'falcon')]);
  const groups = JSON.parse(readFileSync(at('falcon/groups.json')[0], 'utf8'));
  assert.deepEqual(Object.keys(groups).sort(), ['0', '1', '2', '3'], 'one group per colour and the white images');
  const explanations = readdirSync(join(dir, 'local', 'falcon', 'groups')).map((f) => join('falcon', 'groups', f));
  sameFiles(at, ['falcon/groups.json', 'falcon/concepts.csv', 'falcon/report.html', ...explanations]);
  assert.ok(JSON.parse(readFileSync(at('falcon/groups/g0.json')[0], 'utf8')).low.length > 0, 'counterfactuals were captioned too');
  // Four groups' caption searches, one job per shard each, under the run directory's default work dir.
  await workersDid(join(dir, 'queued', 'falcon', 'queue'), 4 * 4);
});

test('falcon explain --queue: the explanation, concepts.csv and the printed summary are the local run\'s', async () => {
  const { local, queued, at } = await bothWays((out) => ['falcon', 'explain', '--group', '2', '--representations', join(dir, 'R.npy'),
    '--image-embeddings', join(dir, 'E.npy'), '--captions', laion, '--out', join(out, 'explain')]);
  assert.equal(queued.stdout, local.stdout);
  sameFiles(at, ['explain/groups/g2.json', 'explain/concepts.csv']);
  await workersDid(join(dir, 'queued', 'explain', 'queue'), 4);
});

// ---- failures ------------------------------------------------------------

test('an unreachable --queue fails at once, exit 1, with the ERR_QUEUE message and no output written', async () => {
  const url = `redis://127.0.0.1:${await freePort()}`, out = join(dir, 'unreachable'), model = join(dir, 'colours.onnx');
  const expected = new RegExp(`^error: cannot reach Redis at ${url} \\(.*ECONNREFUSED.*\\): start it or correct the queue URL\\n$`);
  // As a child process: the command exits (no Redis client keeps it alive), before its first stage loads the models.
  const run = await cli(['falcon', 'run', '--model', model, '--layer', 'map', '--encoder', model, '--images', join(dir, 'images'), '--captions', laion,
    '--out', join(out, 'falcon'), '--queue', url]);
  assert.equal(run.code, 1, run.stderr);
  assert.match(run.stderr, expected);
  // The other commands in this process (each child costs seconds of start-up): the same check, the same message.
  const commands = [
    ['search', '--vocab', laion, '--queries', join(dir, 'E.npy'), '--k', '3', '--out', join(out, 'search')],
    ['embed', '--model', join(dir, 'mean.onnx'), '--images', join(dir, 'embed-images'), '--resize', '8', '--crop', '8', '--out', join(out, 'emb.npy')],
    ['splice', 'decompose', '--embeddings', join(dir, 'Z.npy'), '--concepts', join(dir, 'C.npy'), '--l1', '0.05', '--out', join(out, 'W.npy')],
    ['vocab', 'build', '--from', laion, '--out', join(out, 'store'), '--dedupe'],
    ['falcon', 'explain', '--group', '2', '--representations', join(dir, 'R.npy'), '--image-embeddings', join(dir, 'E.npy'), '--captions', laion,
      '--out', join(out, 'explain')],
  ];
  for (const c of commands) {
    const r = await runCli([...c, '--queue', url]);
    assert.equal(r.code, 1, `${c.slice(0, 2).join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, expected);
  }
  assert.ok(!existsSync(out), 'nothing was written');
});

test('misused --queue options are usage errors (exit 2) naming the option, before any work', async () => {
  const url = redis!.url, out = join(dir, 'misuse');
  const explain = ['falcon', 'explain', '--group', '2', '--representations', join(dir, 'R.npy'), '--image-embeddings', join(dir, 'E.npy')];
  const cases: [string[], RegExp][] = [
    [['vocab', 'build', '--from', laion, '--out', join(out, 'store'), '--queue', 'localhost:6379'], /--queue: expected a URL redis:\/\/HOST:PORT\[\/DB\], got 'localhost:6379'/],
    [['vocab', 'build', '--from', laion, '--out', join(out, 'store'), '--queue', url], /--queue: only the --dedupe pass is sharded; without --dedupe there is nothing to shard/],
    [[...explain, '--captions', join(dir, 'E.npy'), '--queue', url], /--captions: with --queue, the caption vocabulary must be a LAION shard directory or a store/],
    [[...explain, '--captions', laion, '--queue', url], /--queue: give --work-dir/],
    [['splice', 'decompose', '--embeddings', join(dir, 'Z.npy'), '--concepts', join(dir, 'C.npy'), '--l1', '0.05', '--out', join(out, 'W.npy'),
      '--work-dir', join(out, 'runs')], /--work-dir: only with --queue/],
  ];
  for (const [args, message] of cases) {
    const r = await runCli(args);  // in this process: usage errors need no cluster
    assert.equal(r.code, 2, `${args.slice(0, 2).join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
  assert.ok(!existsSync(out), 'nothing was written');
});
