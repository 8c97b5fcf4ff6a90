import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assetsDir } from '../ts/assets.js';
import { readNpy, writeNpy } from '../ts/io/npy.js';
import {
  ablationScores, calibrateSigmoid, correlationScores, elasticNetObjective, explainNeurons, filterConcepts,
  fitElasticNet, greedySearch, labelConcepts, LE_ALPHA, LE_LAMBDA, pearson, readSplit, seededSplit, sigmoidConcepts,
  summarise, writeSplit, standardisedRows, 
} from '../ts/methods/le/index.js';
import type { Mat } from '../ts/matrix.js';
import { formatExplanation, readExplanationsCsv, writeExplanationsCsv, type Explanation } from '../ts/methods/le/index.js';
import { randn, tempDir, cliOk, runCli } from './helpers.js';

// ------------------------------------------------------------------ helpers

const standardise = (a: ArrayLike<number>, rows: number, cols: number): Mat =>
  standardisedRows({ data: Float32Array.from(a), rows, cols }, Int32Array.from({ length: rows }, (_, i) => i));

/**
 * Independent float64 reference: the minimum of
 * (1/2n)‖y − Xw − b‖² + λ(α‖w‖₁ + ½(1−α)‖w‖²) by plain cyclic coordinate
 * descent on the residual, the intercept re-fitted after every pass.
 */
function referenceObjective(X: Mat, Y: Mat, k: number, lam = LE_LAMBDA, alpha = LE_ALPHA): number {
  const { rows: n, cols: p } = X;
  const soft = (z: number, t: number) => (z > t ? z - t : z < -t ? z + t : 0);
  const w = new Float64Array(p), r = new Float64Array(n), sq = new Float64Array(p);
  let b = 0;
  for (let i = 0; i < n; i++) b += Y.data[i * Y.cols + k] / n;
  for (let i = 0; i < n; i++) r[i] = Y.data[i * Y.cols + k] - b;
  for (let j = 0; j < p; j++) for (let i = 0; i < n; i++) sq[j] += X.data[i * p + j] ** 2 / n;
  for (let pass = 0; pass < 20000; pass++) {
    let change = 0;
    for (let j = 0; j < p; j++) {
      let g = 0;
      for (let i = 0; i < n; i++) g += (X.data[i * p + j] * r[i]) / n;
      const wn = soft(g + sq[j] * w[j], lam * alpha) / (sq[j] + lam * (1 - alpha));
      if (wn !== w[j]) for (let i = 0; i < n; i++) r[i] -= (wn - w[j]) * X.data[i * p + j];
      change = Math.max(change, Math.abs(wn - w[j]));
      w[j] = wn;
    }
    let db = 0;
    for (let i = 0; i < n; i++) db += r[i] / n;
    b += db;
    for (let i = 0; i < n; i++) r[i] -= db;
    if (change < 1e-13 && Math.abs(db) < 1e-13) break;
  }
  let rss = 0, l1 = 0, l2 = 0;
  for (const x of r) rss += x * x;
  for (const x of w) (l1 += Math.abs(x)), (l2 += x * x);
  return rss / (2 * n) + lam * (alpha * l1 + 0.5 * (1 - alpha) * l2);
}

/** The objective of weights w (row k of W) and bias b for target k, from its definition in float64. */
function objectiveOf(X: Mat, Y: Mat, k: number, w: ArrayLike<number>, b: number, lam = LE_LAMBDA, alpha = LE_ALPHA): number {
  let rss = 0, l1 = 0, l2 = 0;
  for (let i = 0; i < X.rows; i++) {
    let pred = b;
    for (let j = 0; j < X.cols; j++) pred += X.data[i * X.cols + j] * w[j];
    rss += (Y.data[i * Y.cols + k] - pred) ** 2;
  }
  for (let j = 0; j < X.cols; j++) (l1 += Math.abs(w[j])), (l2 += w[j] ** 2);
  return rss / (2 * X.rows) + lam * (alpha * l1 + 0.5 * (1 - alpha) * l2);
}

/** The returned weights reach the reference minimum (their objective recomputed here, not the engine's), and the engine reports it. */
function assertReachesReference(X: Mat, Y: Mat, fit: { weights: Float32Array; bias: Float32Array; objective: Float64Array }, rel: number, what: string) {
  for (let k = 0; k < Y.cols; k++) {
    const ref = referenceObjective(X, Y, k), got = objectiveOf(X, Y, k, fit.weights.subarray(k * X.cols, (k + 1) * X.cols), fit.bias[k]);
    assert.ok(Math.abs(got - ref) <= rel * ref, `${what}, target ${k}: objective ${got} vs reference ${ref}`);
    assert.ok(Math.abs(fit.objective[k] - got) <= 1e-9 * got, `${what}, target ${k}: reported ${fit.objective[k]} vs recomputed ${got}`);
  }
}

/** Targets that are sparse mixes of the columns of X plus noise. */
function mixTargets(X: Mat, K: number, seed: number): Mat {
  const noise = randn(X.rows * K, seed);
  const Y = new Float64Array(X.rows * K);
  for (let k = 0; k < K; k++)
    for (let i = 0; i < X.rows; i++) {
      let y = noise[i * K + k];
      for (let j = k % 3; j < X.cols; j += 5) y += ((j % 2 ? 1 : -0.6) * X.data[i * X.cols + j]) / (1 + k);
      Y[i * K + k] = y;
    }
  return standardise(Y, X.rows, K);
}

