// Every bench suite, run through the CLI at toy sizes: it must finish, print
// the one report shape, and its correctness columns must hold (objectives at
// the best any contender reached, answers exact). Speed is never asserted
// here: figures come from `conceptlens bench` at full size.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './helpers.js';
import { writeNpy } from '../ts/io/npy.js';
import { randn } from '../ts/random.js';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'conceptlens.js');

interface Report {
  suite: string;
  params: Record<string, unknown>;
  machine: Record<string, unknown>;
  results: ({ name: string; seconds: number } & Record<string, unknown>)[];
}

function bench(args: string[]): Promise<Report> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'bench', ...args, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`bench ${args.join(' ')} exited ${code}: ${err}`));
      const report = JSON.parse(out.trim().split('\n').at(-1)!) as Report;
      assert.equal(report.suite, args[0]);
      assert.ok(report.results.length > 0 && report.results.every((r) => typeof r.name === 'string' && Number.isFinite(r.seconds) && r.seconds >= 0), JSON.stringify(report.results));
      resolve(report);
    });
  });
}

const row = (r: Report, name: string) => {
  const found = r.results.find((x) => x.name === name);
  assert.ok(found, `${r.suite}: no row ${name} in ${r.results.map((x) => x.name).join(', ')}`);
  return found;
};

/**
 * A row's floor is its multiply-adds at the peak the report's machine block gives for its arithmetic, and of_peak
 * that floor over its seconds; no floor where the machine lacks the instructions.
 */
function checkFloor(r: Report, x: Report['results'][number], macs: number, arithmetic: 'fp32' | 'int8' | 'int16') {
  const peaks = r.machine.peaks as Record<string, number>, peak = peaks[`${arithmetic}_gmacs_per_s`] * 1e9;
  if (!(peak > 0)) return assert.equal(x.floor_seconds, undefined, x.name);
  assert.ok(Math.abs((x.floor_seconds as number) * peak - macs) <= 1e-9 * macs, `${x.name}: ${x.floor_seconds} s at ${peak}/s for ${macs}`);
  assert.ok(Math.abs((x.of_peak as number) * x.seconds - (x.floor_seconds as number)) <= 1e-12, x.name);
}

/** A --tols run's curves: one point per contender and tolerance, the tightest at least as close to the best as the loosest. */
function checkCurves(r: Report, names: string[], tols: number[], field = 'max_rel_gap_to_best') {
  const curves = (r as Report & { curves: { name: string; tol: number; seconds: number; [k: string]: unknown }[] }).curves;
  assert.deepEqual(curves.map((c) => `${c.name}@${c.tol}`).sort(), names.flatMap((n) => tols.map((t) => `${n}@${t}`)).sort());
  for (const name of names) {
    const at = (tol: number) => curves.find((c) => c.name === name && c.tol === tol)![field] as number;
    assert.ok(at(Math.min(...tols)) <= at(Math.max(...tols)) + 1e-12, `${name}: ${at(Math.min(...tols))} at the tightest tol, ${at(Math.max(...tols))} at the loosest`);
  }
}

test('bench glm: coordinate descent reaches the best objective, GLM-SAGA (a fixed epoch budget) none better; --tols draws curves', async () => {
  const plot = join(tempDir(), 'glm.svg');
  const r = await bench(['glm', '--n', '300', '--p', '40', '--neurons', '6', '--solvers', 'cd,saga', '--repeats', '1', '--warmup', '0', '--plot', plot, '--tols', '1e-2,1e-9']);
  assert.ok((row(r, 'conceptlens-cd').max_rel_gap_to_best as number) < 1e-6);
  assert.ok((row(r, 'glm-saga').mean_objective as number) >= (row(r, 'conceptlens-cd').mean_objective as number) * (1 - 1e-9));
  checkCurves(r, ['conceptlens-cd', 'glm-saga'], [1e-2, 1e-9]);
  assert.match(readFileSync(plot, 'utf8'), /^<svg[^>]*>.*conceptlens-cd.*<polyline.*conceptlens-cd \(tols\)/s);
});

