// SpLiCE: solvers against an independent float64 coordinate descent written
// from the objective ‖Cᵀw − z‖² + λ‖w‖₁ (w ≥ 0), the method around them
// against its definitions, and bad input.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { readNpy } from '../ts/io/npy.js';
import { randn } from '../ts/random.js';
import { buildDictionary, quality, readVocabulary, solveSplice, splicePath, SpliceModel, type SpliceSolverName } from '../ts/methods/splice.js';
import { normaliseRows, toFloat32 } from '../ts/matrix.js';

const ASSETS = resolve(process.env.CONCEPTLENS_ASSETS ?? join(process.cwd(), '..', 'shared', 'assets'));
const DETIC = join(ASSETS, 'embeddings', 'detic');
const DETIC_SETS = ['lvis_v1_clip_a+cname.npy', 'coco_clip_a+cname.npy', 'o365_clip_a+cnamefix.npy', 'oid_clip_a+cname.npy'];

const normals = (n: number, seed: number) => randn(n, seed);

const unitRows = (x: Float32Array, d: number) => normaliseRows(x, d);

/** n normalised mixtures of k dictionary rows (weights in [0.2, 1]) plus noise. */
function plant(C: Float32Array, d: number, n: number, k: number, noise: number, seed: number): Float32Array {
  const c = C.length / d, z = new Float32Array(n * d), r = normals(n * (d + 2 * k), seed);
  let q = 0;
  for (let i = 0; i < n; i++) {
    for (let a = 0; a < k; a++) {
      const j = Math.floor(Math.abs(r[q++] * 7919) % c), w = 0.2 + 0.8 * (Math.abs(r[q++]) % 1);
      for (let t = 0; t < d; t++) z[i * d + t] += w * C[j * d + t];
    }
    for (let t = 0; t < d; t++) z[i * d + t] += noise * r[q++];
  }
  return unitRows(z, d);
}

/** Objective of fp32 weights, in float64. */
function objective(C: Float32Array, z: Float32Array, w: ArrayLike<number>, d: number, l1: number): number {
  const r = Float64Array.from(z);
  let sum = 0;
  for (let j = 0; j < w.length; j++) {
    if (w[j] === 0) continue;
    sum += w[j];
    for (let t = 0; t < d; t++) r[t] -= w[j] * C[j * d + t];
  }
  return r.reduce((a, x) => a + x * x, 0) + l1 * sum;
}

/** Cyclic coordinate descent on the residual: full sweeps, then sweeps over the non-zeros, until nothing moves by 1e-14. */
function coordinateDescent(C: Float32Array, z: Float32Array, d: number, l1: number): Float64Array {
  const c = C.length / d, w = new Float64Array(c), r = Float64Array.from(z), n2 = new Float64Array(c);
  for (let j = 0; j < c; j++) for (let t = 0; t < d; t++) n2[j] += C[j * d + t] ** 2;
  const update = (j: number): number => {
    let g = 0;
    for (let t = 0; t < d; t++) g += C[j * d + t] * r[t];
    const nw = Math.max(0, w[j] + (g - l1 / 2) / n2[j]), delta = nw - w[j];
    if (delta !== 0) for (let t = 0; t < d; t++) r[t] -= delta * C[j * d + t];
    w[j] = nw;
    return Math.abs(delta) * Math.sqrt(n2[j]);
  };
  for (let outer = 0; outer < 1000; outer++) {
    let moved = 0;
    for (let j = 0; j < c; j++) moved = Math.max(moved, update(j));
    if (moved < 1e-14) break;
    for (let inner = 0; inner < 200000; inner++) {
      let m = 0;
      for (let j = 0; j < c; j++) if (w[j] > 0) m = Math.max(m, update(j));
      if (m < 1e-14) break;
    }
  }
  return w;
}