function halfToFloat(h: number): number {
  const e = (h >> 10) & 0x1f, f = h & 0x3ff, s = h & 0x8000 ? -1 : 1;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

function embeddings(rel: string): Mat {
  const a = readNpy(join(assetsDir()!, rel));
  const [rows, cols] = a.shape;
  const data = Float32Array.from(a.data as Uint16Array, halfToFloat);
  for (let i = 0; i < rows; i++) {
    const row = data.subarray(i * cols, (i + 1) * cols);
    const norm = Math.hypot(...row);
    row.forEach((v, j) => (row[j] = v / norm));
  }
  return { data, rows, cols };
}

/** Cosine similarities of the rows of A with the first `take` rows of B. */
function cosines(A: Mat, B: Mat, take: number): Float64Array {
  const out = new Float64Array(A.rows * take);
  for (let i = 0; i < A.rows; i++)
    for (let j = 0; j < take; j++) {
      let s = 0;
      for (let c = 0; c < A.cols; c++) s += A.data[i * A.cols + c] * B.data[j * B.cols + c];
      out[i * take + j] = s;
    }
  return out;
}

const hasAssets = () => assetsDir() !== undefined && existsSync(join(assetsDir()!, 'reference', 'le'));

// --------------------------------------------------------------- elastic net

test('both solvers reach the float64 reference minimum on standardised random data', async () => {
  const n = 300, p = 25;
  const X = standardise(randn(n * p, 11), n, p), Y = mixTargets(X, 4, 12);
  const cd = await fitElasticNet(X, Y);
  assertReachesReference(X, Y, cd, 1e-6, 'cd');
  const saga = await fitElasticNet(X, Y, { solver: 'saga', batch: 16, step: 0.01, maxEpochs: 3000, lookbehind: 3000, tolPerTarget: 0 });
  assertReachesReference(X, Y, saga, 1e-6, 'saga');
  // The engine's objective function agrees with the definition.
  elasticNetObjective(X, Y, cd.weights, cd.bias).forEach((o, k) =>
    assert.ok(Math.abs(o - objectiveOf(X, Y, k, cd.weights.subarray(k * X.cols, (k + 1) * X.cols), cd.bias[k])) <= 1e-9 * o));
});

test('both solvers reach the reference on real data: CLIP text-embedding similarities', { timeout: 120000 }, async (t) => {
  if (!hasAssets()) return t.skip('assets absent (set CONCEPTLENS_ASSETS)');
  // Samples: 600 LVIS concepts; features: their cosine with 60 COCO concepts; targets: with 5 Objects365 concepts.
  const lvis = embeddings('embeddings/detic/lvis_v1_clip_a+cname.npy');
  const samples = { data: lvis.data.subarray(0, 600 * lvis.cols), rows: 600, cols: lvis.cols };
  const X = standardise(cosines(samples, embeddings('embeddings/detic/coco_clip_a+cname.npy'), 60), 600, 60);
  const Y = standardise(cosines(samples, embeddings('embeddings/detic/o365_clip_a+cnamefix.npy'), 5), 600, 5);
  assertReachesReference(X, Y, await fitElasticNet(X, Y), 1e-6, 'cd');
  const saga = await fitElasticNet(X, Y, { solver: 'saga', batch: 32, step: 0.005, maxEpochs: 6000, lookbehind: 6000, tolPerTarget: 0 });
  assertReachesReference(X, Y, saga, 1e-6, 'saga');
});

test('cd on int16 and fp32 moments: both reach the reference; auto rounds only columns within 8 standard deviations', async () => {
  const n = 400, p = 30;
  const X = standardise(randn(n * p, 15), n, p), Y = mixTargets(X, 3, 16);
  const fp32 = await fitElasticNet(X, Y, { moments: 'fp32' });
  assert.equal(fp32.momentsBy, 'fp32');
  assertReachesReference(X, Y, fp32, 1e-9, 'cd on fp32 moments');
  const auto = await fitElasticNet(X, Y);
  if (auto.momentsBy === 'int16') {
    // Rounding to 12 bits moves the minimum by far less than 1e-6 of the objective, and keeps its support.
    assertReachesReference(X, Y, auto, 1e-6, 'cd on int16 moments');
    auto.weights.forEach((w, i) => assert.equal(w !== 0, fp32.weights[i] !== 0, `weight ${i}: support differs`));
    assert.equal((await fitElasticNet(X, Y, { moments: 'int16' })).momentsBy, 'int16');
  } else {
    // No AVX-512 VNNI here: int16 is refused by name.
    assert.equal(auto.momentsBy, 'fp32');
    await assert.rejects(fitElasticNet(X, Y, { moments: 'int16' }), { code: 'ERR_ARG', message: /int16 needs AVX-512 VNNI/ });
  }
  // One sample 30 standard deviations out: 12-bit steps would be coarse there, so auto keeps fp32.
  const outlier = { ...X, data: X.data.slice() };
  outlier.data[5 * p + 2] = 30;
  assert.equal((await fitElasticNet(outlier, Y)).momentsBy, 'fp32');
  await assert.rejects(async () => fitElasticNet(X, Y, { moments: 'fp16' as 'fp32' }), { code: 'ERR_ARG', message: /^moments: expected 'auto', 'fp32' or 'int16', got 'fp16'$/ });
});

test('an aborted fit rejects with AbortError', async () => {
  const X = standardise(randn(200 * 10, 13), 200, 10), Y = mixTargets(X, 2, 14);
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(fitElasticNet(X, Y, { signal: ac.signal }), { name: 'AbortError' });
});

// --------------------------------------------------------- concepts, splits

test('label concepts: one-hot classes then superclass indicators; the filter drops weak and constant concepts', () => {
  const { P, names } = labelConcepts([0, 2, 1, 2], ['cat', 'dog', 'car'], { pet_animal: [0, 1] });
  assert.deepEqual(names, ['cat', 'dog', 'car', 'pet animal']);
  assert.deepEqual(Array.from(P.data), [1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0]);
  assert.throws(() => labelConcepts([3], ['a', 'b']), /labels\[0\]: expected a class id in \[0, 2\), got 3/);

  const M: Mat = { data: new Float32Array(6 * 3), rows: 6, cols: 3 };
  for (let i = 0; i < 6; i++) M.data.set([i / 5, 0.3 * (i / 5), 0.7], i * 3); // top-5 means 0.6, 0.18, 0.7 (constant)
  assert.deepEqual(filterConcepts(M, ['strong', 'weak', 'constant']).names, ['strong']);
  assert.throws(() => filterConcepts(M, ['a']), /concept names: expected 3 .* got 1/);
});

test('sigmoid calibration recovers the (a, b) that generated the probabilities', () => {
  const cos: Mat = { data: Float32Array.from(randn(4000, 15), (v) => 0.2 + 0.05 * v), rows: 400, cols: 10 };
  const target = sigmoidConcepts(cos, 60, -0.19);
  const { a, b } = calibrateSigmoid(cos, target);
  assert.ok(Math.abs(a - 60) <= 0.5 && Math.abs(b + 0.19) <= 0.002, `got a ${a}, b ${b}`);
});

test('seeded 70/10/20 split: disjoint cover, sorted, reproducible, round-trips through index files', () => {
  const s = seededSplit(1000, 7);
  assert.deepEqual([s.train.length, s.val.length, s.test.length], [700, 100, 200]);
  const all = [...s.train, ...s.val, ...s.test].sort((a, b) => a - b);
  assert.deepEqual(all, Array.from({ length: 1000 }, (_, i) => i));
  assert.deepEqual(seededSplit(1000, 7), s);
  assert.notDeepEqual(seededSplit(1000, 8).val, s.val);
  const dir = tempDir();
  writeSplit(dir, s);
  assert.deepEqual(readSplit(dir, 1000), s);
  assert.throws(() => readSplit(dir, 900), /_ids\.npy: entry \d+: expected an integer sample index in \[0, 900\), got 9\d\d/);
  assert.throws(() => seededSplit(12, 0), /12 samples are too few for a 70\/10\/20 split/);
});

// --------------------------------------------------------------- explaining

/** Concept probabilities, and neurons that are known mixes of them. */
function toyProblem(n: number) {
  const c = 12, r = randn(n * c, 21), noise = randn(n * 3, 22);
  const P: Mat = { data: Float32Array.from(r, (v) => 1 / (1 + Math.exp(-2 * v))), rows: n, cols: c };
  const A: Mat = { data: new Float32Array(n * 3), rows: n, cols: 3 };
  for (let i = 0; i < n; i++) {
    const p = (k: number) => P.data[i * c + k];
    A.data[i * 3] = 2 * p(3) + p(7) + 0.05 * noise[i * 3];
    A.data[i * 3 + 1] = 3 * p(0) + 0.3 * noise[i * 3 + 1];
    A.data[i * 3 + 2] = p(5) + 0.5 * p(9) + 0.2 * p(1) + 0.05 * noise[i * 3 + 2];
  }
  return { P, A, names: Array.from({ length: c }, (_, k) => `concept ${k}`) };
}

test('explanations recover the concepts a neuron is made of, with least-squares weights', async () => {
  const { P, A, names } = toyProblem(2000);
  const split = seededSplit(2000, 3);
  const exps = await explainNeurons(A, P, names, { split, layer: 'toy' });
  const terms = (e: Explanation) => Object.fromEntries(e.concepts.map((c, i) => [c, e.weights[i]]));
  const t0 = terms(exps[0]);
  assert.deepEqual(exps[0].concepts, ['concept 3', 'concept 7']); // sorted by weight
  assert.ok(Math.abs(t0['concept 3'] - 2) < 0.02 && Math.abs(t0['concept 7'] - 1) < 0.02, JSON.stringify(t0));
  assert.deepEqual(exps[1].concepts, ['concept 0']);
  assert.deepEqual(new Set(exps[2].concepts.slice(0, 2)), new Set(['concept 5', 'concept 9']));
  assert.ok(exps.every((e) => e.valCorrelation > 0.9 && e.layer === 'toy'));
  // Least squares on train: the residual is orthogonal to the constant and to every chosen concept.
  const e = exps[2];
  const res = Array.from(split.train, (i) => A.data[i * 3 + 2] - e.bias -
    e.concepts.reduce((s, c, t) => s + e.weights[t] * P.data[i * 12 + names.indexOf(c)], 0));
  assert.ok(Math.abs(res.reduce((a, b) => a + b, 0)) < 1e-6 * split.train.length);
  for (const c of e.concepts) {
    const dot = Array.from(split.train, (i, r) => res[r] * P.data[i * 12 + names.indexOf(c)]).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(dot) < 1e-6 * split.train.length, `residual · ${c} = ${dot}`);
  }
  // Same inputs, same explanations (SAGA too: it is seeded).
  assert.deepEqual(await explainNeurons(A, P, names, { split, layer: 'toy' }), exps);
});