test("bench glm on the user's files: rates and params are those of the files, not of the generator's defaults", async () => {
  const dir = tempDir(), x = join(dir, 'X.npy'), y = join(dir, 'Y.npy');
  writeNpy(x, randn(200 * 30, 1), [200, 30]);
  writeNpy(y, randn(200 * 5, 2), [200, 5]);
  const plot = join(dir, 'glm.svg');
  const r = await bench(['glm', '--x', x, '--y', y, '--repeats', '1', '--warmup', '0', '--plot', plot]);
  assert.deepEqual([r.params.data, r.params.n, r.params.p, r.params.neurons], ['user', 200, 30, 5]);
  const cd = row(r, 'conceptlens-cd'), fp32 = row(r, 'conceptlens-cd-fp32');
  assert.ok(Math.abs((cd.neurons_per_s as number) * cd.seconds - 5) < 1e-9, JSON.stringify(cd));
  // XᵀX's triangle and XᵀY, at the peak of what computed them (auto rounds Gaussian columns where VNNI runs).
  const macs = (200 * 30 * 31) / 2 + 200 * 30 * 5;
  assert.ok(cd.moments_by === 'int16' || cd.moments_by === 'fp32', String(cd.moments_by));
  checkFloor(r, cd, macs, cd.moments_by as 'fp32' | 'int16');
  assert.equal(fp32.moments_by, 'fp32');
  checkFloor(r, fp32, macs, 'fp32');
  assert.ok((cd.max_rel_gap_to_best as number) <= 1e-6, JSON.stringify(cd));
  // The best contender's gap is 0, which a log axis cannot show: it is drawn and marked.
  const best = r.results.find((x) => x.max_rel_gap_to_best === 0);
  assert.ok(best, JSON.stringify(r.results));
  assert.match(readFileSync(plot, 'utf8'), new RegExp(`max_rel_gap_to_best against seconds.*${best.name} \\(0\\)`, 's'));
});

test("bench splice on the user's files takes a 1-D image mean, as splice decompose does", async () => {
  const dir = tempDir(), c = join(dir, 'C.npy'), z = join(dir, 'Z.npy'), mean = join(dir, 'mean.npy');
  writeNpy(c, randn(40 * 16, 3), [40, 16]);
  writeNpy(z, randn(12 * 16, 4), [12, 16]);
  writeNpy(mean, randn(16, 5, 0.1), [16]);
  const r = await bench(['splice', '--concepts', c, '--embeddings', z, '--image-mean', mean, '--repeats', '1', '--warmup', '0']);
  assert.deepEqual([r.params.data, r.params.n, r.params.c, r.params.d, r.params.k, r.params.noise], ['user', 12, 40, 16, undefined, undefined]);
  assert.equal(row(r, 'ws').samples, 12);
  checkFloor(r, row(r, 'ws'), 12 * 40 * 16, 'fp32');
});

test('bench: an unknown or empty contender list, an unknown peer, a bad --tols, --queries or --metric without --vocab, --image-mean without --embeddings, or a generator option with your own data is a usage error (exit 2)', () => {
  for (const args of [['glm', '--solvers', ''], ['glm', '--peers', 'torch'], ['sae', '--variants', 'topk,foo'], ['topk', '--contenders', 'bogus'],
    ['topk', '--queries', 'q.npy', '--n', '100'], ['glm', '--tols', '1e-3,0'], ['splice', '--tols', ','], ['glm', '--tols', '1e-3,,1e-4'],
    ['topk', '--metric', 'ip', '--n', '100'], ['splice', '--image-mean', 'mean.npy', '--n', '10']]) {
    const r = spawnSync(process.execPath, [BIN, 'bench', ...args, '--json'], { encoding: 'utf8' });
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /^error: --(solvers|peers|variants|contenders|queries|tols|metric|image-mean)/, args.join(' '));
  }
  // A size or generator with the user's own data would be ignored: refused, naming both options and why.
  for (const [args, gen, own] of [[['glm', '--x', 'X.npy', '--y', 'Y.npy', '--n', '50'], 'n', 'x'], [['splice', '--concepts', 'C.npy', '--embeddings', 'Z.npy', '--data', 'clip-mix'], 'data', 'concepts'],
    [['sae', '--features', 'F.npy', '--d', '64'], 'd', 'features'], [['topk', '--vocab', 'V', '--dtype', 'fp16'], 'dtype', 'vocab'], [['topk', '--vocab', 'V', '--queries', 'Q.npy', '--q', '5'], 'q', 'queries']] as const) {
    const r = spawnSync(process.execPath, [BIN, 'bench', ...args, '--json'], { encoding: 'utf8' });
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`^error: --${gen} <[^>]+> would be ignored with --${own} <[^>]+>: give one or the other`), args.join(' '));
  }
  // clip-mix's rows are the real 512-d CLIP embeddings: a size or mixture setting of the planted data is refused.
  for (const [args, gen] of [[['topk', '--data', 'clip-mix', '--d', '64'], 'd'], [['splice', '--data', 'clip-mix', '--k', '3'], 'k'], [['sae', '--data', 'clip-mix', '--d', '64'], 'd']] as const) {
    const r = spawnSync(process.execPath, [BIN, 'bench', ...args, '--json'], { encoding: 'utf8' });
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`^error: --${gen} <[^>]+> would be ignored with --data clip-mix`), args.join(' '));
  }
});

