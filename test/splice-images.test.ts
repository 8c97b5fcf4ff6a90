import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { assetsDir } from '../ts/assets.js';
import { halfToFloat } from '../ts/io/fp16.js';
import { readNpy, writeNpy } from '../ts/io/npy.js';
import { parseCsv } from '../ts/io/csv.js';
import { spliceImages } from '../ts/methods/splice-images.js';
import { tempDir } from './helpers.js';

const assets = assetsDir();
const SKIP = 'needs the assets mirror (CONCEPTLENS_ASSETS)';
const ready = !!assets && existsSync(join(assets, 'models', 'squeezenet1.1', 'squeezenet1.1.onnx'));
const detic = (f: string) => join(assets!, 'embeddings', 'detic', f);
const MAIN = pathToFileURL(join(import.meta.dirname, '..', 'ts', 'cli', 'main.js')).href;

/** 12 ImageNet samples (every 80th file; the tench twice, so one class has two images) and one corrupt JPEG. */
function imageFolder(): { dir: string; corrupt: string } {
  const src = join(assets!, 'images', 'imagenet-samples');
  const dir = tempDir('splice-images-');
  const files = readdirSync(src).filter((f) => f.endsWith('.JPEG')).sort().filter((_, i) => i % 80 === 0).slice(0, 11);
  for (const f of files) copyFileSync(join(src, f), join(dir, f));
  copyFileSync(join(src, files[0]), join(dir, files[0].replace('.JPEG', '_copy.JPEG')));
  const corrupt = join(dir, 'n09999999_corrupt.JPEG');
  writeFileSync(corrupt, Buffer.from('not a jpeg at all'));
  return { dir, corrupt };
}

/** Runs the CLI in a child process (a script file: the encoder's workers inherit execArgv, so no --eval). */
function cli(args: string[]): any {
  const script = join(tempDir('splice-images-cli-'), 'cli.mjs');
  writeFileSync(script, `const m = await import(${JSON.stringify(MAIN)});\nawait m.main(process.argv);\n`);
  return JSON.parse(execFileSync(process.execPath, [script, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }));
}

const unit = (v: Float64Array) => {
  const n = Math.sqrt(v.reduce((a, x) => a + x * x, 0));
  return n > 0 ? v.map((x) => x / n) : v;
};
const rowOf = (a: ArrayLike<number>, i: number, d: number) => Float64Array.from({ length: d }, (_, t) => a[i * d + t]);
const colMean = (rows: Float64Array[]) => rows[0].map((_, t) => rows.reduce((s, r) => s + r[t], 0) / rows.length);

/** SpLiCE's dictionary in float64 over the last `last` concepts, from its definition: unit rows, minus their mean, unit again. */
function dictionary(last?: number): { rows: Float64Array[]; names: string[] } {
  const a = readNpy(detic('lvis_v1_clip_a+cname.npy')), [all, d] = a.shape, c = last ?? all;
  assert.equal(a.dtype, 'float16');
  const data = Float64Array.from(a.data as Uint16Array, halfToFloat);
  const u = Array.from({ length: c }, (_, j) => unit(rowOf(data, all - c + j, d)));
  const m = colMean(u);
  const names = readFileSync(detic('lvis_v1_names.txt'), 'utf8').trim().split('\n').slice(all - c);
  return { rows: u.map((r) => unit(r.map((x, t) => x - m[t]))), names };
}

/** cosine(normalise(normalise(Σ w_j D_j) + μ), normalise(e)), in float64. */
function cosine(w: ArrayLike<number>, D: Float64Array[], mu: Float64Array, e: Float64Array): number {
  const mix = new Float64Array(mu.length);
  for (let j = 0; j < D.length; j++) if (w[j] !== 0) for (let t = 0; t < mix.length; t++) mix[t] += w[j] * D[j][t];
  const rec = unit(unit(mix).map((x, t) => x + mu[t])), z = unit(e);
  return rec.reduce((s, x, t) => s + x * z[t], 0);
}