test('greedy search keeps a concept only for a validation gain of at least the tolerance', () => {
  const { P, A } = toyProblem(1000);
  const split = seededSplit(1000, 4);
  const col = (ids: Int32Array) => Float64Array.from(ids, (i) => A.data[i * 3 + 2]);
  const ranking = Int32Array.from([5, 9, 1, 0, 2, 3, 4, 6, 7, 8, 10, 11]);
  const loose = greedySearch(P, col(split.train), col(split.val), split, ranking, { tolerance: 0 });
  const strict = greedySearch(P, col(split.train), col(split.val), split, ranking, { tolerance: 0.2 });
  assert.deepEqual(strict.concepts, [5]); // adding 9 gains less than 0.2
  assert.ok(loose.concepts.length >= 3 && loose.valCorrelation > strict.valCorrelation);
  const oneConcept = greedySearch(P, col(split.train), col(split.val), split, ranking, { maxLength: 1 });
  assert.deepEqual(oneConcept.concepts, [5]);
  // Activations of every sample, or of the wrong part, are refused by their length (they read NaN past y before).
  assert.throws(() => greedySearch(P, col(split.val), col(split.val), split, ranking),
    { code: 'ERR_SHAPE', message: `y: expected ${split.train.length} values (one per train sample), got ${split.val.length}` });
  assert.throws(() => greedySearch(P, col(split.train), col(split.train), split, ranking),
    { code: 'ERR_SHAPE', message: `yVal: expected ${split.val.length} values (one per val sample), got ${split.train.length}` });
});

