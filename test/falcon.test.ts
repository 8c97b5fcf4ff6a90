// FALCON stages against the definitions (Kalibhat et al. 2023 and the
// reference implementation's choices), on hand-built cases.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { writeNpy, readNpyHeader, readNpyRows } from '../ts/io/npy.js';
import { floatsToHalves as nativeFloatsToHalves, halvesToFloats as nativeHalvesToFloats } from '../ts/engine/fp16.js';
import { computeFiring, groupImages, groupMembers, parseGroupKey } from '../ts/methods/falcon/groups.js';
import { cropResize, groupCams, type LayerMaps, type RgbImage } from '../ts/methods/falcon/cam.js';
import { OnnxModel } from '../ts/encoders/onnx.js';
import { poolingHeadsModel } from './onnx-graphs.js';
import { interpretabilityScore, lowlyActivating, failureFeatures } from '../ts/methods/falcon/scores.js';
import { contrastConcepts, extractTerms, scoreTerms } from '../ts/methods/falcon/concepts.js';
import { openCaptions, topCaptions } from '../ts/methods/falcon/captions.js';
import { writeSyntheticLaion, syntheticCaption } from '../ts/methods/falcon/synthetic.js';
import { pooledLayerModel, runFalcon, type RunInputs } from '../ts/methods/falcon/pipeline.js';
import { globalAveragePool } from '../ts/methods/falcon/cam.js';
import { matchClasses } from '../ts/methods/falcon/demo.js';
import { randn, rng, tempDir, cliOk, runCli } from './helpers.js';
import { assetsDir } from '../ts/assets.js';

/** 60 images × 256 features: 12 fire {2}, 11 fire {0, 4}, 5 fire {1} (too few), the rest diffuse. */
function handBuiltRepresentations(): { r: Float32Array; n: number; d: number } {
  const n = 60, d = 256, u = rng(7), r = new Float32Array(n * d);
  for (let i = 0; i < n * d; i++) r[i] = 0.1 * u();
  const spike = (x: number, fs: number[]) => fs.forEach((f) => (r[x * d + f] = 5));
  for (let x = 0; x < 12; x++) spike(x, [2]);
  for (let x = 12; x < 23; x++) spike(x, [0, 4]);
  for (let x = 23; x < 28; x++) spike(x, [1]);
  return { r, n, d };
}

/** Float64 reference: R̂, mean, unbiased std, τ and firing sets. */
function referenceFiring(r: Float32Array, n: number, d: number, sigmas = 5) {
  const hat = new Float64Array(n * d);
  for (let x = 0; x < n; x++) {
    let nn = 0;
    for (let c = 0; c < d; c++) nn += r[x * d + c] ** 2;
    for (let c = 0; c < d; c++) hat[x * d + c] = nn > 0 ? r[x * d + c] / Math.sqrt(nn) : 0;
  }
  const mean = hat.reduce((a, v) => a + v, 0) / (n * d);
  const std = Math.sqrt(hat.reduce((a, v) => a + (v - mean) ** 2, 0) / (n * d - 1));
  const tau = mean + sigmas * std;
  const sets = Array.from({ length: n }, (_, x) => Array.from({ length: d }, (_, c) => c).filter((c) => hat[x * d + c] >= tau));
  return { hat, mean, std, tau, sets };
}

test('threshold is mean + 5·std of the row-normalised matrix; groups are exact co-firing sets of more than 10 images', async () => {
  const { r, n, d } = handBuiltRepresentations();
  const ref = referenceFiring(r, n, d);
  const f = await computeFiring({ data: r, rows: n, cols: d });
  assert.ok(Math.abs(f.mean - ref.mean) < 1e-7 && Math.abs(f.std - ref.std) < 1e-7 && Math.abs(f.tau - ref.tau) < 1e-6, `${f.tau} vs ${ref.tau}`);
  assert.deepEqual(f.sets, ref.sets);
  const groups = groupImages(f.sets);
  const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);
  assert.deepEqual(groups, { '2': range(0, 12), '0,4': range(12, 23) });
  // fp16 input gives the same groups.
  const f16 = await computeFiring({ data: nativeFloatsToHalves(r), rows: n, cols: d });
  assert.deepEqual(groupImages(f16.sets), groups);
  // Sets that are not ascending integer indices would make keys naming no features (a TypeError for non-arrays before).
  assert.throws(() => groupImages([[1], 7 as never]), { code: 'ERR_ARG', message: /^sets\[1\]: expected distinct ascending feature indices \(integers >= 0\), got 7$/ });
  assert.throws(() => groupImages([[3, 1]]), { code: 'ERR_ARG', message: /^sets\[0\]: expected distinct ascending/ });
  assert.throws(() => groupImages([[0.5]]), { code: 'ERR_ARG', message: /^sets\[0\]: expected distinct ascending/ });
  assert.throws(() => groupImages(f.sets, -1), { code: 'ERR_ARG', message: /^moreThan: expected an integer >= 0, got -1$/ });
});

test('`falcon groups` writes the groups.json contract', async () => {
  const { r, n, d } = handBuiltRepresentations();
  const dir = tempDir();
  writeNpy(join(dir, 'R.npy'), r, [n, d]);
  await falconCli(['groups', '--representations', join(dir, 'R.npy'), '--out', join(dir, 'groups.json')]);
  const groups = JSON.parse(readFileSync(join(dir, 'groups.json'), 'utf8'));
  const ref = referenceFiring(r, n, d);
  const want: Record<string, number[]> = {};
  ref.sets.forEach((s, x) => { if (s.length) (want[s.join(',')] ??= []).push(x); });
  for (const k of Object.keys(want)) if (want[k].length <= 10) delete want[k];
  assert.deepEqual(groups, want);
  assert.deepEqual(Object.keys(groups).sort(), ['0,4', '2']);
  const summary = JSON.parse(await falconCli(['groups', '--representations', join(dir, 'R.npy'), '--out', join(dir, 'g2.json'), '--json']));
  assert.deepEqual([summary.groups, summary.out], [2, join(dir, 'g2.json')]);
  assert.ok(Math.abs(summary.tau - (ref.mean + 5 * ref.std)) < 1e-6 * Math.abs(summary.tau), JSON.stringify(summary));
});

const falconCli = (args: string[]) => cliOk(['falcon', ...args]);