function checkOutputs(out: string, summary: any, dir: string, corrupt: string, mu: Float64Array | undefined, last?: number) {
  const D = dictionary(last), c = D.rows.length;
  const emb = readNpy(join(out, 'embeddings.npy')), w = readNpy(join(out, 'weights.npy'));
  const n = 12, d = emb.shape[1];
  assert.deepEqual(w.shape, [n, c]);
  assert.equal(w.dtype, 'float32');
  assert.equal(emb.shape[0], n);
  assert.equal(summary.images, n);
  assert.deepEqual(summary.skipped, [corrupt]);
  const E = Array.from({ length: n }, (_, i) => rowOf(emb.data as Float32Array, i, d));
  const mean = mu ?? colMean(E.map(unit));
  const [head, ...rows] = parseCsv(readFileSync(join(out, 'decompositions.csv'), 'utf8'));
  assert.deepEqual(head, ['file', 'l0', 'cosine', 'top_concepts']);
  const expectFiles = readdirSync(dir).filter((f) => join(dir, f) !== corrupt).sort();
  assert.deepEqual(rows.map((r) => r[0]), expectFiles);
  let l0sum = 0, cosSum = 0;
  rows.forEach((r, i) => {
    const wi = rowOf(w.data as Float32Array, i, c);
    assert.ok(wi.every((x) => x >= 0), `weights of ${r[0]} are non-negative`);
    const l0 = wi.filter((x) => x > 0).length, cos = cosine(wi, D.rows, mean, E[i]);
    assert.ok(l0 > 0, `${r[0]} has a non-empty decomposition`);
    assert.equal(Number(r[1]), l0, `l0 of ${r[0]}`);
    assert.ok(Math.abs(Number(r[2]) - cos) < 1e-4, `cosine of ${r[0]}: csv ${r[2]}, recomputed ${cos}`);
    const heaviest = wi.indexOf(Math.max(...wi));
    assert.equal(r[3].split(' ')[0].split(':')[0], D.names[heaviest]);
    l0sum += l0, cosSum += cos;
  });
  assert.ok(Math.abs(summary.mean_l0 - l0sum / n) < 1e-9);
  assert.ok(Math.abs(summary.mean_cosine - cosSum / n) < 1e-4);
  return { w: w.data as Float32Array, c, names: D.names, files: expectFiles, rows };
}

/** The `scope` rows of dataset.csv equal the mean weights of `rows`, ranked heaviest first, zeros left out. */
function checkRanking(table: string[][], scope: string, w: Float32Array, c: number, rows: number[], names: string[]) {
  const m = Array.from({ length: c }, (_, j) => rows.reduce((s, i) => s + w[i * c + j], 0) / rows.length);
  const expect = m.map((v, j) => [j, v] as const).filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1] || a[0] - b[0]);
  const got = table.filter((r) => r[0] === scope);
  assert.equal(got.length, expect.length, `${scope}: ranked concepts`);
  got.forEach((r, k) => {
    assert.equal(Number(r[1]), rows.length);
    assert.equal(Number(r[2]), k + 1);
    assert.equal(r[3], names[expect[k][0]]);
    assert.equal(Number(r[4]), expect[k][0]);
    assert.ok(Math.abs(Number(r[5]) - expect[k][1]) < 1e-6, `${scope} ${r[3]}: ${r[5]} vs ${expect[k][1]}`);
  });
}