test('bad input: constant activations, too few samples, wrong-length concept names', async () => {
  const { P, A, names } = toyProblem(200);
  const split = seededSplit(200, 1);
  const flat: Mat = { data: A.data.map((v, i) => (i % 3 === 1 ? 0.5 : v)), rows: 200, cols: 3 };
  await assert.rejects(explainNeurons(flat, P, names, { split }), /activations: unit 1 is constant \(std 0\)/);
  await assert.rejects(explainNeurons(A, P, names.slice(1), { split }), /concept names: expected 12 .* got 11/);
  // Names given in memory are named by entry (they said "line 6" of no file).
  await assert.rejects(explainNeurons(A, P, names.map((n, i) => (i === 5 ? names[2] : n)), { split }),
    { code: 'ERR_ARG', message: `concept names: entry 5 repeats '${names[2]}' of entry 2; names must be unique: rename one` });
  const tiny: Mat = { data: A.data.subarray(0, 15 * 3), rows: 15, cols: 3 };
  assert.throws(() => seededSplit(tiny.rows, 0), /15 samples are too few/);
  await assert.rejects(explainNeurons(A, { ...P, rows: 100, data: P.data.subarray(0, 1200) }, names, { split }),
    /concepts: expected 200 rows/);
});

/** A toy problem's A.npy, P.npy and cnames.txt in dir, and `le explain`'s le.csv with its recorded le.splits. */
async function leRun(dir: string): Promise<string[]> {
  const { P, A, names } = toyProblem(300);
  writeNpy(join(dir, 'A.npy'), A.data, [A.rows, A.cols]);
  writeNpy(join(dir, 'P.npy'), P.data, [P.rows, P.cols]);
  writeFileSync(join(dir, 'cnames.txt'), names.join('\n') + '\n');
  const inputs = ['--concepts', join(dir, 'P.npy'), '--concept-names', join(dir, 'cnames.txt'), '--activations', join(dir, 'A.npy')];
  await cliOk(['le', 'explain', ...inputs, '--out', join(dir, 'le.csv'), '--quiet']);
  return inputs;
}

test('le explain and simulate --json print their summaries: the score\'s mean, sem and n as the CSV holds them', async () => {
  const dir = tempDir(), inputs = await leRun(dir);
  const e = JSON.parse(await cliOk(['le', 'explain', ...inputs, '--out', join(dir, 'j.csv'), '--json']));
  const vals = readExplanationsCsv(join(dir, 'j.csv')).map((x) => x.valCorrelation), mean = vals.reduce((a, b) => a + b, 0) / vals.length;
  assert.deepEqual([e.metric, e.out, e.n], ['validation correlation', join(dir, 'j.csv'), vals.length]);
  assert.ok(Math.abs(e.mean - mean) < 1e-12 && e.sem > 0, JSON.stringify(e));
  const sim = JSON.parse(await cliOk(['le', 'simulate', '--explanations', join(dir, 'le.csv'), ...inputs, '--splits', join(dir, 'le.splits'), '--json']));
  assert.deepEqual([sim.metric, sim.out, sim.n], ['simulation correlation (test split)', null, vals.length]);
  assert.ok(sim.mean > 0.5 && sim.mean <= 1, JSON.stringify(sim));
});