test('`falcon explain` on precomputed inputs: lowly images, captions and concepts of one group; unknown group is an error', async () => {
  const { r, n, d } = handBuiltRepresentations();
  const dir = tempDir(), e = 4;
  writeNpy(join(dir, 'R.npy'), r, [n, d]);
  // Image embeddings: group "2" images point at caption 0 ("a red fox"), the others at caption 1 ("a blue boat").
  const emb = new Float32Array(n * e);
  for (let x = 0; x < n; x++) emb.set(x < 12 ? [1, 0.1 * (x % 3), 0, 0] : [0, 0.1 * (x % 3), 1, 0], x * e);
  writeNpy(join(dir, 'E.npy'), emb, [n, e]);
  writeNpy(join(dir, 'V.npy'), Float32Array.from([1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0]), [3, e]);
  writeFileSync(join(dir, 'V.txt'), 'a red fox\na blue boat\na green tree\n');
  const stdout = await falconCli(['explain', '--group', '2', '--representations', join(dir, 'R.npy'), '--image-embeddings', join(dir, 'E.npy'),
    '--captions', join(dir, 'V.npy'), '--temperature', '0', '--out', join(dir, 'out')]);
  const g = JSON.parse(readFileSync(join(dir, 'out', 'groups', 'g2.json'), 'utf8'));
  assert.deepEqual(g.high, Array.from({ length: 12 }, (_, i) => i));
  assert.equal(g.captions.high[0].captions[0], 'a red fox');
  // Plain cosine: fox scores the mean over the 12 images of cos(e_x, caption 0) = 1/√(1 + (0.1·(x mod 3))²).
  const fox = Array.from({ length: 12 }, (_, x) => 1 / Math.hypot(1, 0.1 * (x % 3))).reduce((a, b) => a + b) / 12;
  assert.equal(g.words[0].term, 'fox');
  assert.ok(Math.abs(g.words[0].score - fox) < 1e-5, `${g.words[0].score} vs ${fox}`);
  assert.equal(JSON.parse(stdout).group, '2');
  await assert.rejects(falconCli(['explain', '--group', '5', '--representations', join(dir, 'R.npy'), '--image-embeddings', join(dir, 'E.npy'),
    '--captions', join(dir, 'V.npy')]), /group "5": no images fire exactly this feature set/);
});

/** The hand-built representations with image embeddings and a three-caption vocabulary in dir; `falcon explain`'s inputs. */
function explainInputs(dir: string): string[] {
  const { r, n, d } = handBuiltRepresentations();
  writeNpy(join(dir, 'R.npy'), r, [n, d]);
  writeNpy(join(dir, 'E.npy'), randn(n * 4, 3), [n, 4]);
  writeNpy(join(dir, 'V.npy'), randn(3 * 4, 4), [3, 4]);
  writeFileSync(join(dir, 'V.txt'), 'a red fox\na blue boat\na green tree\n');
  return ['--representations', join(dir, 'R.npy'), '--image-embeddings', join(dir, 'E.npy'), '--captions', join(dir, 'V.npy'), '--temperature', '0'];
}

test('`falcon explain --groups`: the file must map keys to distinct image indices in range, and match the representations', async () => {
  const dir = tempDir(), inputs = explainInputs(dir), G = join(dir, 'G.json');
  const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);
  const cases: [unknown, RegExp][] = [
    [{ 2: [0, 1, 2.5] }, /G\.json: group "2": entry 2: expected an integer image index in \[0, 60\), got 2\.5/],
    [{ 2: [0, 1, 2, 999] }, /G\.json: group "2": entry 3: expected an integer image index in \[0, 60\), got 999/],
    [{ 2: [0, 1, 'a'] }, /G\.json: group "2": entry 2: expected an integer image index in \[0, 60\), got 'a'/],
    [{ 2: [0, 1, 1] }, /G\.json: group "2": entry 2: image index 1 appears twice/],
    [{ 2: range(0, 12), '0,4': [11, 12] }, /G\.json: group "0,4": entry 0: image index 11 appears twice \(also in .*G\.json: group "2"\)/],
    [{ 2: 3 }, /G\.json: group "2": expected an array of image indices, got 3/],
    [[1, 2], /G\.json: expected an object mapping group keys .* got an array of 2/],
    // The file is the representations' grouping (`falcon groups`), so a different member list is refused.
    [{ 2: [0, 1, 2] }, /G\.json: group "2" lists 3 images, but .*R\.npy at --sigmas 5 has 12 that fire exactly this feature set \(image 3 fires it but is not listed\)/],
    [{ 2: [...range(0, 12), 40] }, /group "2" lists 13 images, .* \(image 40 is listed but does not fire exactly it\)/],
  ];
  for (const [groups, message] of cases) {
    writeFileSync(G, JSON.stringify(groups));
    const r = await runCli(['falcon', 'explain', '--group', '2', ...inputs, '--groups', G]);
    assert.equal(r.code, 1, JSON.stringify(groups));
    assert.match(r.stderr, message);
  }
  // What `falcon groups` writes is accepted, and gives the recomputed members.
  await falconCli(['groups', '--representations', join(dir, 'R.npy'), '--out', G]);
  assert.equal(JSON.parse(await falconCli(['explain', '--group', '2', ...inputs, '--groups', G])).high, 12);
  // Image embeddings of another width than the captions' are named with both files.
  writeNpy(join(dir, 'E8.npy'), randn(60 * 8, 5), [60, 8]);
  const r = await runCli(['falcon', 'explain', '--group', '2', ...inputs.map((a) => (a.endsWith('E.npy') ? join(dir, 'E8.npy') : a))]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /image embeddings .*E8\.npy: expected 4 columns \(the dimension of the captions .*V\.npy\), got 8/);
});

test('`falcon explain --help` names the group file it writes: groups/g<key>.json, commas as _', async () => {
  const { execFileSync } = await import('node:child_process');
  const help = execFileSync(process.execPath, [join(import.meta.dirname, '..', '..', 'bin', 'conceptlens.js'), 'falcon', 'explain', '--help'], { encoding: 'utf8' });
  assert.match(help.replace(/\s+/g, ' '), /write groups\/g<key>\.json \(commas as _: group "3,17" → groups\/g3_17\.json\)/);
  const dir = tempDir();
  await falconCli(['explain', '--group', '0,4', ...explainInputs(dir), '--out', join(dir, 'out')]);
  assert.deepEqual(readdirSync(join(dir, 'out', 'groups')), ['g0_4.json']);
});

test('group keys and members: malformed keys and a group with no images are clear errors', () => {
  assert.deepEqual(parseGroupKey('3,17'), [3, 17]);
  assert.throws(() => parseGroupKey('17,3'), /distinct ascending/);
  assert.throws(() => parseGroupKey('3,x'), /joined by commas/);
  assert.throws(() => parseGroupKey('3,600', 512), /in \[0, 512\)/);
  assert.throws(() => groupMembers({ '2': [1, 2] }, '5'), /group "5": no images .*known groups: "2"/);
  assert.throws(() => groupMembers({ '5': [] }, '5'), /group "5": no images/);
});

