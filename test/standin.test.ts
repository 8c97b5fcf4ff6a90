import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { assetsDir } from '../ts/assets.js';
import { readNpy } from '../ts/io/npy.js';
import {
  STANDIN_LABEL, StandinImageTower, imagenetClasses, imagenetToLvis, logitsToClipSpace, lvisTextEmbeddings, openImageTower, zeroShotLvis,
} from '../ts/encoders/standin.js';
import { randn } from './helpers.js';

const assets = assetsDir();
const ready = !!assets && existsSync(join(assets, 'models', 'squeezenet1.1', 'squeezenet1.1.onnx'));
const SKIP = 'needs the assets mirror (CONCEPTLENS_ASSETS)';

test('ImageNet classes map to LVIS concepts through WordNet names, most specific first', (t) => {
  if (!ready) return t.skip(SKIP);
  const classes = imagenetClasses();
  assert.equal(classes[0].wnid, 'n01440764');
  assert.deepEqual(classes[1].synonyms, ['goldfish', 'Carassius auratus']);
  const m = imagenetToLvis();
  const concept = (i: number) => m.lvisNames[m.lvis[i]];
  assert.equal(concept(1), 'goldfish'); // own synonym
  assert.equal(concept(151), 'dog'); // Chihuahua -> ancestor 'dog'
  assert.equal(concept(504), 'mug'); // coffee mug -> head noun
  assert.equal(concept(340), 'zebra');
  const mapped = m.lvis.filter((v) => v >= 0).length;
  assert.ok(mapped > 600 && mapped < 1000, `${mapped} classes mapped`);
});

test('logitsToClipSpace is the softmax-weighted mix of unit concept embeddings (float64 reference)', () => {
  const classes = 6, d = 5, n = 3;
  const text = { data: randn(4 * d, 2), dim: d };
  for (let j = 0; j < 4; j++) {
    const row = text.data.subarray(j * d, (j + 1) * d);
    const s = Math.hypot(...row);
    row.forEach((v, k) => (row[k] = v / s));
  }
  const map = Int32Array.from([0, 2, -1, 2, 3, 1]);
  const logits = randn(n * classes, 3, 3);
  for (const T of [1, 0.5]) {
    const got = logitsToClipSpace(logits, n, map, text, T);
    for (let r = 0; r < n; r++) {
      const p = Array.from(logits.subarray(r * classes, (r + 1) * classes), (v) => Math.exp(v / T));
      const z = p.reduce((a, b) => a + b, 0);
      const ref = new Float64Array(d);
      p.forEach((pi, i) => map[i] >= 0 && ref.forEach((_, k) => (ref[k] += (pi / z) * text.data[map[i] * d + k])));
      const s = Math.hypot(...ref);
      for (let k = 0; k < d; k++) assert.ok(Math.abs(got[r * d + k] - ref[k] / s) < 1e-5);
    }
  }
});

test('zeroShotLvis counts the rank of the target concept among all concepts', () => {
  const text = { data: Float32Array.from([1, 0, 0, 1, 0.6, 0.8]), rows: 3, dim: 2 };
  const emb = Float32Array.from([1, 0, 0.6, 0.8, 0, 1]);
  // image 0 -> concept 0 (rank 0), image 1 -> concept 1 (rank 1: concept 2 is closer), image 2 -> unmapped class
  const r = zeroShotLvis(emb, [0, 1, 2], Int32Array.from([0, 1, -1]), text);
  assert.deepEqual(r, { scored: 2, top1: 0.5, top5: 1 });
});

test('the stand-in tower embeds SqueezeNet reference inputs into unit CLIP-space rows and says it is a stand-in', async (t) => {
  if (!ready) return t.skip(SKIP);
  const tower = await openImageTower();
  try {
    assert.ok(tower.standin && tower instanceof StandinImageTower);
    assert.equal(tower.label, STANDIN_LABEL);
    assert.match(tower.label, /STAND-IN/);
    assert.equal(tower.dim, 512);
    const dir = join(assets!, 'models', 'squeezenet1.1', 'test_data_set_0');
    const x = readNpy(join(dir, 'input_0.npy')), y = readNpy(join(dir, 'output_0.npy'));
    const got = await tower.encode(x.data as Float32Array, x.shape);
    const ref = logitsToClipSpace(y.data as Float32Array, 1, (tower as StandinImageTower).map.lvis, lvisTextEmbeddings());
    assert.equal(got.shape[1], 512);
    for (let k = 0; k < 512; k++) assert.ok(Math.abs(got.data[k] - ref[k]) < 1e-4);
    assert.ok(Math.abs(Math.hypot(...got.data) - 1) < 1e-5);
  } finally {
    await tower.close();
  }
});