test('splice images: per-image and dataset decompositions of a folder, corrupt file skipped, chart of the top concepts', async (t) => {
  if (!ready) return t.skip(SKIP);
  const { dir, corrupt } = imageFolder(), out = join(tempDir('splice-images-out-'), 'run');
  const summary = cli(['splice', 'images', '--images', dir, '--standin', '--concepts', detic('lvis_v1_clip_a+cname.npy'),
    '--concept-names', detic('lvis_v1_names.txt'), '--l1', '0.25', '--out', out, '--json']);
  assert.equal(summary.centred_on, 'mean of these images');
  assert.ok(summary.samples_per_s > 0);
  const { w, c, names, files, rows } = checkOutputs(out, summary, dir, corrupt, undefined);
  assert.deepEqual([files[0], rows[0][3].split(':')[0]], ['n01440764_tench.JPEG', 'fish']); // the stand-in maps tench to LVIS 'fish'
  const table = parseCsv(readFileSync(join(out, 'dataset.csv'), 'utf8'));
  assert.deepEqual(table[0], ['scope', 'images', 'rank', 'concept', 'index', 'mean_weight']);
  assert.deepEqual([...new Set(table.slice(1).map((r) => r[0]))], ['all']);
  checkRanking(table.slice(1), 'all', w, c, files.map((_, i) => i), names);
  const top = table[1][3];
  assert.equal(summary.top[0].concept, top);
  const svg = readFileSync(join(out, 'dataset.svg'), 'utf8');
  assert.ok(svg.includes(`>${top}</text>`), `the chart names the top concept '${top}'`);
  const meta = await sharp(Buffer.from(svg)).metadata(); // librsvg parses it
  assert.equal(meta.format, 'svg');
  const png = await sharp(join(out, 'dataset.png')).metadata();
  assert.deepEqual([png.format, png.width, png.height], ['png', meta.width, meta.height]);
});

test('splice images: class decompositions from wnid file names, centred on a given image mean, over the last 1000 concepts', (t) => {
  if (!ready) return t.skip(SKIP);
  const { dir, corrupt } = imageFolder(), base = tempDir('splice-images-out-'), out = join(base, 'run');
  const d = readNpy(detic('lvis_v1_clip_a+cname.npy')).shape[1];
  const mu = Float32Array.from({ length: d }, (_, t) => (t % 7 === 0 ? 0.02 : -0.01));
  writeNpy(join(base, 'mean.npy'), mu, [d]);
  const summary = cli(['splice', 'images', '--images', dir, '--standin', '--concepts', detic('lvis_v1_clip_a+cname.npy'),
    '--concept-names', detic('lvis_v1_names.txt'), '--l1', '0.2', '--image-mean', join(base, 'mean.npy'),
    '--labels-from', 'wnid', '--vocab-last', '1000', '--out', out, '--json']);
  const { w, c, names, files } = checkOutputs(out, summary, dir, corrupt, Float64Array.from(mu), 1000);
  assert.equal(c, 1000);
  const wnids = files.map((f) => f.slice(0, 9));
  const classes = [...new Set(wnids)].sort();
  assert.equal(summary.classes, 11);
  const table = parseCsv(readFileSync(join(out, 'dataset.csv'), 'utf8')).slice(1);
  assert.deepEqual([...new Set(table.map((r) => r[0]))], ['all', ...classes]);
  for (const k of classes) checkRanking(table, k, w, c, wnids.flatMap((x, i) => (x === k ? [i] : [])), names);
  assert.equal(table.filter((r) => r[0] === 'n01440764')[0][1], '2'); // the tench and its copy
});

test('splice images rejects an output folder inside the image folder, and a missing or doubled encoder', async () => {
  const dir = tempDir('splice-images-bad-');
  const o = { images: dir, concepts: 'c.npy', conceptNames: 'n.txt', l1: 0.25, out: join(dir, 'out') };
  await assert.rejects(spliceImages({ ...o, standin: true }), /--out: .* is inside --images/);
  await assert.rejects(spliceImages({ ...o, out: join(dir, '..', 'elsewhere') }), /either --model .* or --standin/);
  await assert.rejects(spliceImages({ ...o, standin: true, model: 'm.onnx', out: join(dir, '..', 'elsewhere') }), /either --model .* or --standin/);
});