async function expectParity(C: Float32Array, Z: Float32Array, d: number, l1: number, solvers: SpliceSolverName[]) {
  const n = Z.length / d, c = C.length / d;
  const ref = Array.from({ length: n }, (_, i) => coordinateDescent(C, Z.subarray(i * d, (i + 1) * d), d, l1));
  const refMean = ref.reduce((a, w, i) => a + objective(C, Z.subarray(i * d, (i + 1) * d), Float32Array.from(w), d, l1), 0) / n;
  for (const solver of solvers) {
    const dec = await solveSplice(C, Z, d, { l1, solver });
    let mean = 0;
    for (let i = 0; i < n; i++) {
      const w = dec.weights.subarray(i * c, (i + 1) * c), obj = objective(C, Z.subarray(i * d, (i + 1) * d), w, d, l1);
      assert.ok(Math.abs(dec.objective[i] - obj) <= 1e-9 * obj, `${solver}: reported objective ${dec.objective[i]} vs ${obj}`);
      assert.ok(dec.gap[i] >= 0);
      mean += obj / n;
      for (let j = 0; j < c; j++)
        assert.ok(!(w[j] > 1e-4 && ref[i][j] === 0) && !(ref[i][j] > 1e-4 && w[j] === 0),
          `${solver}: support differs at sample ${i}, concept ${j}: ${w[j]} vs ${ref[i][j]}`);
    }
    assert.ok(Math.abs(mean - refMean) <= 1e-6 * refMean, `${solver}: mean objective ${mean} vs coordinate descent ${refMean}`);
  }
}

test('every solver matches coordinate descent on a random dictionary', async () => {
  const d = 48, C = unitRows(normals(300 * d, 1), d), Z = plant(C, d, 10, 5, 0.05, 2);
  await expectParity(C, Z, d, 0.1, ['auto', 'ws', 'fista', 'admm']);
});

test('ws and auto match coordinate descent on real CLIP text embeddings (detic, all four sets, centred)', async (t: TestContext) => {
  if (!DETIC_SETS.every((f) => existsSync(join(DETIC, f)))) return t.skip(`detic embeddings not found in ${DETIC}; set CONCEPTLENS_ASSETS`);
  const parts = DETIC_SETS.map((f) => toFloat32(readNpy(join(DETIC, f)).data as Uint16Array));
  const raw = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) raw.set(p, o), (o += p.length);
  const d = 512, C = buildDictionary(raw, d);
  assert.equal(C.length / d, 1203 + 80 + 365 + 500);
  await expectParity(C, plant(C, d, 3, 5, 0.02, 3), d, 0.25, ['auto', 'ws']);
});

test('the dictionary and centring follow the definitions', () => {
  const d = 6, raw = normals(5 * d, 4).map((x) => 3 * x), C = buildDictionary(raw, d);
  const unit = unitRows(Float32Array.from(raw), d), mean = new Float64Array(d);
  for (let k = 0; k < unit.length; k++) mean[k % d] += unit[k] / 5;
  for (let j = 0; j < 5; j++) {
    const v = Array.from({ length: d }, (_, t) => unit[j * d + t] - mean[t]), n = Math.hypot(...v);
    for (let t = 0; t < d; t++) assert.ok(Math.abs(C[j * d + t] - v[t] / n) < 1e-6);
  }
});

test('recompose, encode and intervene follow SpLiCE', async () => {
  const d = 16, c = 40, names = Array.from({ length: c }, (_, j) => `concept${j}`);
  const mu = normals(d, 5).map((x) => 0.1 * x), model = SpliceModel.fromEmbeddings(names, normals(c * d, 6), d, mu, { l1: 0.05 });
  const emb = normals(4 * d, 7);
  const enc = await model.encode(emb);
  for (let i = 0; i < 4; i++) {
    const w = enc.weights.subarray(i * c, (i + 1) * c);
    // ẑ = normalise(normalise(wC) + μ), cosine against normalise(e)
    const mix = new Float64Array(d);
    for (let j = 0; j < c; j++) for (let t = 0; t < d; t++) mix[t] += w[j] * model.dictionary[j * d + t];
    const mn = Math.hypot(...mix), rec = Array.from(mix, (x, t) => x / mn + mu[t]), rn = Math.hypot(...rec);
    const e = Array.from(emb.subarray(i * d, (i + 1) * d)), en = Math.hypot(...e);
    let cos = 0;
    for (let t = 0; t < d; t++) {
      assert.ok(Math.abs(enc.recon[i * d + t] - rec[t] / rn) < 1e-5);
      cos += (rec[t] / rn) * (e[t] / en);
    }
    assert.ok(Math.abs(enc.cosine[i] - cos) < 1e-5);
    assert.equal(enc.l0[i], Array.from(w).filter((x) => x > 0).length);
  }
  const top = model.topConcepts(enc.weights.subarray(0, c), 3);
  assert.ok(top.length > 0 && top.every((x, k) => k === 0 || top[k - 1].weight >= x.weight));
  const cut = model.intervene(enc.weights, [top[0].concept]);
  for (let i = 0; i < 4; i++) assert.equal(cut.weights[i * c + top[0].index], 0);
  assert.deepEqual(Array.from(cut.weights.subarray(0, c)).filter((_, j) => j !== top[0].index),
    Array.from(enc.weights.subarray(0, c)).filter((_, j) => j !== top[0].index));
  const classes = await model.decomposeClasses(emb, [1, 0, 1, 0]);
  for (let j = 0; j < c; j++)
    assert.ok(Math.abs(classes.get(1)![j] - (enc.weights[j] + enc.weights[2 * c + j]) / 2) < 1e-6);
});