test('split files with fractional or non-finite indices are refused, naming the file, the entry and the value', async () => {
  const dir = tempDir(), inputs = await leRun(dir);
  const split = (name: string, parts: Record<string, ArrayLike<number> | string>) => {
    mkdirSync(join(dir, name));
    for (const [p, ids] of Object.entries(parts))
      if (typeof ids === 'string') writeFileSync(join(dir, name, `${p}_ids.txt`), ids);
      else writeNpy(join(dir, name, `${p}_ids.npy`), Float64Array.from(ids), [ids.length]);
  };
  const range = (a: number, b: number, plus = 0) => Array.from({ length: b - a }, (_, i) => a + i + plus);
  split('frac', { train: range(0, 210), val: range(210, 240), test: range(240, 300, 0.7) });
  split('text', { train: range(0, 210), val: range(210, 240).join('\n') + '\n220.5\n', test: range(241, 300) });
  split('nan', { train: range(0, 210), val: [...range(210, 239), NaN], test: range(240, 300) });
  split('integral', { train: range(0, 210), val: range(210, 240), test: range(240, 300) });
  const cases: [string, RegExp][] = [
    ['frac', /frac\/test_ids\.npy: entry 0: expected an integer sample index in \[0, 300\), got 240\.7/],
    ['text', /text\/val_ids\.txt: entry 30: expected an integer sample index in \[0, 300\), got 220\.5/],
    ['nan', /nan\/val_ids\.npy: entry 29: expected an integer sample index in \[0, 300\), got NaN/],
  ];
  for (const [name, message] of cases) {
    const r = await runCli(['le', 'simulate', '--explanations', join(dir, 'le.csv'), ...inputs, '--splits', join(dir, name)]);
    assert.equal(r.code, 1, name);
    assert.match(r.stderr, message);
  }
  // Integral float64 indices were always read as integers, and still are.
  await cliOk(['le', 'simulate', '--explanations', join(dir, 'le.csv'), ...inputs, '--splits', join(dir, 'integral')]);
  // A duplicate across parts names both files.
  split('dup', { train: range(0, 210), val: range(209, 240), test: range(240, 300) });
  assert.throws(() => readSplit(join(dir, 'dup'), 300), /dup\/val_ids\.npy: entry 0: sample index 209 appears twice \(also in .*dup\/train_ids\.npy\)/);
});

test('--seed with --splits is a usage error: the seed would be ignored', async () => {
  const dir = tempDir(), inputs = await leRun(dir);
  for (const args of [['explain', ...inputs, '--out', join(dir, 'x.csv')], ['simulate', '--explanations', join(dir, 'le.csv'), ...inputs]]) {
    const r = await runCli(['le', ...args, '--splits', join(dir, 'le.splits'), '--seed', '3']);
    assert.equal(r.code, 2, args[0]);
    assert.match(r.stderr, /^error: --seed <n> would be ignored with --splits <dir>: give one or the other/);
  }
  assert.ok(!existsSync(join(dir, 'x.csv')));
});

test('le explain --moments fp32 writes the explanations the default writes; with --solver saga it is a usage error', async () => {
  const dir = tempDir(), inputs = await leRun(dir);
  await cliOk(['le', 'explain', ...inputs, '--out', join(dir, 'fp32.csv'), '--moments', 'fp32', '--quiet']);
  // Whichever arithmetic auto took for the moments, the rankings lead the greedy search to the same concepts.
  const names = (f: string) => readExplanationsCsv(join(dir, f)).map((e) => e.concepts.join('+'));
  assert.deepEqual(names('fp32.csv'), names('le.csv'));
  const r = await runCli(['le', 'explain', ...inputs, '--out', join(dir, 'saga.csv'), '--solver', 'saga', '--moments', 'fp32']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--moments would be ignored with --solver saga/);
  assert.ok(!existsSync(join(dir, 'saga.csv')));
});

test('`le show` reports mean ± sem of the val correlation and score columns', async () => {
  const path = join(tempDir(), 'le.csv');
  const e = (unit: number, val: number, sim: number): Explanation =>
    ({ unit, valCorrelation: val, concepts: ['a'], weights: [1], bias: 0, extra: { 'sim correlation': String(sim) } });
  writeExplanationsCsv(path, [e(0, 0.5, 0.1), e(1, 0.7, 0.3)]);
  const out = await cliOk(['le', 'show', '--explanations', path]);
  assert.match(out, /^val correlation: 0\.6000 ± 0\.1000 \(mean ± std\/√n over 2 neurons\)$/m);
  assert.match(out, /^sim correlation: 0\.2000 ± 0\.1000 /m);
});

// --------------------------------------------------------------- simulation

test('correlation scoring equals the Pearson correlation computed from the definition', () => {
  const { P, A, names } = toyProblem(500);
  const ids = seededSplit(500, 2).test;
  const e: Explanation = { unit: 0, valCorrelation: 0, concepts: ['concept 3'], weights: [2], bias: 0.1, extra: {} };
  const [score] = correlationScores([e], P, names, A, ids);
  const x = Array.from(ids, (i) => 2 * P.data[i * 12 + 3] + 0.1), y = Array.from(ids, (i) => A.data[i * 3]);
  const mx = x.reduce((a, b) => a + b) / x.length, my = y.reduce((a, b) => a + b) / y.length;
  const cov = x.reduce((s, v, i) => s + (v - mx) * (y[i] - my), 0);
  const ref = cov / Math.sqrt(x.reduce((s, v) => s + (v - mx) ** 2, 0) * y.reduce((s, v) => s + (v - my) ** 2, 0));
  assert.ok(Math.abs(score - ref) < 1e-12);
  assert.equal(pearson([1, 2, 3], [2, 4, 6]), 1);
  assert.throws(() => correlationScores([{ ...e, concepts: ['nope'] }], P, names, A, ids), /unit 0: concept 'nope' is not among/);
  const s = summarise([0.1, 0.2, 0.3, 0.4]);
  assert.ok(Math.abs(s.mean - 0.25) < 1e-15 && Math.abs(s.sem - Math.sqrt(0.05 / 3) / 2) < 1e-15);
});

