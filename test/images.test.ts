import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import {
  centreCropBox, imageGrid, preprocessBatch, preprocessImage, preprocessSpec, resizedSize, IMAGENET_MEAN, IMAGENET_STD,
  type PreprocessSpec,
} from '../ts/images/preprocess.js';
import { tempDir } from './helpers.js';

/** A lossless PNG whose pixel (x, y) is fn(x, y) = [r, g, b]. */
async function syntheticPng(width: number, height: number, fn: (x: number, y: number) => number[]): Promise<{ png: Buffer; rgb: Uint8Array }> {
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) rgb.set(fn(x, y), (y * width + x) * 3);
  const png = await sharp(rgb, { raw: { width, height, channels: 3 } }).png().toBuffer();
  return { png, rgb };
}

const pattern = (x: number, y: number) => [(x * 7 + y * 3) % 256, (x * x + y) % 256, (x ^ y) & 255];

/** float64 reference of crop + ToTensor + Normalize on raw pixels (no resampling). */
function referenceTensor(rgb: Uint8Array, width: number, left: number, top: number, crop: number, spec: PreprocessSpec): Float64Array {
  const out = new Float64Array(3 * crop * crop);
  for (let c = 0; c < 3; c++)
    for (let y = 0; y < crop; y++)
      for (let x = 0; x < crop; x++)
        out[c * crop * crop + y * crop + x] = (rgb[((top + y) * width + left + x) * 3 + c] / 255 - spec.mean[c]) / spec.std[c];
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

test('resize and centre-crop arithmetic follow torchvision Resize(int) + CenterCrop', () => {
  assert.deepEqual(resizedSize(500, 375, 256), { width: 341, height: 256 }); // int(256 * 500 / 375) = 341
  assert.deepEqual(resizedSize(375, 500, 224), { width: 224, height: 298 });
  assert.deepEqual(resizedSize(300, 300, 224), { width: 224, height: 224 });
  // round((301 - 224) / 2) = round(38.5) = 38 in Python (half to even); round(39.5) = 40.
  assert.deepEqual(centreCropBox(301, 256, 224), { left: 38, top: 16, width: 224, height: 224 });
  assert.deepEqual(centreCropBox(303, 224, 224), { left: 40, top: 0, width: 224, height: 224 });
});

test('crop offsets and mean/std normalisation match a float64 reference to 1e-6 (no resampling case)', async () => {
  // Shorter side already equals the resize target, so only crop + normalise act.
  for (const [w, h] of [[320, 256], [256, 301]]) {
    const { png, rgb } = await syntheticPng(w, h, pattern);
    const spec = preprocessSpec('imagenet');
    const got = await preprocessImage(png, spec);
    const box = centreCropBox(w, h, 224);
    assert.ok(maxAbsDiff(got, referenceTensor(rgb, w, box.left, box.top, 224, spec)) < 1e-6, `${w}x${h}`);
  }
  const clip = preprocessSpec('clip');
  const { png, rgb } = await syntheticPng(224, 250, pattern);
  assert.ok(maxAbsDiff(await preprocessImage(png, clip), referenceTensor(rgb, 224, 0, 13, 224, clip)) < 1e-6);
});

test('resizing keeps geometry: a 2x downscaled ramp stays the ramp, a flat colour stays flat', async () => {
  // Red is a ramp in x: a centred antialiased 2x reduction averages neighbours 2x and 2x+1.
  const { png } = await syntheticPng(448, 512, (x) => [x >> 1, 100, 200]);
  const spec = { ...preprocessSpec('imagenet'), resize: 224, crop: 224, kernel: 'linear' as const };
  const got = await preprocessImage(png, spec);
  for (let y = 10; y < 214; y += 17)
    for (let x = 4; x < 220; x += 5) {
      const red = got[y * 224 + x] * IMAGENET_STD[0] + IMAGENET_MEAN[0];
      assert.ok(Math.abs(red * 255 - x) <= 1, `red at (${x}, ${y}): ${red * 255}`);
      const green = got[224 * 224 + y * 224 + x] * IMAGENET_STD[1] + IMAGENET_MEAN[1];
      assert.ok(Math.abs(green * 255 - 100) < 1e-3);
    }
});

test('a box crop equals preprocessing the region cut out beforehand', async () => {
  const { png } = await syntheticPng(400, 300, pattern);
  const box = { left: 37, top: 21, width: 250, height: 180 };
  const cut = await sharp(png).extract(box).png().toBuffer();
  for (const name of ['clip', 'imagenet']) {
    const spec = preprocessSpec(name);
    assert.ok(maxAbsDiff(await preprocessImage(png, spec, box), await preprocessImage(cut, spec)) < 1e-6, name);
  }
  await assert.rejects(preprocessImage(png, preprocessSpec('clip'), { left: 300, top: 0, width: 200, height: 10 }), /not inside the 400x300 image/);
});

test('a batch lists corrupt and non-image files and keeps going', async () => {
  const dir = tempDir();
  const a = join(dir, 'a.png'), bad = join(dir, 'b.jpg'), text = join(dir, 'c.txt'), d = join(dir, 'd.png');
  writeFileSync(a, (await syntheticPng(240, 260, pattern)).png);
  const jpeg = await sharp((await syntheticPng(260, 240, pattern)).png).jpeg().toBuffer();
  writeFileSync(bad, jpeg.subarray(0, jpeg.length >> 1)); // truncated JPEG
  writeFileSync(text, 'not an image\n');
  writeFileSync(d, (await syntheticPng(300, 224, pattern)).png);
  const spec = preprocessSpec('clip');
  const batch = await preprocessBatch([a, bad, text, d, join(dir, 'missing.png')], spec, { concurrency: 2 });
  assert.deepEqual(batch.paths, [a, d]);
  assert.deepEqual(batch.indices, [0, 3]);
  assert.deepEqual(batch.shape, [2, 3, 224, 224]);
  assert.deepEqual(batch.skipped.map((s) => s.path), [bad, text, join(dir, 'missing.png')]);
  assert.ok(batch.skipped.every((s) => s.reason.length > 0));
  assert.ok(maxAbsDiff(batch.data.subarray(3 * 224 * 224), await preprocessImage(d, spec)) === 0);
});

test('presets and overrides are validated', () => {
  assert.deepEqual(preprocessSpec('clip', { resize: 336, crop: 336 }).crop, 336);
  assert.throws(() => preprocessSpec('vit'), { code: 'ERR_ARG', message: "preprocess: expected one of clip, imagenet, got 'vit'" });
  assert.throws(() => preprocessSpec('imagenet', { crop: 300 }), /preprocess crop: expected at most the resized shorter side 256, got 300/);
});

test('image grid places each tile in its cell', async () => {
  const colours = [[255, 0, 0], [0, 255, 0], [0, 0, 255]];
  const tiles = await Promise.all(colours.map(async (c) => (await syntheticPng(50, 80, () => c)).png));
  const grid = await imageGrid(tiles, { columns: 2, cell: 32, gap: 4, captions: ['red', 'green', 'blue'] });
  const { data, info } = await sharp(grid).raw().toBuffer({ resolveWithObject: true });
  assert.equal(info.width, 4 + 2 * 36);
  assert.equal(info.height, 4 + 2 * (36 + 18));
  colours.forEach((c, i) => {
    const x = 4 + (i % 2) * 36 + 16, y = 4 + Math.floor(i / 2) * 54 + 16;
    const at = (y * info.width + x) * info.channels;
    assert.deepEqual([...data.subarray(at, at + 3)], c, `tile ${i}`);
  });
  const jpeg = await imageGrid(tiles, { format: 'jpeg' });
  assert.equal((await sharp(jpeg).metadata()).format, 'jpeg');
});