/** cv2-style bilinear resize in float64 (half-pixel centres, edge clamp). */
function resizeRef(src: number[], sh: number, sw: number, dh: number, dw: number): number[] {
  const axis = (o: number, s: number, dd: number): [number, number] => {
    const f = (o + 0.5) * (s / dd) - 0.5;
    let i = Math.floor(f), a = f - i;
    if (i < 0) i = 0, a = 0;
    if (i >= s - 1) i = s - 1, a = 0;
    return [i, a];
  };
  const out: number[] = [];
  for (let y = 0; y < dh; y++) {
    const [y0, ay] = axis(y, sh, dh), y1 = Math.min(y0 + 1, sh - 1);
    for (let x = 0; x < dw; x++) {
      const [x0, ax] = axis(x, sw, dw), x1 = Math.min(x0 + 1, sw - 1);
      const v = (yy: number) => src[yy * sw + x0] * (1 - ax) + src[yy * sw + x1] * ax;
      out.push(v(y0) * (1 - ay) + v(y1) * ay);
    }
  }
  return out;
}

const minMax = (m: number[]) => {
  const lo = Math.min(...m), shifted = m.map((v) => v - lo), hi = Math.max(...shifted);
  return shifted.map((v) => v / (hi + 1e-7));
};

test('GradCAM of a group on a pooled map: ReLU(Σ group channels), min-max scaled, resized; averaged over layers', async () => {
  const [n, c, h, w] = [2, 3, 3, 3], acts = randn(n * c * h * w, 11);
  const layer: LayerMaps = { name: 'l4', shape: [n, c, h, w], data: acts };
  const other: LayerMaps = { name: 'l3', shape: [n, 2, 2, 2], data: randn(n * 2 * 4, 12), grads: randn(n * 2 * 4, 13) };
  const got = await groupCams([layer, other], [0, 2], { width: 6, height: 6 });
  for (let x = 0; x < n; x++) {
    const gap = Array.from({ length: h * w }, (_, p) => Math.max(0, (acts[(x * c) * 9 + p] + acts[(x * c + 2) * 9 + p]) / 9));
    const g = other.grads!, a = other.data;
    const wts = [0, 1].map((ch) => [0, 1, 2, 3].reduce((s, p) => s + g[(x * 2 + ch) * 4 + p], 0) / 4);
    const general = [0, 1, 2, 3].map((p) => Math.max(0, wts[0] * a[(x * 2) * 4 + p] + wts[1] * a[(x * 2 + 1) * 4 + p]));
    const l1 = resizeRef(minMax(gap), 3, 3, 6, 6), l2 = resizeRef(minMax(general), 2, 2, 6, 6);
    const want = minMax(l1.map((v, p) => Math.max(0, (v + l2[p]) / 2)));
    want.forEach((v, p) => assert.ok(Math.abs(got.cams[x * 36 + p] - v) < 1e-5, `image ${x} pixel ${p}: ${got.cams[x * 36 + p]} vs ${v}`));
  }
  // A threshold past the map's maximum keeps nothing, and a NaN map would box anything: both refused.
  await assert.rejects(groupCams([layer], [0], { threshold: 2 }), { code: 'ERR_ARG', message: /^threshold: expected a fraction of the map's maximum in \[0, 1\], got 2$/ });
  const nan = { ...layer, data: Float32Array.from(acts, (v, i) => (i === 30 ? NaN : v)) };
  await assert.rejects(groupCams([nan], [0]), { code: 'ERR_NAN', message: /^layer 'l4': image 1, column 3 is NaN/ });
  assert.throws(() => globalAveragePool({ ...layer, data: acts.subarray(1) }), { code: 'ERR_SHAPE', message: /^layer 'l4': shape \[2, 3, 3, 3\] holds 54 values, got 53$/ });
  const img = { data: new Uint8Array(4 * 4 * 3), width: 4, height: 4 };
  await assert.rejects(cropResize({ ...img, data: img.data.subarray(3) }, [0, 0, 2, 2]), { code: 'ERR_SHAPE', message: /^image: expected 4×4×3 = 48 RGB bytes, got 45$/ });
  await assert.rejects(cropResize(img, [0, 0, 2, 2], 0), { code: 'ERR_ARG', message: /^size: expected an integer >= 1, got 0$/ });
});

/**
 * d(Σ_{i∈group} head_i)/d(map) by central differences through the ONNX graph
 * (every perturbed copy of the map in one batched run), in float64.
 */
async function finiteDifferenceGrads(model: OnnxModel, head: string, map: Float32Array, group: number[], h = 1e-2): Promise<Float64Array> {
  const m = map.length, batch = new Float32Array(2 * m * m);
  for (let e = 0; e < m; e++)
    for (const [s, sign] of [[0, 1], [1, -1]] as const) {
      const copy = batch.subarray((2 * e + s) * m, (2 * e + s + 1) * m);
      copy.set(map);
      copy[e] += sign * h;
    }
  const out = (await model.run({ map: { type: 'float32', dims: [2 * m, ...model.inputs[0].shape.slice(1) as number[]], data: batch } }, [head]))[head];
  const c = out.dims[1], t = (row: number) => group.reduce((s, i) => s + (out.data as Float32Array)[row * c + i], 0);
  return Float64Array.from({ length: m }, (_, e) => (t(2 * e) - t(2 * e + 1)) / (2 * h));
}

/** GradCAM of one map from its definition in float64: weights = spatial mean of the gradients, ReLU(Σ w_c A_c), min-max. */
function gradCamReference(acts: ArrayLike<number>, grads: ArrayLike<number>, c: number, hw: number): number[] {
  const weights = Array.from({ length: c }, (_, ch) => Array.from({ length: hw }, (_, p) => grads[ch * hw + p]).reduce((a, b) => a + b) / hw);
  return minMax(Array.from({ length: hw }, (_, p) => Math.max(0, weights.reduce((s, wc, ch) => s + wc * acts[ch * hw + p], 0))));
}

test('GradCAM against finite differences through an ONNX graph: the analytic form is exact for channel-wise pooling (mean, max), not for mixed channels', async () => {
  const [c, h, w] = [3, 4, 4], hw = h * w, group = [0, 2];
  const acts = Float32Array.from(randn(c * hw, 31), (v) => v + 0.5);
  const mix = Float32Array.from([1, -0.5, 0.2, 0.8, 1, -0.3, -0.6, 0.4, 1]);
  const model = await OnnxModel.load(poolingHeadsModel(c, h, w, mix));
  try {
    const analytic = await groupCams([{ name: 'map', shape: [1, c, h, w], data: acts }], group, { width: w, height: h });
    for (const head of ['gap', 'mixed', 'peak']) {
      const grads = await finiteDifferenceGrads(model, head, acts, group);
      const viaGrads = await groupCams([{ name: 'map', shape: [1, c, h, w], data: acts, grads: Float32Array.from(grads) }], group, { width: w, height: h });
      const want = gradCamReference(acts, grads, c, hw);
      want.forEach((v, p) => assert.ok(Math.abs(viaGrads.cams[p] - v) < 1e-4, `${head}, pixel ${p}: ${viaGrads.cams[p]} vs ${v}`));
      if (head === 'gap') grads.forEach((g, e) => assert.ok(Math.abs(g - (group.includes(Math.floor(e / hw)) ? 1 / hw : 0)) < 1e-4, `gap gradient ${e}: ${g}`));
      // GradCAM keeps only each channel's mean gradient: 1/(H·W) on the group channels for any pooling whose weights sum to one.
      const channelWise = head !== 'mixed';
      const same = Array.from(analytic.cams).every((v, p) => Math.abs(v - viaGrads.cams[p]) < 1e-4);
      assert.equal(same, channelWise, `${head}: the analytic form ${channelWise ? 'must equal' : 'differs from'} the finite-difference GradCAM`);
    }
  } finally {
    await model.close();
  }
});

test('the 0.6 box is the largest-area box over the thresholded islands', async () => {
  // One channel, 8×8: island A (2×2 at value 1) and island B (an L whose box is 3 wide × 4 high at 0.7).
  const m = new Float32Array(64);
  for (const [y, x] of [[0, 0], [0, 1], [1, 0], [1, 1]]) m[y * 8 + x] = 1;
  for (const [y, x] of [[4, 5], [5, 5], [6, 5], [7, 5], [7, 6], [7, 7]]) m[y * 8 + x] = 0.7;
  m[3 * 8 + 2] = 0.59; // below 0.6: not an island
  const got = await groupCams([{ name: 'map', shape: [1, 1, 8, 8], data: m }], [0], { width: 8, height: 8 });
  assert.deepEqual(got.boxes[0], [5, 4, 8, 8]);
});

test('GradCAM rejects a layer without spatial dimensions', async () => {
  await assert.rejects(groupCams([{ name: 'gap', shape: [4, 512], data: new Float32Array(2048) }], [3]),
    /layer 'gap': GradCAM needs a spatial map \[N, C, H, W\].*got shape \[4, 512\]/);
  await assert.rejects(groupCams([{ name: 'pool', shape: [1, 8, 1, 1], data: new Float32Array(8) }], [3]), /layer 'pool'.*got shape \[1, 8, 1, 1\]/);
  await assert.rejects(groupCams([{ name: 'fire22', shape: [1, 8, 2, 2], data: new Float32Array(32) }], []), /group: expected at least one feature/);
});

test('interpretability score is the mean of the crops\' cosine Gram matrix', () => {
  const n = 7, d = 5, e = randn(n * d, 21);
  let sum = 0;
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      let dot = 0, ni = 0, nj = 0;
      for (let c = 0; c < d; c++) dot += e[i * d + c] * e[j * d + c], ni += e[i * d + c] ** 2, nj += e[j * d + c] ** 2;
      sum += dot / Math.sqrt(ni * nj);
    }
  assert.ok(Math.abs(interpretabilityScore(e, n, d) - sum / (n * n)) < 1e-12);
  assert.equal(interpretabilityScore(new Float32Array([1, 0, 2, 0, 3, 0]), 3, 2), 1);
  assert.throws(() => interpretabilityScore(new Float32Array(0), 0, 4), /at least one crop/);
});

test('lowly activating counterfactuals: all group features below mean(R̂), ranked by similarity of the other features, ≥ 0.3, first 10', async () => {
  // Features: 0 = the group; 1..3 others. High images share other-feature direction (1, 1, 0).
  const rows: number[][] = [
    [2, 1, 1, 0], [2, 1, 1, 0], // 0, 1: high
    [0, 1, 1, 0],               // 2: low, similar (other part (1,1,0)/√2 · centre)
    [0, 1, 0, 0],               // 3: low, less similar
    [0, 0, 0, 1],               // 4: low, dissimilar (0): dropped by 0.3
    [5, 1, 1, 0],               // 5: group feature above mean: not a candidate
    [0, 2, 1, 0],               // 6: low
  ];
  const d = 4, r = Float32Array.from(rows.flat());
  await assert.rejects(computeFiring({ data: r, rows: rows.length, cols: d }, { sigmas: -1 }), /sigmas: expected a finite number > 0 .*got -1/);
  const f = await computeFiring({ data: r, rows: rows.length, cols: d }, { sigmas: 5 });
  const hat = rows.map((row) => row.map((v) => v / Math.hypot(...row)));
  const centre = [1, 2, 3].map((c) => (hat[0][c] + hat[1][c]) / 2);
  const sim = (x: number) => [1, 2, 3].reduce((s, c, j) => s + hat[x][c] * centre[j], 0);
  const got = lowlyActivating(r, f, [0], [0, 1]);
  const want = [2, 3, 4, 6].filter((x) => hat[x][0] < f.mean && sim(x) >= 0.3).sort((a, b) => sim(b) - sim(a));
  assert.deepEqual(got.images, want);
  assert.deepEqual(want, [2, 6, 3]);
  got.similarities.forEach((s, i) => assert.ok(Math.abs(s - sim(want[i])) < 1e-6));
  assert.deepEqual(lowlyActivating(r, f, [0], [0, 1], { limit: 1 }).images, [2]);
  assert.throws(() => lowlyActivating(r, f, [0], []), /no highly activating images/);
  // Indices outside the representations, or representations other than the firing's, are refused by name.
  assert.throws(() => lowlyActivating(r, f, [200], [0, 1]), { code: 'ERR_ARG', message: /^group: expected feature indices in \[0, 4\), got 200$/ });
  assert.throws(() => lowlyActivating(r, f, [0], [0, 999]), { code: 'ERR_ARG', message: /^high: expected image indices in \[0, 7\), got 999$/ });
  assert.throws(() => lowlyActivating(r.subarray(4), f, [0], [0, 1]), { code: 'ERR_SHAPE', message: /^representations: expected 7×4 = 28 values/ });
  assert.throws(() => lowlyActivating(r, f, [0], [0, 1], { limit: -1 }), { code: 'ERR_ARG', message: /^limit: expected an integer >= 1, got -1$/ });
});

test('failure analysis: the feature with the largest h ∘ U_y', () => {
  const h = Float32Array.from([1, 2, 0.5]), W = Float32Array.from([1, 1, 1, /* class 1 */ 0.1, -1, 9]);
  // h ∘ W[1] = (0.1, -2, 4.5): the top two are features 2 and 0.
  const top = failureFeatures(h, W, 2, 1, 2);
  assert.deepEqual(top.features, [2, 0]);
  assert.ok(Math.abs(top.contributions[0] - 4.5) < 1e-6 && Math.abs(top.contributions[1] - 0.1) < 1e-6);
  assert.deepEqual(failureFeatures(h, W, 2, 0).features, [1]);
  assert.throws(() => failureFeatures(h, W, 2, 2), /class: expected an integer in \[0, 2\)/);
  assert.throws(() => failureFeatures(h, W, 2, 1, -1), { code: 'ERR_ARG', message: /^k: expected an integer >= 1, got -1$/ });
});

test('words and noun phrases: POS-filtered lemmas without stop words, photo-metadata words, digits or short tokens', () => {
  const t = extractTerms('Royalty free stock photo of two Golden Retriever dogs running on the green grass in 2019, by me');
  for (const w of ['dog', 'run', 'grass', 'golden', 'retriever', 'green']) assert.ok(t.words.has(w), `missing ${w}: ${[...t.words]}`);
  for (const w of ['royalty', 'free', 'stock', 'photo', 'two', 'the', '2019', 'me', 'by']) assert.ok(!t.words.has(w), `kept ${w}`);
  assert.ok(t.phrases.has('golden retriever dog'), [...t.phrases].join('|'));
  assert.ok(t.phrases.has('green grass'));
});

test('word score = mean over images of the best score among captions containing it; contrast drops terms ≥ 0.1 on the lowly set', () => {
  const high = [
    { captions: ['a dog on the grass', 'a dog', 'a red car'], scores: [0.5, 0.3, 0.2] },
    { captions: ['a cat on the grass', 'the sleepy dog'], scores: [0.6, 0.1] },
  ];
  const words = scoreTerms(high, (t) => t.words);
  const score = (term: string) => words.find((s) => s.term === term)?.score;
  assert.equal(score('dog'), (0.5 + 0.1) / 2);
  assert.equal(score('grass'), (0.5 + 0.6) / 2);
  assert.equal(score('cat'), 0.6 / 2);
  assert.equal(score('car'), 0.2 / 2);
  assert.deepEqual(words.slice(0, 2).map((s) => s.term), ['grass', 'cat']);
  const low = [{ captions: ['green grass field', 'a red car'], scores: [0.15, 0.05] }];
  const c = contrastConcepts(high, low);
  assert.ok(!c.words.some((s) => s.term === 'grass'), 'grass scores 0.15 on the lowly set');
  assert.ok(c.words.some((s) => s.term === 'car'), 'car scores 0.05 on the lowly set');
  assert.ok(c.words.length <= 8 && c.phrases.length <= 8);
  assert.throws(() => contrastConcepts([], low), /at least one highly activating image/);
  assert.throws(() => contrastConcepts(high, low, { top: -1 }), { code: 'ERR_ARG', message: /^top: expected an integer >= 1, got -1$/ });
});

/** Per-shard softmax(T·cos), then the global top-k, in float64. */
function shardSoftmaxRef(q: Float32Array, shards: Float32Array[], d: number, k: number, T: number) {
  const qn = Math.hypot(...q);
  const all: { id: number; p: number }[] = [];
  let base = 0;
  for (const s of shards) {
    const rows = s.length / d;
    const cos = Array.from({ length: rows }, (_, j) => {
      let dot = 0, vn = 0;
      for (let c = 0; c < d; c++) dot += q[c] * s[j * d + c], vn += s[j * d + c] ** 2;
      return dot / (qn * Math.sqrt(vn));
    });
    const m = Math.max(...cos), z = cos.reduce((a, v) => a + Math.exp(T * (v - m)), 0);
    cos.forEach((v, j) => all.push({ id: base + j, p: Math.exp(T * (v - m)) / z }));
    base += rows;
  }
  return all.sort((a, b) => b.p - a.p || a.id - b.id).slice(0, k);
}

test('captions: top-5 per image over LAION-layout shards with the per-shard softmax(100·cos)', async () => {
  const dir = tempDir(), d = 16;
  assert.equal(await writeSyntheticLaion(dir, { rows: 2500, dim: d, shardRows: 1000, seed: 3, captions: 'txt' }), 3);
  const shards = [0, 1, 2].map((i) => {
    const h = readNpyHeader(join(dir, `text_emb_${i}.npy`));
    assert.equal(h.dtype, 'float16');
    return nativeHalvesToFloats(readNpyRows(h, 0, h.shape[0]) as Uint16Array);
  });
  assert.deepEqual(shards.map((s) => s.length / d), [1000, 1000, 500]);
  const vocab = await openCaptions(dir), q = randn(3 * d, 31);
  for (const T of [100, 0]) {
    const got = await topCaptions(q, 3, vocab, { softmaxTemperature: T });
    for (let i = 0; i < 3; i++) {
      const qi = q.subarray(i * d, (i + 1) * d);
      const ref = T > 0 ? shardSoftmaxRef(qi, shards, d, 5, T) : shardSoftmaxRef(qi, [Float32Array.from(shards.flatMap((s) => [...s]))], d, 5, 1e-9);
      if (T > 0) got[i].scores.forEach((s, j) => assert.ok(Math.abs(s - ref[j].p) < 1e-4, `image ${i} rank ${j}: ${s} vs ${ref[j].p}`));
      assert.deepEqual(got[i].captions, ref.map((r) => syntheticCaption(r.id)));
    }
  }
  // Unit-norm rows (up to fp16 rounding) may skip the row norms: same captions, scores within fp16 error.
  const cos = await topCaptions(q, 3, vocab), ip = await topCaptions(q, 3, vocab, { unitRows: true });
  cos.forEach((c, i) => {
    assert.deepEqual(ip[i].captions, c.captions);
    c.scores.forEach((s, j) => assert.ok(Math.abs(s - ip[i].scores[j]) < 0.02));
  });
});

test('captions: the LAION layout with metadata parquet, and empty vocabularies are clear errors', async () => {
  const dir = tempDir(), d = 8;
  await writeSyntheticLaion(dir, { rows: 30, dim: d, shardRows: 20, seed: 5 });
  assert.ok(existsSync(join(dir, 'metadata_1.parquet')));
  const vocab = await openCaptions(dir);
  assert.equal(vocab.rows, 30);
  assert.deepEqual(await vocab.texts!.lookup([0, 25]), [syntheticCaption(0), syntheticCaption(25)]);
  const empty = tempDir();
  await assert.rejects(openCaptions(empty), /neither a vocabulary store \(manifest.json\) nor a LAION shard directory/);
  writeNpy(join(empty, 'v.npy'), new Float32Array(0), [0, d]);
  writeFileSync(join(empty, 'v.txt'), '');
  await assert.rejects(openCaptions(join(empty, 'v.npy')), /v\.npy: has 0 rows; a vocabulary needs at least one/);
  // The writer's own inputs: a folder that is not there, a seed it would wrap, a width of 0.
  await assert.rejects(writeSyntheticLaion(join(empty, 'none'), { rows: 3 }), { code: 'ERR_FILE', message: /none: no such folder; expected an existing folder for the shards/ });
  await assert.rejects(writeSyntheticLaion(empty, { rows: 3, seed: 2 ** 32 }), { code: 'ERR_ARG', message: /seed: expected an integer in 0\.\.2147483647/ });
  await assert.rejects(writeSyntheticLaion(empty, { rows: 3, dim: 0 }), { code: 'ERR_ARG', message: /dim: expected an integer >= 1, got 0/ });
});

// A tiny world for the whole pipeline: 30 images 16×16; images 0..11 have a red blob top-left
// that drives feature `hot` (default 1: another "layer" of the model) of a 4-channel 4×4 "layer";
// the rest are blue. The encoder embeds mean colour.
/**
 * 30 fake images: a red blob in the first 12 drives feature `hot`. With `blueHot`, the bluest 4 of the rest drive
 * that feature, and the other 14, where it is weak, fire feature 2 alone (row-normalised): a second, larger group.
 */
async function fakeWorld(dir: string, calls: { represent: number }, hot = 1, blueHot?: number): Promise<RunInputs> {
  const n = 30, S = 16;
  const rgb = (i: number): RgbImage => {
    const data = new Uint8Array(S * S * 3);
    for (let p = 0; p < S * S; p++) {
      const y = Math.floor(p / S), x = p % S, blob = i < 12 && y < 8 && x < 8;
      data.set(blob ? [230, 20, 20] : i < 12 ? [40, 40, 40] : [20, 20, 200 + (i % 5) * 10], p * 3);
    }
    return { data, width: S, height: S };
  };
  const tap = async (imgs: RgbImage[]): Promise<LayerMaps> => {
    const data = new Float32Array(imgs.length * 4 * 16);
    imgs.forEach((img, k) => {
      for (let c = 0; c < 4; c++)
        for (let p = 0; p < 16; p++) {
          const [y, x] = [Math.floor(p / 4), p % 4];
          const red = img.data[((y * 4) * S + x * 4) * 3] > 200, blue = img.data[((y * 4) * S + x * 4) * 3 + 2] >= 240;
          data[(k * 4 + c) * 16 + p] = c === hot ? (red ? 12 : 0.1) : c === blueHot ? (blue ? 12 : 0.1) : 1 + 0.05 * c;
        }
    });
    return { name: 'fake', shape: [imgs.length, 4, 4, 4], data };
  };
  const model = pooledLayerModel(4, tap, globalAveragePool);
  const captions = ['a red ball on a table', 'a red apple', 'a blue ocean wave', 'blue sky over the sea', 'a grey wall'];
  const emb = Float32Array.from([1, 0, 0, 0.2, 0.9, 0.1, 0, 0.2, 0, 0, 1, 0.2, 0, 0.1, 0.9, 0.2, 0.3, 0.3, 0.3, 0.2]);
  writeNpy(join(dir, 'vocab.npy'), emb, [5, 4]);
  writeFileSync(join(dir, 'vocab.txt'), captions.join('\n') + '\n');
  return {
    images: { count: n, rgb: async (i) => rgb(i) },
    model: { ...model, represent: (imgs) => { calls.represent++; return model.represent(imgs); } },
    encoder: {
      dim: 4,
      embed: async (imgs) => Float32Array.from(imgs.flatMap((img) => {
        const m = [0, 1, 2].map((c) => img.data.filter((_, j) => j % 3 === c).reduce((a, v) => a + v, 0) / (255 * img.width * img.height));
        return [...m, 0.2];
      })),
    },
    vocab: await openCaptions(join(dir, 'vocab.npy')),
    sources: { images: 'fake: 30 images', model: `fake: red blob drives feature ${hot}`, encoder: 'fake: mean colour', vocab: 'fake: 5 captions' },
  };
}

test('demo bridge: ImageNet classes match concepts by any of their comma-separated names', () => {
  const concepts = [{ name: 'goldfish', synonyms: [] }, { name: 'polar_bear', synonyms: ['ice_bear'] }];
  assert.deepEqual(matchClasses(['tench, Tinca tinca', 'goldfish, Carassius auratus', 'ice bear, polar bear, Ursus Maritimus'], concepts), [-1, 0, 1]);
});

test('falcon run: every stage through the interfaces, resumable, and the report renders in headless Chromium', async (t) => {
  const dir = tempDir(), calls = { represent: 0 };
  mkdirSync(join(dir, 'run'));
  const inputs = await fakeWorld(dir, calls);
  const opts = { batch: 8, sigmas: 1, lowly: { minSimilarity: 0.1 }, captions: { k: 2 } };
  const out = await runFalcon(inputs, join(dir, 'run'), opts);
  assert.equal(calls.represent, 4);
  assert.deepEqual(out.map((g) => g.group), ['1']);
  const g = out[0];
  assert.deepEqual(g.high, Array.from({ length: 12 }, (_, i) => i));
  assert.deepEqual(g.boxes![0], [0, 0, 8, 8], 'the crop is the red blob');
  assert.ok(g.interpretability! > 0.99, `identical crops: ${g.interpretability}`);
  assert.equal(g.low.length, 10);
  const red = g.words.find((w) => w.term === 'red');
  assert.ok(red && g.words.every((w) => w.score <= red.score), JSON.stringify(g.words));
  assert.ok(!g.words.some((w) => w.term === 'blue'));
  const csv = readFileSync(join(dir, 'run', 'concepts.csv'), 'utf8').split('\n');
  assert.equal(csv[0], 'group,words,phrases,interpretability,random_baseline,explained');
  assert.match(csv[1], /^1,"?[a-z]+:[0-9.]+;.*red:0\.\d{4}.*,1\.0000,0\.\d{4},yes$/);
  // 12 random images mix red and blue ones: chance scores below the group's identical crops.
  assert.ok(g.explained && g.baseline! < g.interpretability! - 0.05, `baseline ${g.baseline}`);
  // Below the interpretability threshold a group is scored and reported, not captioned; explainAll lifts it.
  const [strict] = await runFalcon(inputs, join(dir, 'strict'), { ...opts, interpretableAbove: 1.01 });
  assert.ok(!strict.explained && strict.words.length === 0 && strict.interpretability! > 0.99);
  const [all] = await runFalcon(inputs, join(dir, 'all'), { ...opts, interpretableAbove: 1.01, explainAll: true });
  assert.deepEqual(all.words, g.words);
  // Resume: nothing is recomputed.
  const before = calls.represent;
  await runFalcon(inputs, join(dir, 'run'), opts);
  assert.equal(calls.represent, before);

  if (!existsSync('/usr/bin/chromium')) return t.skip('/usr/bin/chromium is absent: report not checked in a browser');
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    await page.goto(pathToFileURL(join(dir, 'run', 'report.html')).href, { waitUntil: 'load' });
    const r = await page.evaluate(() => ({
      groups: [...document.querySelectorAll('section.group')].map((s) => s.getAttribute('data-group')),
      crops: [...document.querySelectorAll('.crops img')].map((i) => (i as HTMLImageElement).naturalWidth),
      lowly: [...document.querySelectorAll('.lowly img')].map((i) => (i as HTMLImageElement).naturalWidth),
      words: [...document.querySelectorAll('table.terms td:first-child')].map((td) => td.textContent),
    }));
    assert.deepEqual(r.groups, ['1']);
    assert.deepEqual(r.crops, Array(12).fill(224));
    assert.deepEqual(r.lowly, Array(10).fill(16));
    assert.ok(r.words.includes('red'));
  } finally {
    await browser.close();
  }
});

test('falcon run: a rerun with another model layer or caption temperature recomputes what it changes; a stopped rerun leaves no older report', async () => {
  const dir = tempDir(), calls = { represent: 0 }, run = join(dir, 'run'), at = (f: string) => join(run, f);
  const opts = { batch: 8, sigmas: 1, lowly: { minSimilarity: 0.1 }, captions: { k: 2 } };
  const layer1 = await fakeWorld(dir, calls), layer2 = await fakeWorld(dir, calls, 2);
  const first = await runFalcon(layer1, run, opts);
  const reps1 = readFileSync(at('representations.npy'));
  // Another layer: representations, groups and explanations are computed again; the first layer's group is gone.
  const second = await runFalcon(layer2, run, opts);
  assert.deepEqual([first, second].map((out) => out.map((g) => g.group)), [['1'], ['2']]);
  assert.ok(!readFileSync(at('representations.npy')).equals(reps1), 'representations.npy is the new layer\'s');
  assert.deepEqual(Object.keys(JSON.parse(readFileSync(at('groups.json'), 'utf8'))), ['2']);
  assert.deepEqual([readdirSync(at('groups')), readdirSync(at('crops'))], [['g2.json'], ['g2']]);
  assert.match(readFileSync(at('concepts.csv'), 'utf8'), /\n2,/);
  // Another temperature: representations and groups are reused, the explanation is computed again (cosine scores).
  const before = calls.represent, reused: string[] = [];
  const cosine = await runFalcon(layer2, run, { ...opts, captions: { k: 2, softmaxTemperature: 0 }, onStage: (s, _d, _t, cached) => cached && reused.push(s) });
  assert.equal(calls.represent, before);
  assert.deepEqual(reused, ['representations', 'groups']);
  assert.notDeepEqual(cosine[0].captions.high[0].scores, second[0].captions.high[0].scores);
  assert.deepEqual(JSON.parse(readFileSync(at('groups/g2.json'), 'utf8')).captions, cosine[0].captions);
  // A rerun with other inputs stopped part-way: nothing of the run before it is left to pass for this one's.
  const ac = new AbortController();
  await assert.rejects(runFalcon(layer1, run, { ...opts, signal: ac.signal, onStage: () => ac.abort() }), { code: 'ERR_ABORTED' });
  for (const f of ['representations.npy', 'groups.json', 'firing.json', 'groups', 'crops', 'concepts.csv', 'report.html']) assert.ok(!existsSync(at(f)), f);
  assert.deepEqual(await runFalcon(layer1, run, opts), first);
});

test('falcon run: a rerun with another maxGroups explains only the groups not explained yet, and reports the ones asked for', async () => {
  const dir = tempDir(), run = join(dir, 'run'), explained: string[] = [];
  const opts = { batch: 8, sigmas: 1, lowly: { minSimilarity: 0.1 }, captions: { k: 2 } };
  const world = await fakeWorld(dir, { represent: 0 }, 1, 3);
  const counted: RunInputs = { ...world, model: { ...world.model, camLayers: (imgs, group) => (explained.push(group.join(',')), world.model.camLayers(imgs, group)) } };
  const one = await runFalcon(counted, run, { ...opts, maxGroups: 1 });
  const two = await runFalcon(counted, run, { ...opts, maxGroups: 2 });
  assert.deepEqual([one.map((g) => g.group), two.map((g) => g.group)], [['2'], ['2', '1']]);
  assert.deepEqual(explained, ['2', '1'], 'group 2 is explained once');
  assert.deepEqual(two[0], one[0]);
  // What a run asking for both from the start writes.
  assert.deepEqual(await runFalcon(world, join(dir, 'fresh'), { ...opts, maxGroups: 2 }), two);
  assert.equal(readFileSync(join(run, 'concepts.csv'), 'utf8'), readFileSync(join(dir, 'fresh', 'concepts.csv'), 'utf8'));
  // Fewer again: nothing is explained, the report lists the group asked for.
  assert.deepEqual(await runFalcon(counted, run, { ...opts, maxGroups: 1 }), one);
  assert.deepEqual(explained, ['2', '1']);
  assert.doesNotMatch(readFileSync(join(run, 'concepts.csv'), 'utf8'), /\n1,/);
  // Another setting still explains every group again.
  await runFalcon(counted, run, { ...opts, maxGroups: 2, seed: 7 });
  assert.deepEqual(explained, ['2', '1', '2', '1']);
});

test('`falcon run` on SqueezeNet: fire22 tapped and pooled into representations, every output written', async (t) => {
  const assets = assetsDir(), model = assets && join(assets, 'models/squeezenet1.1/squeezenet1.1.onnx');
  if (!model || !existsSync(model)) return t.skip('needs the assets mirror (CONCEPTLENS_ASSETS) with SqueezeNet');
  const dir = tempDir(), images = join(dir, 'images'), samples = join(assets!, 'images/imagenet-samples');
  mkdirSync(images);
  for (const f of readdirSync(samples).filter((f) => f.endsWith('.JPEG')).sort().slice(0, 6)) symlinkSync(join(samples, f), join(images, f));
  // The classifier itself stands in for the image encoder (1000-d logits), with a random 1000-d caption vocabulary.
  writeNpy(join(dir, 'V.npy'), randn(20 * 1000, 41), [20, 1000]);
  writeFileSync(join(dir, 'V.txt'), Array.from({ length: 20 }, (_, i) => `caption ${i}`).join('\n'));
  const run = ['run', '--model', model, '--layer', 'fire22', '--images', images, '--captions', join(dir, 'V.npy'), '--encoder', model,
    '--out', join(dir, 'run'), '--batch', '3'];
  await falconCli(run);
  const h = readNpyHeader(join(dir, 'run', 'representations.npy'));
  assert.deepEqual(h.shape, [6, 512]);
  const r = readNpyRows(h, 0, 6) as Float32Array;
  assert.ok(r.every((v) => Number.isFinite(v) && v >= 0), 'fire22 follows a ReLU: pooled values are finite and non-negative');
  for (const f of ['groups.json', 'firing.json', 'concepts.csv', 'report.html']) assert.ok(existsSync(join(dir, 'run', f)), f);
  await assert.rejects(falconCli(run.map((a) => (a === 'fire22' ? 'nonexistent' : a)).map((a, i, all) => (all[i - 1] === '--out' ? join(dir, 'run2') : a))),
    /tensor 'nonexistent' not found/);
});

test('`falcon run` refuses an --out whose replaced folders hold --images, that lies inside --images (links followed), or that holds their names with no record of a run', async () => {
  const dir = tempDir(), images = join(dir, 'images'), model = join(tempDir(), 'm.onnx');
  mkdirSync(images);
  writeFileSync(model, 'never loaded: the --out checks come first');
  const run = (out: string) => runCli(['falcon', 'run', '--model', model, '--layer', 'x', '--images', images, '--captions', 'c.npy', '--encoder', model, '--out', out]);
  for (const [out, message] of [[dir, /--images: '.*images' is inside .*images, which the run replaces; give another --out/],
    [join(images, 'run'), /--out: '.*run' is inside --images '.*images'; a rerun would read its crops as images/]] as const) {
    const r = await run(out);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, message);
  }
  assert.deepEqual(readdirSync(dir), ['images']);
  assert.deepEqual(readdirSync(images), []);
  // A folder that holds names a run replaces (here the user's own images/) but no record of a run is refused
  // before anything loads, and left as it was; so is one reached through a link to the --images folder.
  const mine = join(dir, 'mine');
  mkdirSync(join(mine, 'images'), { recursive: true });
  writeFileSync(join(mine, 'images', 'photo.png'), 'mine');
  const r = await run(mine);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /mine: holds images but no record of a FALCON run \(stages\/representations\), and a run replaces those; give an empty or new --out/);
  assert.equal(readFileSync(join(mine, 'images', 'photo.png'), 'utf8'), 'mine');
  symlinkSync(images, join(dir, 'link'));
  const linked = await run(join(dir, 'link', 'run'));
  assert.equal(linked.code, 2, linked.stderr);
  assert.match(linked.stderr, /--out: '.*link\/run' is inside --images/);
});

