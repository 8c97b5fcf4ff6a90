import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { engineInfo } from '../ts/engine/info.js';
import { readNpy, writeNpy } from '../ts/io/npy.js';
import { floatsToHalves } from '../ts/engine/fp16.js';
import { createTrainer, loadTrainer, nameConcepts, readAtoms, trainSae, conceptStrengths } from '../ts/methods/sae.js';
import { gaussian, plantedMixtures, rng } from '../ts/random.js';
import { accuracy, contributions, coverage, coveragePosition, globalExplanations, predict, toSparse, trainProbe, weightSparsity } from '../ts/methods/cbm.js';

const D = 24, ATOMS = 16;

/** Items = 1-2 planted unit atoms with positive weights + small noise. */
function planted(rows: number, seed: number) {
  const { dict, x, labels } = plantedMixtures(rows, D, ATOMS, seed);
  return { dict, x, label: labels };
}

test('planted data over a given dictionary: each item is a positive multiple of one of its rows (no noise), a short one is refused', () => {
  const dictionary = plantedMixtures(1, D, ATOMS, 9).dict;
  const { x, dict } = plantedMixtures(50, D, ATOMS, 3, { dictionary, noise: 0, active: [1, 1], weight: [0.5, 1.5] });
  assert.equal(dict, dictionary);
  for (let i = 0; i < 50; i++) {
    const best = Math.max(...Array.from({ length: ATOMS }, (_, j) => cos(x, i, dictionary, j)));
    assert.ok(best > 1 - 1e-6, `item ${i}: best cosine ${best}`);
  }
  assert.throws(() => plantedMixtures(5, D, ATOMS, 1, { dictionary: dictionary.subarray(D) }), /dictionary: expected 16 × 24 = 384 values, got 360/);
});