test('ablation scoring: 1 for a perfect simulation, 0 for the mean, between for partial ones', () => {
  const { P, A, names } = toyProblem(600);
  const split = seededSplit(600, 5);
  const W: Mat = { data: Float32Array.from(randn(4 * 3, 31)), rows: 4, cols: 3 };
  const labels = Array.from({ length: 600 }, (_, i) => i % 4);
  // Make unit 1 exactly 3·concept 0, so its explanation simulates it perfectly.
  for (let i = 0; i < 600; i++) A.data[i * 3 + 1] = 3 * P.data[i * 12];
  const head = { W, b: new Float32Array([0.1, -0.2, 0.3, 0]) };
  const perfect: Explanation = { unit: 1, valCorrelation: 1, concepts: ['concept 0'], weights: [3], bias: 0, extra: {} };
  // Adam's steps have size ~lr whatever the gradient, so the fitted variant only stays near (c, d) = (1, 0).
  const [optim] = ablationScores([perfect], P, names, A, { head, labels, split, mode: 'optim' });
  assert.ok(optim > 0.99 && optim <= 1, `optim ${optim}`);
  // A constant simulation correlates 0 with the neuron, so 'norm' replaces it by its mean: exactly the baseline.
  const [none] = ablationScores([{ ...perfect, concepts: [], weights: [] }], P, names, A, { head, labels, split, mode: 'norm' });
  assert.equal(none, 0);
  const unrelated: Explanation = { ...perfect, unit: 0, concepts: ['concept 11'] };
  const partial: Explanation = { ...perfect, unit: 0, concepts: ['concept 3'], weights: [2] };
  const [u, pa] = ablationScores([unrelated, partial], P, names, A, { head, labels, split, mode: 'norm' });
  assert.ok(pa > 0.3 && pa < 1 && u < pa, `unrelated ${u}, partial ${pa}`);
  assert.throws(() => ablationScores([perfect], P, names, A, { head: { W, b: new Float32Array(3) }, labels, split }), /head bias: expected 4/);
});

// ---------------------------------------------------------------------- CSV

test("the reference CSVs load, and their own sim correlation columns average to the published means (0.3772, 0.2924)", (t) => {
  if (!hasAssets()) return t.skip('assets absent (set CONCEPTLENS_ASSETS)');
  const dir = join(assetsDir()!, 'reference', 'le');
  for (const [file, want] of [['le_siglip_resnet50_imagenet_layer4.csv', 0.3772], ['le_label_resnet50_imagenet_layer4.csv', 0.2924]] as const) {
    const exps = readExplanationsCsv(join(dir, file));
    assert.equal(exps.length, 2048);
    assert.deepEqual(exps.map((e) => e.unit), Array.from({ length: 2048 }, (_, i) => i));
    const s = summarise(exps.map((e) => Number(e.extra['sim correlation'])));
    assert.equal(s.mean.toFixed(4), want.toFixed(4), file);
    assert.ok(exps.every((e) => e.concepts.length >= 1 && e.concepts.length <= 10));
  }
  const first = readExplanationsCsv(join(dir, 'le_label_resnet50_imagenet_layer4.csv'))[0];
  assert.deepEqual(first.concepts, ['toiletry', 'wolfhound', 'shaker', 'terrier', 'instrumentality']);
  assert.equal(formatExplanation(first), '0.73·toiletry + 0.73·wolfhound + 0.70·shaker + 0.30·terrier + 0.15·instrumentality + 0.32');
});

test('CSV round trip keeps every field, including quoted names and score columns', () => {
  const exps: Explanation[] = [
    { unit: 0, layer: 'fire22', valCorrelation: 0.5, concepts: ['dog, large', 'say "hi"'], weights: [1.5, -0.25], bias: 0.125, extra: { 'sim correlation': '0.4' } },
    { unit: 1, layer: 'fire22', valCorrelation: 0, concepts: [], weights: [], bias: 0.5, extra: { 'sim correlation': '0.1' } },
  ];
  const path = join(tempDir(), 'le.csv');
  writeExplanationsCsv(path, exps);
  assert.deepEqual(readExplanationsCsv(path), exps);
  const header = readFileSync(path, 'utf8').split('\n')[0];
  assert.ok(header.startsWith('layer,unit,val correlation,weight0,concept0,') && header.endsWith('weight9,concept9,bias,sim correlation'));
});