test('bench splice: every solver reaches the best objective on planted data; --tols gives each a curve', async () => {
  const r = await bench(['splice', '--n', '40', '--c', '200', '--d', '32', '--k', '4', '--baseline-n', '6', '--solvers', 'ws,fista,admm', '--repeats', '1', '--tols', '1e-1,1e-8']);
  for (const name of ['ws', 'fista', 'admm']) assert.ok((row(r, name).max_rel_gap_to_best as number) < 1e-4, name);
  checkCurves(r, ['ws', 'fista', 'admm'], [1e-1, 1e-8]);
  assert.equal(row(r, 'ws').samples, 40);
  assert.equal(row(r, 'fista').samples, 6);
});

test('bench topk: the prepared contender equals the unprepared scan bit for bit, its preparation timed apart', async () => {
  const r = await bench(['topk', '--n', '3000', '--q', '20', '--d', '32', '--k', '5', '--repeats', '1', '--contenders', 'conceptlens,conceptlens-prepared,faiss']);
  const prepared = r.results.find((x) => x.name.startsWith('conceptlens-exact-fp32-prepared'));
  assert.ok(prepared, r.results.map((x) => x.name).join(', '));
  assert.equal(prepared.same_as_unprepared, true);
  assert.equal(prepared.recall_at_5, 1);
  assert.ok(Number.isFinite(prepared.prepare_seconds) && Number.isFinite(prepared.ratio_vs_faiss));
});

test('bench sae: every variant steps, at its l0, dense steps with their floor; clip-mix steps on the real CLIP concepts (d = 512)', async (t) => {
  const r = await bench(['sae', '--d', '16', '--expansion', '4', '--batch', '128', '--k', '4', '--train', '2', '--repeats', '1']);
  for (const kind of ['topk', 'batchtopk']) assert.equal(row(r, `conceptlens-${kind}`).l0, 4, kind);
  assert.ok((row(r, 'conceptlens-relu-l1-trained').l0 as number) > 0);
  // Dense steps carry the five GEMMs' floor; sparse ones (TopK's) none.
  for (const x of r.results) {
    if (x.sparse_path === false) checkFloor(r, x, 5 * 128 * 16 * 64, 'fp32');
    else assert.equal(x.floor_seconds, undefined, x.name);
  }
  assert.ok(r.results.some((x) => x.sparse_path === false), 'relu-l1 starts on the dense path');
  const assets = process.env.CONCEPTLENS_ASSETS ?? join(import.meta.dirname, '..', '..', '..', 'shared', 'assets');
  if (!existsSync(join(assets, 'embeddings', 'detic'))) return t.skip(`no assets mirror at ${assets} (set CONCEPTLENS_ASSETS)`);
  const c = await bench(['sae', '--data', 'clip-mix', '--expansion', '1', '--batch', '64', '--k', '4', '--train', '0', '--repeats', '1', '--variants', 'topk']);
  assert.equal(c.params.source, 'clip-mix');
  assert.equal(c.params.d, 512);
  assert.equal(row(c, 'conceptlens-topk').l0, 4);
});