test('the λ path reaches the target mean l0', async () => {
  const d = 48, C = unitRows(normals(400 * d, 8), d), Z = plant(C, d, 12, 8, 0.05, 9);
  const r = await splicePath(C, Z, d, 6);
  let nnz = 0;
  for (const w of r.weights) nnz += w > 0 ? 1 : 0;
  assert.ok(Math.abs(nnz / 12 - 6) <= 0.5, `mean l0 ${nnz / 12} at λ = ${r.l1}`);
  const again = await solveSplice(C, Z, d, { l1: r.l1 });
  assert.ok(Math.abs(again.objective.reduce((a, b) => a + b) / 12 - r.points.find((p) => p.l1 === r.l1)!.meanObjective) < 1e-9);
  assert.equal(r.reached, true);
  // Out of steps short of the target: the closest λ, said so.
  const short = await splicePath(C, Z, d, 6, { maxSteps: 1 });
  assert.equal(short.points.length, 1);
  assert.equal(short.reached, Math.abs(short.points[0].meanL0 - 6) <= 0.5);
  assert.equal(short.reached, false, `one step landed on mean l0 ${short.points[0].meanL0}`);
  // quality() of the path's weights: one target row per weight row, or an error.
  const q = quality(r.weights, C, d, Z);
  assert.equal(q.cosine.length, 12);
  assert.throws(() => quality(r.weights, C, d, Z.subarray(0, d)), { code: 'ERR_SHAPE', message: /^targets: expected 12×48 = 576 values \(one row per row of weights\), got 48$/ });
  // No λ keeps more than d of the 400 concepts.
  await assert.rejects(splicePath(C, Z, d, 49), { code: 'ERR_ARG', message: /targetL0: expected a number in \(0, 48\] \(a decomposition of 48-dimensional embeddings over 400 concepts keeps at most 48\), got 49/ });
});