test('LE(CLIP) concept matrix: engine cosines equal float64, `le concepts` calibrates on labels and filters', async () => {
  const { conceptCosines } = await import('../ts/methods/le/index.js');
  const { writeNpy } = await import('../ts/io/npy.js');
  const d = 16, classes = 3, extra = 5, n = 60;
  const text = randn((classes + extra) * d, 21);
  const labels = Int32Array.from({ length: n }, (_, i) => i % classes);
  const images = randn(n * d, 22, 0.3);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) images[i * d + j] += text[labels[i] * d + j];
  const cos = await conceptCosines({ data: images, rows: n, cols: d }, { data: text, rows: classes + extra, cols: d });
  for (let i = 0; i < n; i += 7)
    for (let k = 0; k < classes + extra; k++) {
      let dot = 0, a = 0, b = 0;
      for (let j = 0; j < d; j++) (dot += images[i * d + j] * text[k * d + j]), (a += images[i * d + j] ** 2), (b += text[k * d + j] ** 2);
      assert.ok(Math.abs(cos.data[i * cos.cols + k] - dot / Math.sqrt(a * b)) < 1e-5);
    }
  const dir = tempDir();
  const names = Array.from({ length: classes + extra }, (_, k) => `concept_${k}`);
  writeNpy(join(dir, 'E.npy'), images, [n, d]);
  writeNpy(join(dir, 'T.npy'), text, [classes + extra, d]);
  writeNpy(join(dir, 'Y.npy'), labels, [n]);
  writeFileSync(join(dir, 'names.txt'), names.join('\n') + '\n');
  await cliOk(['le', 'concepts', '--embeddings', join(dir, 'E.npy'), '--text', join(dir, 'T.npy'), '--names', join(dir, 'names.txt'),
    '--out', join(dir, 'P.npy'), '--names-out', join(dir, 'kept.txt'), '--calibrate-labels', join(dir, 'Y.npy'), '--class-concepts', 'concept_0,concept_1,concept_2']);
  const P = readNpy(join(dir, 'P.npy'));
  const kept = readFileSync(join(dir, 'kept.txt'), 'utf8').trim().split('\n');
  assert.equal(P.shape[0], n);
  assert.equal(P.shape[1], kept.length);
  for (const c of ['concept_0', 'concept_1', 'concept_2']) assert.ok(kept.includes(c), `${c} survives the filter`);
  // Calibrated probabilities separate each class concept's own images from the rest.
  const k0 = kept.indexOf('concept_0');
  const own: number[] = [], other: number[] = [];
  for (let i = 0; i < n; i++) (labels[i] === 0 ? own : other).push((P.data as Float32Array)[i * P.shape[1] + k0]);
  const avg = (x: number[]) => x.reduce((s, v) => s + v, 0) / x.length;
  assert.ok(avg(own) > 0.5 && avg(own) > avg(other) + 0.3, `own ${avg(own)} vs other ${avg(other)}`);
  // A shift past every cosine keeps no concept: refused, pointing to calibration, and nothing is written.
  const none = await runCli(['le', 'concepts', '--embeddings', join(dir, 'E.npy'), '--text', join(dir, 'T.npy'), '--names', join(dir, 'names.txt'),
    '--out', join(dir, 'P0.npy'), '--names-out', join(dir, 'kept0.txt'), '--b', '-0.999']);
  assert.equal(none.code, 1, none.stderr);
  assert.match(none.stderr, /--a, --b: no concept has a top-5 mean probability >= 0\.5 at a = 60, b = -0\.999 \(the largest cosine is 0\.\d+\); fit \(a, b\) .* --calibrate-labels/);
  assert.ok(!existsSync(join(dir, 'P0.npy')) && !existsSync(join(dir, 'kept0.txt')));
});

test('an explanation prints terms that round to zero without a sign', () => {
  const e = { unit: 0, valCorrelation: 0.5, concepts: ['a', 'b'], weights: [1.5, -0.001], bias: -0.004, extra: {} };
  assert.equal(formatExplanation(e), '1.50·a + 0.00·b + 0.00');
  assert.equal(formatExplanation({ ...e, bias: -0.25 }), '1.50·a + 0.00·b - 0.25');
});

// ------------------------------------------------------- bad input, named

/** What a ConceptLensError must carry: its code and a message matching `message`. */
const refused = (code: string, message: RegExp) => ({ name: 'ConceptLensError', code, message });

test('pearson refuses unequal lengths and non-finite values instead of answering 0', () => {
  assert.throws(() => pearson([1, 2, 3], [1, 2]), refused('ERR_SHAPE', /^y: expected 3 values \(as x\), got 2$/));
  assert.throws(() => pearson([1, NaN, 3], [1, 2, 3]), refused('ERR_NAN', /^x, column 1 is NaN; expected finite values$/));
  assert.throws(() => pearson([1, 2, 3], [1, 2, Infinity]), refused('ERR_NAN', /^y, column 2 is Infinity/));
  assert.equal(pearson([1, 1, 1], [1, 2, 3]), 0); // constant: no correlation, as documented
  assert.equal(pearson([], []), 0);
});

test('sigmoidConcepts checks that cos holds rows × cols finite values and that a and b are finite', () => {
  const cos = (data: number[], rows: number, cols: number): Mat => ({ data: Float32Array.from(data), rows, cols });
  assert.throws(() => sigmoidConcepts(cos([0.1, 0.2, 0.3], 1, 2), 1, 0), refused('ERR_SHAPE', /^cos: expected 1 × 2 = 2 values, got 3$/));
  assert.throws(() => sigmoidConcepts(cos([0.1, NaN], 1, 2), 1, 0), refused('ERR_NAN', /^cos: row 0, column 1 is NaN/));
  assert.throws(() => sigmoidConcepts(cos([0.1, 0.2], 1, 2), NaN, 0), refused('ERR_ARG', /^a: expected a finite number, got NaN$/));
  assert.throws(() => sigmoidConcepts(cos([0.1, 0.2], 1, 2), 1, -Infinity), refused('ERR_ARG', /^b: expected a finite number, got -Infinity$/));
  assert.throws(() => calibrateSigmoid(cos([0.1, 0.2, 0.3], 1, 2), cos([1, 0], 1, 2)), refused('ERR_SHAPE', /^cos: expected 1 × 2/));
  assert.throws(() => calibrateSigmoid(cos([0.1, 0.2], 1, 2), cos([1, NaN], 1, 2)), refused('ERR_NAN', /^targets: row 0, column 1 is NaN/));
  const p = sigmoidConcepts(cos([0.1, 0.2], 1, 2), 10, -0.1);
  assert.deepEqual(Array.from(p.data), [0.5, Math.fround(1 / (1 + Math.exp(-1)))]);
});