test('`falcon run` into the same --out with another --layer or --temperature: the stages they change are computed again, and said so', async (t) => {
  const assets = assetsDir(), model = assets && join(assets, 'models/squeezenet1.1/squeezenet1.1.onnx');
  if (!model || !existsSync(model)) return t.skip('needs the assets mirror (CONCEPTLENS_ASSETS) with SqueezeNet');
  const dir = tempDir(), images = join(dir, 'images'), samples = join(assets!, 'images/imagenet-samples'), out = join(dir, 'run');
  mkdirSync(images);
  for (const f of readdirSync(samples).filter((f) => f.endsWith('.JPEG')).sort().slice(0, 6)) symlinkSync(join(samples, f), join(images, f));
  // The classifier stands in for the image encoder (1000-d logits); captions of real words, so concepts have scores.
  writeNpy(join(dir, 'V.npy'), randn(20 * 1000, 43), [20, 1000]);
  const things = ['dog', 'bird', 'truck', 'flower', 'boat'], colours = ['red', 'green', 'yellow', 'black'];
  writeFileSync(join(dir, 'V.txt'), Array.from({ length: 20 }, (_, i) => `a ${colours[i % 4]} ${things[i % 5]}`).join('\n'));
  const run = (layer: string, temperature: string) => runCli(['falcon', 'run', '--model', model, '--layer', layer, '--images', images, '--captions', join(dir, 'V.npy'),
    '--encoder', model, '--more-than', '0', '--max-groups', '2', '--all-groups', '--temperature', temperature, '--out', out]);
  const read = (f: string) => readFileSync(join(out, f));
  const ok = async (r: Promise<{ code: number; stderr: string }>) => {
    const done = await r;
    assert.equal(done.code, 0, done.stderr);
    return done.stderr;
  };
  await ok(run('fire22', '100'));
  const fire22 = read('representations.npy');
  assert.doesNotMatch(await ok(run('fire19', '100')), /reused/);
  assert.ok(!read('representations.npy').equals(fire22), 'representations.npy is fire19\'s, not fire22\'s');
  const groups = JSON.parse(read('groups.json').toString()), csv = read('concepts.csv').toString();
  assert.ok(Object.keys(groups).length >= 1, 'groups to explain');
  const cosine = await ok(run('fire19', '0'));
  assert.match(cosine, /representations: reused/);
  assert.match(cosine, /groups: reused/);
  assert.doesNotMatch(cosine, /explanations: reused/);
  assert.notEqual(read('concepts.csv').toString(), csv, 'concepts.csv has the plain-cosine scores');
  assert.match(await ok(run('fire19', '0')), /explanations: reused/);
  // --json: the explained groups as concepts.csv lists them.
  const json = await runCli(['falcon', 'run', '--model', model, '--layer', 'fire19', '--images', images, '--captions', join(dir, 'V.npy'),
    '--encoder', model, '--more-than', '0', '--max-groups', '2', '--all-groups', '--temperature', '0', '--out', out, '--json']);
  assert.equal(json.code, 0, json.stderr);
  const listed = JSON.parse(json.stdout) as { group: string; words: string[] }[];
  assert.deepEqual(listed.map((g) => g.group), read('concepts.csv').toString().trim().split('\n').slice(1).map((l) => (l.startsWith('"') ? l.slice(1, l.indexOf('"', 1)) : l.split(',')[0])));
});
