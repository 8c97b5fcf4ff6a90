// SpLiCE's concept-level comparisons: a concept planted into part of one image
// set must come out as a positive, significant shift, and an untouched
// concept must not; a concept planted into one class must come out as that
// class's spurious-correlation candidate, beyond the class concept itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assetsDir } from '../ts/assets.js';
import { parseCsv } from '../ts/io/csv.js';
import { readMatrix } from '../ts/io/matrix.js';
import { writeNpy } from '../ts/io/npy.js';
import { readLines } from '../ts/io/text.js';
import { normaliseRows } from '../ts/matrix.js';
import { classAssociations, compareWeights, type WeightRows } from '../ts/methods/splice-compare.js';
import { cliOk, rng, randn, runCli, tempDir } from './helpers.js';

/** Real CLIP text embeddings of the LVIS concepts when the mirror is there, else random directions with the same names. */
function conceptSet(): { names: string[]; vectors: Float32Array; d: number; real: boolean } {
  const dir = assetsDir() && join(assetsDir()!, 'embeddings', 'detic');
  if (dir && existsSync(join(dir, 'lvis_v1_clip_a+cname.npy'))) {
    const m = readMatrix(join(dir, 'lvis_v1_clip_a+cname.npy'));
    return { names: readLines(join(dir, 'lvis_v1_names.txt')), vectors: normaliseRows(m.data, m.cols), d: m.cols, real: true };
  }
  const d = 64, c = 300;
  return { names: Array.from({ length: c }, (_, j) => (j === 0 ? 'dog' : j === 1 ? 'boat' : j === 2 ? 'bird' : `concept_${j}`)), vectors: normaliseRows(randn(c * d, 3), d), d, real: false };
}

/**
 * n images, each a mix of 3 background concepts, "dog" in half of them (both sets alike), and `planted` added to
 * the first `plantedShare` of them; plus a little noise.
 */
function images(set: ReturnType<typeof conceptSet>, n: number, seed: number, planted?: { concept: string; share: number }): Float32Array {
  const rand = rng(seed), d = set.d, out = new Float32Array(n * d), row = (name: string) => set.names.indexOf(name);
  const background = Array.from({ length: 40 }, (_, k) => 10 + 7 * k);
  const add = (i: number, j: number, w: number) => {
    for (let t = 0; t < d; t++) out[i * d + t] += w * set.vectors[j * d + t];
  };
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < 3; k++) add(i, background[Math.floor(rand() * background.length)], 0.5 + rand());
    if (rand() < 0.5) add(i, row('dog'), 1);
    if (planted && i < planted.share * n) add(i, row(planted.concept), 1);
    for (let t = 0; t < d; t++) out[i * d + t] += 0.01 * (rand() - 0.5);
  }
  return out;
}

test('`splice compare` finds a planted concept shift with the right sign and an interval excluding 0, and no shift of an untouched concept', async () => {
  const set = conceptSet(), dir = tempDir('splice-compare-'), n = 160;
  writeNpy(join(dir, 'C.npy'), set.vectors, [set.names.length, set.d]);
  writeFileSync(join(dir, 'names.txt'), set.names.join('\n') + '\n');
  writeNpy(join(dir, 'A.npy'), images(set, n, 1), [n, set.d]);
  writeNpy(join(dir, 'B.npy'), images(set, n, 2, { concept: 'boat', share: 0.4 }), [n, set.d]);
  const out = await cliOk(['splice', 'compare', '--a', join(dir, 'A.npy'), '--b', join(dir, 'B.npy'), '--concepts', join(dir, 'C.npy'),
    '--concept-names', join(dir, 'names.txt'), '--l1', '0.1', '--resamples', '400', '--out', join(dir, 'out'), '--json']);
  const summary = JSON.parse(out);
  assert.equal(summary.top[0].concept, 'boat', `the planted concept changed most (${set.real ? 'real LVIS' : 'synthetic'} concepts): ${out}`);
  const rows = parseCsv(readFileSync(join(dir, 'out', 'compare.csv'), 'utf8')), head = rows[0];
  const row = (concept: string) => Object.fromEntries(head.map((h, k) => [h, rows.find((r) => r[0] === concept)![k]]));
  const boat = row('boat'), dog = row('dog');
  assert.ok(Number(boat.change) > 0 && Number(boat.ci_lo) > 0 && boat.significant === 'yes', `boat: ${JSON.stringify(boat)}`);
  assert.ok(Number(dog.mean_a) > 0.05 && Number(dog.mean_b) > 0.05, `dog is used in both sets: ${JSON.stringify(dog)}`);
  assert.ok(Number(dog.ci_lo) < 0 && Number(dog.ci_hi) > 0 && dog.significant === 'no', `dog did not change: ${JSON.stringify(dog)}`);
  const svg = readFileSync(join(dir, 'out', 'compare.svg'), 'utf8');
  assert.match(svg, /^<svg[^>]*role="img"/);
  assert.match(svg, />boat</);
});

/** Weights of n images over 4 concepts, concept 1 at `rate` with weight 1 (concept 0 always, others noise). */
function plantedWeights(n: number, seed: number, rate: number): WeightRows {
  const rand = rng(seed), data = new Float32Array(n * 4);
  for (let i = 0; i < n; i++) {
    data[i * 4] = 0.5 + 0.1 * rand();
    data[i * 4 + 1] = rand() < rate ? 1 : 0;
    data[i * 4 + 2] = rand() < 0.3 ? 0.2 * rand() : 0;
  }
  return { data, rows: n, cols: 4 };
}