test('bad input gets clear errors', async () => {
  const d = 8, C = unitRows(normals(20 * d, 10), d), Z = plant(C, d, 2, 2, 0.1, 11);
  await assert.rejects(solveSplice(C, Z, d, { l1: -0.1 }), /l1: expected a finite λ ≥ 0, got -0.1/);
  await assert.rejects(solveSplice(C, Z.subarray(0, 14), 7, { l1: 0.1 }), /dictionary: 160 values are not a whole number of rows of width 7/);
  await assert.rejects(solveSplice(C, new Float32Array(12), d, { l1: 0.1 }), /samples: 12 values are not a whole number of rows of width 8/);
  const nan = Float32Array.from(Z);
  nan[5] = NaN;
  await assert.rejects(solveSplice(C, nan, d, { l1: 0.1 }), /samples/);
  await assert.rejects(solveSplice(C, Z, d, { l1: 0.1, solver: 'newton' as SpliceSolverName }), /solver: expected 'auto', 'fista', 'admm' or 'ws', got 'newton'/);
  const names = Array.from({ length: 20 }, (_, j) => `c${j}`);
  assert.throws(() => SpliceModel.fromEmbeddings(names, C, d, new Float32Array(7)),
    /imageMean: expected 8 values \(the embedding dimension\), got 7/);
  // A model's solve options are checked when it is made (as a solve checks them), a string shown quoted.
  for (const [solve, message] of [[{ l1: '0.25' }, /options\.l1: expected a number, got '0\.25'/], [{ l1: -1 }, /l1: expected a finite λ ≥ 0, got -1$/],
    [{ l1: 0.1, tol: 0 }, /tol: expected a finite tolerance > 0, got 0$/], [{ l1: 0.1, solver: 'newton' }, /solver: expected 'auto'/]] as const)
    assert.throws(() => SpliceModel.fromEmbeddings(names, C, d, new Float32Array(d).fill(0.1), solve as never), message);
  const dir = mkdtempSync(join(tmpdir(), 'splice-'));
  writeFileSync(join(dir, 'empty.txt'), 'rare\n\ncommon\n');
  assert.throws(() => readVocabulary(join(dir, 'empty.txt'), 3), /line 2 is empty/);
  writeFileSync(join(dir, 'dup.txt'), 'a\nb, b2\nc\nb\n');
  assert.throws(() => readVocabulary(join(dir, 'dup.txt')), /line 4 repeats concept 'b' of line 2/);
  assert.deepEqual(readVocabulary(join(dir, 'dup.txt'), 2), ['c', 'b']);
});

test('the mscoco vocabulary has an empty line within its last 10,000 (named in the error)', (t: TestContext) => {
  const path = join(ASSETS, 'vocab', 'splice_mscoco.txt');
  if (!existsSync(path)) return t.skip(`${path} not found; set CONCEPTLENS_ASSETS`);
  assert.throws(() => readVocabulary(path, 10000), /splice_mscoco\.txt: line \d+ is empty/);
});

test('a solve reports progress and stops on abort', async () => {
  const d = 64, C = unitRows(normals(2000 * d, 12), d), Z = plant(C, d, 64, 8, 0.05, 13);
  let ticks = 0;
  await solveSplice(C, Z, d, { l1: 0.1, onProgress: (done, total) => { ticks++; assert.ok(done <= total && total === 64); } });
  assert.ok(ticks > 0);
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 20);
  // FISTA with an unreachable tolerance ticks only when its block of samples ends, which takes minutes here.
  await assert.rejects(solveSplice(C, Z, d, { l1: 0.1, solver: 'fista', tol: 1e-300, maxIter: 1e9, signal: ac.signal }),
    (e: Error) => e.name === 'AbortError');
});

test('a concept name that names two rows cannot be looked up: intervene would remove only the first', () => {
  const d = 8, names = ['cat', 'dog', 'bird', 'dog'];
  const model = SpliceModel.fromEmbeddings(names, normals(4 * d, 12), d, new Float32Array(d));
  const w = Float32Array.from([0.1, 0.2, 0.3, 0.4]);
  assert.throws(() => model.intervene(w, ['dog']),
    { name: 'ConceptLensError', code: 'ERR_ARG', message: /^concept: 'dog' names rows 1 and 3; a name looked up must be unique/ });
  assert.throws(() => model.indexOf('dog'), /names rows 1 and 3/);
  // Indices and unique names still work.
  assert.deepEqual(Array.from(model.intervene(w, [3, 'cat']).weights), [0, 0.2, 0.3, 0].map(Math.fround));
  assert.equal(model.indexOf('bird'), 2);
});

test('topConcepts takes a count k that is an integer >= 0', () => {
  const d = 8, model = SpliceModel.fromEmbeddings(['a', 'b', 'c'], normals(3 * d, 13), d, new Float32Array(d));
  const w = Float32Array.from([0.5, 0, 0.7]);
  for (const k of [-1, 1.5, NaN, Infinity])
    assert.throws(() => model.topConcepts(w, k), { name: 'ConceptLensError', code: 'ERR_ARG', message: new RegExp(`^k: expected an integer >= 0 \\(concepts to list\\), got ${k}$`) });
  assert.deepEqual(model.topConcepts(w, 0), []);
  assert.deepEqual(model.topConcepts(w, 1).map((t) => t.concept), ['c']);
  assert.deepEqual(model.topConcepts(w).map((t) => t.concept), ['c', 'a']);
});