test('bench serve: every answer under load is exact, batched and not', async () => {
  const r = await bench(['serve', '--n', '2000', '--d', '16', '--concurrency', '4', '--duration', '1', '--pool', '16']);
  const runs = r.results.filter((x) => typeof x.checked === 'number');
  assert.ok(runs.length >= 2, JSON.stringify(r.results));
  for (const x of runs) {
    assert.ok((x.checked as number) > 0, x.name);
    assert.equal(x.not_exact, 0, x.name);
    assert.equal(x.errors, 0, x.name);
    assert.equal(typeof x.shed_503, 'number', x.name);  // shed work is counted apart from errors
  }
});

test('bench embed: the stages of the SqueezeNet pipeline on the assets mirror', async (t) => {
  const assets = process.env.CONCEPTLENS_ASSETS ?? join(import.meta.dirname, '..', '..', '..', 'shared', 'assets');
  if (!existsSync(join(assets, 'models'))) return t.skip(`no assets mirror at ${assets} (set CONCEPTLENS_ASSETS)`);
  const r = await bench(['embed', '--images', '8', '--batch', '4', '--repeats', '1']);
  assert.ok((row(r, 'staged_total').images_per_s as number) > 0);
});

test('bench topk: every exact contender finds the fp32 top-k, FAISS Flat too; --plot draws; --vocab searches a shard directory from disk', async () => {
  const plot = join(tempDir(), 'topk.svg');
  const r = await bench(['topk', '--n', '3000', '--q', '20', '--d', '32', '--k', '5', '--repeats', '1', '--warmup', '0', '--plot', plot, '--contenders', 'conceptlens,conceptlens-fp16,conceptlens-sgemm,faiss']);
  assert.match(readFileSync(plot, 'utf8'), /^<svg[^>]*>.*faiss-IndexFlatIP \([\d.]+% of peak\)/s);
  const exact = r.results.filter((x) => x.name.startsWith('conceptlens-exact-fp32') || x.name === 'faiss-IndexFlatIP');
  assert.ok(exact.length >= 3, JSON.stringify(r.results));
  for (const x of exact) assert.equal(x.recall_at_5, 1, x.name);
  checkFloor(r, row(r, 'faiss-IndexFlatIP'), 20 * 3000 * 32, 'fp32');
  checkFloor(r, row(r, 'conceptlens-exact-fp32-sgemm'), 20 * 3000 * 32, 'fp32');
  const int8 = r.results.find((x) => x.name === 'conceptlens-exact-fp32-int8screen');
  if (int8) checkFloor(r, int8, (20 * 3000 * 32) / 2, 'int8');  // Winograd's pairs: one product per two dimensions
  const dir = tempDir();
  await bench(['falcon-captions', '--rows', '2000', '--shard-rows', '1000', '--dim', '16', '--images', '3', '--variants', 'cosine', '--dir', dir]);
  const v = await bench(['topk', '--vocab', dir, '--q', '7', '--k', '4', '--repeats', '1', '--contenders', 'conceptlens,conceptlens-sgemm,faiss']);
  assert.equal(v.params.rows, 2000);
  for (const x of v.results.filter((x) => x.name !== 'sequential-read-of-the-shards')) assert.equal(x.recall_at_4, 1, x.name);
  assert.ok((row(v, 'sequential-read-of-the-shards').gbps as number) > 0);
});

test('bench falcon-captions: each variant scans every row, and dedupe keeps every (distinct) synthetic caption', async () => {
  const r = await bench(['falcon-captions', '--rows', '3000', '--shard-rows', '1000', '--dim', '16', '--images', '2,5', '--repeats', '1',
    '--variants', 'per-shard-softmax-100,cosine,dedupe-build']);
  for (const name of ['per-shard-softmax-100 (2 images)', 'per-shard-softmax-100 (5 images)', 'cosine (5 images)'])
    assert.ok((row(r, name).captions_per_s as number) > 0 && (row(r, name).peak_rss_gib as number) > 0, name);
  const dedupe = row(r, 'vocab-build-dedupe');
  assert.equal(dedupe.kept_rows, 3000);  // each synthetic caption ends with its row id
});