test('compareWeights: bootstrap intervals bracket the means, the planted change is significant and signed, unused concepts are left out', () => {
  const names = ['base', 'planted', 'noise', 'unused'];
  const r = compareWeights(plantedWeights(200, 1, 0.1), plantedWeights(200, 2, 0.5), names, { resamples: 300 });
  assert.deepEqual(r.shifts.map((s) => s.concept).sort(), ['base', 'noise', 'planted']);
  const planted = r.shifts[0];
  assert.equal(planted.concept, 'planted');
  assert.ok(planted.change > 0.3 && planted.ci[0] > 0.25 && planted.ci[1] < 0.55 && planted.significant, JSON.stringify(planted));
  for (const s of r.shifts) {
    assert.ok(s.ciA[0] <= s.meanA && s.meanA <= s.ciA[1] && s.ciB[0] <= s.meanB && s.meanB <= s.ciB[1], JSON.stringify(s));
    assert.ok(s.ci[0] <= s.change && s.change <= s.ci[1]);
  }
  // The reverse comparison flips the sign, and the same seed gives the same intervals.
  const back = compareWeights(plantedWeights(200, 2, 0.5), plantedWeights(200, 1, 0.1), names, { resamples: 300 });
  assert.ok(back.shifts[0].change < 0 && back.shifts[0].ci[1] < 0);
  assert.deepEqual(compareWeights(plantedWeights(200, 1, 0.1), plantedWeights(200, 2, 0.5), names, { resamples: 300 }), r);
});

test('classAssociations: a concept planted into one class is its spurious-correlation candidate; the class concept itself is left out', () => {
  const names = ['bird', 'water', 'tree', 'car'], classes = ['bird', 'car'], n = 200, rand = rng(4);
  const labels = Int32Array.from({ length: n }, (_, i) => (i < 80 ? 0 : 1)), data = new Float32Array(n * 4);
  for (let i = 0; i < n; i++) {
    data[i * 4 + (labels[i] === 0 ? 0 : 3)] = 0.8 + 0.2 * rand(); // the class concept
    if (labels[i] === 0 && rand() < 0.6) data[i * 4 + 1] = 0.3 + 0.1 * rand(); // water, with birds only
    if (rand() < 0.4) data[i * 4 + 2] = 0.2; // tree, everywhere alike
  }
  const [bird, car] = classAssociations({ data, rows: n, cols: 4 }, labels, classes, names, { resamples: 300 });
  assert.deepEqual(bird.classConcepts, ['bird']);
  assert.equal(bird.associated[0].concept, 'water');
  assert.ok(bird.associated[0].ci[0] > 0 && bird.associated[0].presenceB > 0.4 && bird.associated[0].presenceA === 0, JSON.stringify(bird.associated[0]));
  assert.ok(!bird.associated.some((a) => a.concept === 'bird' || a.concept === 'tree'), JSON.stringify(bird.associated));
  assert.deepEqual(car.classConcepts, ['car']);
  assert.ok(!car.associated.some((a) => a.concept === 'water'));
});

test('splice compare: mismatched inputs are errors naming the argument', async () => {
  const dir = tempDir('splice-compare-bad-');
  assert.throws(() => compareWeights({ data: new Float32Array(6), rows: 2, cols: 3 }, { data: new Float32Array(8), rows: 2, cols: 4 }, ['a', 'b', 'c']),
    { code: 'ERR_SHAPE', message: /set B: 4 concepts, expected 3/ });
  assert.throws(() => compareWeights({ data: new Float32Array(3), rows: 1, cols: 3 }, { data: new Float32Array(6), rows: 2, cols: 3 }, ['a', 'b', 'c']),
    { code: 'ERR_SHAPE', message: /set A: 1 images; a bootstrap needs at least 2/ });
  writeNpy(join(dir, 'W.npy'), new Float32Array(6), [2, 3]);
  writeFileSync(join(dir, 'names.txt'), 'a\nb\nc\n');
  const noConcepts = await runCli(['splice', 'compare', '--a', join(dir, 'W.npy'), '--b', join(dir, 'W.npy'), '--concept-names', join(dir, 'names.txt'), '--out', join(dir, 'o')]);
  assert.equal(noConcepts.code, 2);
  assert.match(noConcepts.stderr, /--concepts: needed to decompose/);
  const zeros = await runCli(['splice', 'compare', '--weights', '--a', join(dir, 'W.npy'), '--b', join(dir, 'W.npy'), '--concept-names', join(dir, 'names.txt'), '--out', join(dir, 'o')]);
  assert.equal(zeros.code, 1);
  assert.match(zeros.stderr, /every weight is 0 in both sets/);
  // A seed past 2³¹ − 1 would wrap to another seed's resamples; options only decomposing uses are not ignored.
  const w = { data: Float32Array.from([1, 0, 0, 0, 1, 0]), rows: 2, cols: 3 };
  assert.throws(() => compareWeights(w, w, ['a', 'b', 'c'], { seed: 2 ** 32 + 1 }), { code: 'ERR_ARG', message: /seed: expected an integer in 0\.\.2147483647/ });
  const args = ['splice', 'compare', '--weights', '--a', join(dir, 'W.npy'), '--b', join(dir, 'W.npy'), '--concept-names', join(dir, 'names.txt'), '--out', join(dir, 'o')];
  for (const [extra, message] of [[['--seed', '4294967297'], /^error: --seed: expected an integer in 0\.\.2147483647, got '4294967297'/],
    [['--concepts', join(dir, 'W.npy')], /^error: --concepts <npy> would be ignored with --weights/], [['--l1', '0.3'], /^error: --l1 <lambda> would be ignored with --weights/]] as const) {
    const r = await runCli([...args, ...extra]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, message);
  }
});