function withDir(fn: (dir: string) => Promise<void>) {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sae-test-'));
    try {
      await fn(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

const cos = (a: Float32Array, i: number, b: Float32Array, j: number) => {
  let ab = 0, aa = 0, bb = 0;
  for (let c = 0; c < D; c++) {
    ab += a[i * D + c] * b[j * D + c];
    aa += a[i * D + c] ** 2;
    bb += b[j * D + c] ** 2;
  }
  return ab / Math.sqrt(aa * bb);
};

test('training reduces the loss and recovers the planted dictionary', withDir(async (dir) => {
  const { dict, x } = planted(4096, 1);
  const features = join(dir, 'x.npy');
  writeNpy(features, x, [4096, D]);
  const meta = await trainSae({ features, out: dir, expansion: 4, l1: 2e-2, lr: 1e-2, batch: 256, epochs: 25, resampleEvery: 5, seed: 3 });
  const first = meta.history[0], last = meta.history.at(-1)!;
  assert.ok(last.loss < 0.5 * first.loss, `loss ${first.loss} -> ${last.loss}`);
  assert.ok(last.fvu < 0.05, `fvu ${last.fvu}`);
  assert.ok(meta.history.some((h) => h.resampled > 0), 'dead latents were resampled');
  assert.equal(meta.history.filter((h) => h.resampled > 0).every((h) => h.epoch % 5 === 0), true);
  const { atoms, m, d } = readAtoms(dir);
  assert.equal(d, D);
  assert.equal(m, 4 * D);
  let recovered = 0;
  for (let a = 0; a < ATOMS; a++) {
    let best = -1;
    for (let j = 0; j < m; j++) best = Math.max(best, cos(dict, a, atoms, j));
    if (best > 0.98) recovered++;
  }
  assert.equal(recovered, ATOMS, `recovered ${recovered} of ${ATOMS} planted atoms`);
  const dec = readNpy(join(dir, 'decoder.npy'));
  assert.deepEqual(dec.shape, [D, 4 * D]);
  for (let j = 0; j < 4 * D; j++) {
    let nn = 0;
    for (let c = 0; c < D; c++) nn += (dec.data as Float32Array)[c * 4 * D + j] ** 2;
    assert.ok(Math.abs(nn - 1) < 1e-5, `column ${j} norm² ${nn}`);
  }
  assert.deepEqual(readNpy(join(dir, 'encoder.npy')).shape, [4 * D, D]);
}));

test('checkpoint round trip, resume, and shape-mismatch refusal', withDir(async (dir) => {
  const { x } = planted(1024, 2);
  const features = join(dir, 'x.npy');
  writeNpy(features, x, [1024, D]);
  const a = await trainSae({ features, out: dir, expansion: 2, batch: 128, epochs: 2, seed: 1 });
  const t = loadTrainer(dir);
  assert.equal(t.steps, a.steps);
  assert.deepEqual(Array.from(t.params().decoder.slice(0, 50)), Array.from(readAtoms(dir).atoms.slice(0, 50)));
  const b = await trainSae({ features, out: dir, expansion: 2, batch: 128, epochs: 3, seed: 1, resume: true });
  assert.equal(b.epochsDone, 3);
  assert.equal(b.steps, a.steps + 8);
  assert.equal(b.history.length, 3);
  const wrong = createTrainer({ d: D, m: 3 * D });
  assert.throws(() => wrong.load(join(dir, 'sae.ckpt')), /shape d=24, m=48 .* differs from the trainer's d=24, m=72/);
}));

test('a NaN feature stops training naming the file, the step and the file row', withDir(async (dir) => {
  const { x } = planted(512, 3);
  x[300 * D + 5] = NaN;
  const features = join(dir, 'x.npy');
  writeNpy(features, x, [512, D]);
  await assert.rejects(trainSae({ features, out: dir, expansion: 2, batch: 64, epochs: 1 }),
    { code: 'ERR_NAN', message: /^.*x\.npy: sae step \d+: feature item 300 column 5 is NaN/ });
}));

test('fp16 features train like fp32 ones', async () => {
  const { x } = planted(256, 4);
  const t32 = createTrainer({ d: D, m: 2 * D, seed: 5 }), t16 = createTrainer({ d: D, m: 2 * D, seed: 5 });
  for (let i = 0; i < x.length; i++) x[i] = Math.round(x[i] * 64) / 64;  // exact in fp16
  const half = floatsToHalves(x);
  const s32 = await t32.step(x, 256, null), s16 = await t16.step(half, 256, null);
  assert.ok(Math.abs(s32.loss - s16.loss) <= 1e-6 * s32.loss, `${s32.loss} vs ${s16.loss}`);
});

test('a step says whether TopK screened in int16: where the CPU has AVX512-VNNI (as int8 screening), TopK only', async () => {
  const { x } = planted(256, 6);
  const vnni = engineInfo().screening.includes('int8');
  for (const kind of ['relu-l1', 'topk', 'batchtopk'] as const) {
    const s = await createTrainer({ d: D, m: 2 * D, kind, k: 4, seed: 5 }).step(x, 256, null);
    assert.equal(s.screened, kind === 'topk' && vnni, kind);
  }
});

test('naming picks the vocabulary entry of highest cosine per atom (brute force)', withDir(async (dir) => {
  const { x } = planted(1024, 5);
  const features = join(dir, 'x.npy');
  writeNpy(features, x, [1024, D]);
  await trainSae({ features, out: dir, expansion: 2, batch: 128, epochs: 2 });
  const rand = rng(9);
  const V = 200, vocab = Float32Array.from({ length: V * D }, () => gaussian(rand));
  const names = Array.from({ length: V }, (_, i) => `word${i}`);
  const got = await nameConcepts(dir, vocab, names);
  const { atoms, m } = readAtoms(dir);
  assert.equal(got.length, m);
  for (let j = 0; j < m; j++) {
    let best = 0;
    for (let v = 1; v < V; v++) if (cos(vocab, v, atoms, j) > cos(vocab, best, atoms, j)) best = v;
    assert.equal(got[j].name, `word${best}`);
    assert.ok(Math.abs(got[j].score - cos(vocab, best, atoms, j)) < 1e-5);
  }
}));

test('concept strengths equal ReLU(W_e (x - b) + b_e) computed in float64', withDir(async (dir) => {
  const { x } = planted(64, 6);
  const features = join(dir, 'x.npy');
  writeNpy(features, x, [64, D]);
  await trainSae({ features, out: dir, expansion: 2, batch: 32, epochs: 1 });
  const t = loadTrainer(dir);
  const { data, m } = await conceptStrengths(t, features);
  const p = t.params();
  for (let i = 0; i < 64; i++)
    for (let j = 0; j < m; j++) {
      let s = p.encoderBias[j];
      for (let c = 0; c < D; c++) s += p.encoder[j * D + c] * (x[i * D + c] - p.bias[c]);
      assert.ok(Math.abs(data[i * m + j] - Math.max(0, s)) < 1e-5, `f[${i}, ${j}]`);
    }
}));

test('CBM probe learns a separable task; metrics follow their definitions', () => {
  const { x, label } = planted(2000, 7);
  const X = toSparse(x.map((v) => Math.max(0, v)), 2000, D);
  const probe = trainProbe(X, label, 4, { epochs: 15, lr: 1e-2, lambda: 1e-3, seed: 1 });
  const acc = accuracy(X, label, probe.weights, 4);
  assert.ok(acc.top1 >= 0.75, `top-1 ${acc.top1}`);  // measured 0.7725 (seeded); chance is 0.25
  assert.equal(acc.top5, 1);  // 4 classes
  assert.deepEqual(weightSparsity(Float32Array.from([0, 1e-10, -5e-7, 2e-4, -0.05, 1])),
    { '0': 1, '1e-9': 2, '0.000001': 3, '0.001': 4, '0.1': 5 });
  assert.equal(coveragePosition([5, 3, 1, 1], 0.9), 2);  // 5, 8, 9 ≥ 9
  assert.equal(coveragePosition([5, 3, 1, 1], 0.95), 3);
  assert.equal(coveragePosition([10], 0.99), 0);
});

test('toSparse refuses data that is not rows × cols values', () => {
  const tenValues = Float32Array.from({ length: 10 }, (_, i) => i + 1);
  assert.throws(() => toSparse(tenValues, 4, 8), { code: 'ERR_SHAPE', message: /^data: expected 4 × 8 = 32 values, got 10$/ });
  assert.throws(() => toSparse(new Float32Array(40), 4, 8), { code: 'ERR_SHAPE', message: /got 40/ });
  assert.throws(() => toSparse(new Float32Array(0), 4, 0), { code: 'ERR_ARG', message: /^cols: expected a positive integer, got 0$/ });
  assert.throws(() => toSparse(new Float32Array(8), 1.5, 8), { code: 'ERR_ARG', message: /^rows: expected an integer ≥ 0, got 1\.5$/ });
  assert.deepEqual(toSparse(tenValues.subarray(0, 8), 2, 4).ptr, Float64Array.from([0, 4, 8]));
});

test('accuracy refuses weights, labels and rows that do not fit X, as trainProbe does', () => {
  const s2 = toSparse(new Float32Array(32).fill(1), 4, 8), y4 = new Int32Array([0, 1, 2, 3]);
  assert.throws(() => accuracy(s2, y4, new Float32Array(3), 4), { code: 'ERR_SHAPE', message: /^weights: expected 4 × 8 = 32 values, got 3$/ });
  const X = toSparse(new Float32Array(100 * 8).fill(1), 100, 8), W = new Float32Array(4 * 8);
  const y = Int32Array.from({ length: 200 }, (_, i) => i % 4);
  const perRow = { code: 'ERR_SHAPE', message: /^labels: (10|200) for 100 feature rows; expected one label per row$/ };
  assert.throws(() => accuracy(X, y.subarray(0, 10), W, 4), perRow);
  assert.throws(() => accuracy(X, y, W, 4), perRow);
  assert.throws(() => trainProbe(X, y.subarray(0, 10), 4), perRow);
  // The explanation helpers check the row, the class and the weights' shape (they returned 0, NaN or zeros).
  assert.throws(() => predict(s2, 99, new Float32Array(32), 4), { code: 'ERR_ARG', message: /^i: expected a row of X in 0\.\.3, got 99$/ });
  assert.throws(() => contributions(s2, 0, new Float32Array(32), 7), { code: 'ERR_ARG', message: /^c: expected a class in 0\.\.3, got 7$/ });
  assert.throws(() => coverage(s2, Float32Array.of(1), 4), { code: 'ERR_SHAPE', message: /^weights: expected 4 × 8 = 32 values, got 1$/ });
  assert.throws(() => globalExplanations(new Float32Array(32), 3, 5), { code: 'ERR_SHAPE', message: /^weights: expected 3 × 5 = 15 values, got 32$/ });
  // Options that would loop forever (a batch of 0) or leave the weights at zero are refused by name.
  const y100 = y.subarray(0, 100);
  for (const [o, message] of [[{ batch: 0 }, /^batch: expected an integer >= 1, got 0$/], [{ batch: -1 }, /^batch: expected an integer >= 1, got -1$/],
    [{ epochs: 0 }, /^epochs: expected an integer >= 1, got 0$/], [{ valFraction: 1 }, /^valFraction: expected a number in \[0, 1\), got 1$/],
    [{ valFraction: -0.5 }, /^valFraction: expected a number in \[0, 1\), got -0\.5$/], [{ valFraction: 0.999 }, /^valFraction: expected a fraction that leaves training rows of the 100/]] as const)
    assert.throws(() => trainProbe(X, y100, 4, o), { code: 'ERR_ARG', message }, JSON.stringify(o));
  assert.throws(() => accuracy(s2, new Int32Array([0, 1, 4, 3]), new Float32Array(32), 4), { code: 'ERR_ARG', message: /^labels\[2\]: expected a class in 0\.\.3, got 4$/ });
  assert.throws(() => accuracy(s2, y4, new Float32Array(32), 4, [0, 4]), { code: 'ERR_SHAPE', message: /^rows\[1\]: expected a row of X in 0\.\.3, got 4$/ });
  assert.throws(() => accuracy(s2, y4, new Float32Array(32), 4, []), { code: 'ERR_SHAPE', message: /no rows to score/ });
  assert.throws(() => accuracy({ ...s2, val: s2.val.subarray(1) }, y4, new Float32Array(32), 4), { code: 'ERR_SHAPE', message: /^X: expected 5 row starts/ });
  assert.deepEqual(accuracy(s2, y4, new Float32Array(32), 4, [1, 2]), { top1: 0, top5: 1 });
});

test('an AbortSignal stops training with an AbortError', withDir(async (dir) => {
  const { x } = planted(2048, 8);
  const features = join(dir, 'x.npy');
  writeNpy(features, x, [2048, D]);
  const ac = new AbortController();
  let seen = 0;
  await assert.rejects(trainSae({ features, out: dir, expansion: 2, batch: 64, epochs: 50, signal: ac.signal,
    onProgress: () => { if (++seen === 2) ac.abort(); } }), { name: 'AbortError' });
  assert.ok(seen >= 2);
}));