test('standardisedRows refuses a row id outside the matrix instead of standardising it to zeros', () => {
  const M: Mat = { data: Float32Array.from([1, 2, 3, 4, 5, 6]), rows: 3, cols: 2 };
  assert.throws(() => standardisedRows(M, Int32Array.from([0, 7])), refused('ERR_SHAPE', /^M: row 7 is beyond its 3 rows$/));
  assert.throws(() => standardisedRows(M, Int32Array.from([-1, 0])), refused('ERR_SHAPE', /row -1 is beyond/));
  assert.throws(() => standardisedRows(M, [0, 1.5] as unknown as Int32Array), refused('ERR_DTYPE', /^ids: expected Int32Array, got an array of 2$/));
  const s = Math.fround(Math.SQRT1_2); // rows 2 and 0: each column is ±1 std from its mean, ±√½ after standardising
  assert.deepEqual(Array.from(standardisedRows(M, Int32Array.from([2, 0])).data), [s, s, -s, -s]);
});

test('seeds outside 0..2^31-1 are refused by seededSplit and by the elastic net (explainNeurons passes its seed on)', async () => {
  for (const seed of [-1, 1.5, NaN, 2 ** 31])
    assert.throws(() => seededSplit(100, seed), refused('ERR_ARG', new RegExp(`^seed: expected an integer in 0\\.\\.2147483647, got ${seed}$`)));
  assert.deepEqual(seededSplit(100, 2 ** 31 - 1), seededSplit(100, 2 ** 31 - 1));
  assert.throws(() => seededSplit(100.5, 0), refused('ERR_ARG', /^n: expected an integer number of samples, got 100\.5$/));
  const X: Mat = { data: Float32Array.from(randn(40, 3)), rows: 20, cols: 2 };
  await assert.rejects(async () => fitElasticNet(X, X, { solver: 'saga', seed: -1 }), refused('ERR_ARG', /^seed: expected an integer in 0\.\.2147483647, got -1$/));
  const { P, A, names } = toyProblem(200);
  await assert.rejects(explainNeurons(A, P, names, { split: seededSplit(200, 1), solver: 'saga', seed: 2 ** 31 }), refused('ERR_ARG', /^seed: /));
});

test('explainNeurons without a split names the missing option; a split missing a part names the part', async () => {
  const { P, A, names } = toyProblem(200);
  await assert.rejects(explainNeurons(A, P, names, {} as never), refused('ERR_ARG', /^options\.split: expected the train\/val\/test split, e\.g\. seededSplit\(A\.rows, seed\), got undefined$/));
  await assert.rejects(explainNeurons(A, P, names, undefined as never), refused('ERR_ARG', /^options\.split: /));
  const { train, val } = seededSplit(200, 1);
  await assert.rejects(explainNeurons(A, P, names, { split: { train, val } as never }), refused('ERR_ARG', /^split test: expected an array of sample indices, got undefined$/));
  await assert.rejects(explainNeurons(A, P, names, { split: seededSplit(200, 1), maxLength: 1.5 }), refused('ERR_ARG', /^maxLength: expected an integer >= 1, got 1\.5$/));
  await assert.rejects(explainNeurons(A, { ...P, data: P.data.subarray(1) }, names, { split: seededSplit(200, 1) }),
    refused('ERR_SHAPE', /^concepts: expected 200 × 12 = 2400 values, got 2399$/));
});

test('scoring refuses sample ids outside the activations and a missing head', () => {
  const { P, A, names } = toyProblem(300);
  const e: Explanation = { unit: 0, valCorrelation: 0, concepts: ['concept 3'], weights: [2], bias: 0, extra: {} };
  assert.throws(() => correlationScores([e], P, names, A, Int32Array.from([0, 1, 300])),
    refused('ERR_ARG', /^ids: entry 2: expected an integer sample index in \[0, 300\), got 300$/));
  for (const ids of [[], [4]]) assert.throws(() => correlationScores([e], P, names, A, Int32Array.from(ids)),
    refused('ERR_ARG', new RegExp(`^ids: expected at least 2 sample indices to correlate over, got ${ids.length}$`)));
  const split = seededSplit(300, 2), bad = { ...split, test: Int32Array.from([...split.test.subarray(1), 999]) };
  const head = { W: { data: new Float32Array(2 * 3), rows: 2, cols: 3 }, b: new Float32Array(2) }, labels = new Int32Array(300);
  assert.throws(() => ablationScores([e], P, names, A, { head, labels, split: bad }), refused('ERR_ARG', /^split test: entry \d+: .* got 999$/));
  assert.throws(() => ablationScores([e], P, names, A, { labels, split } as never), refused('ERR_ARG', /^options\.head: expected a linear head/));
});
