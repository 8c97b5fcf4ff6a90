// bench embed: images/s of file read + JPEG decode + resize/crop + normalise
// + SqueezeNet 1.1 (onnxruntime, in its worker) on the ImageNet samples, each
// stage timed alone (median), with its share of the staged total, and the
// pipelined `embedImages` run (prefetching the next batch while the model
// runs) for the end-to-end rate.
import type { Command } from 'commander';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { assetPath } from '../ts/assets.js';
import { embedImages } from '../ts/encoders/embed-images.js';
import { ImageEncoder } from '../ts/encoders/onnx.js';
import { mapBounded, normaliseInto, preprocessPixels, preprocessSpec } from '../ts/images/preprocess.js';
import { machine, reportAction, timeMedian, type BenchRow } from './report.js';
import { integer } from '../ts/cli/options.js';

export interface EmbedBenchParams {
  images: number;
  batch: number;
  concurrency: number;
  threads: number | null;
  repeats: number;
  fastDecode: boolean;
}

export async function benchEmbed(p: EmbedBenchParams) {
  const dir = assetPath('images/imagenet-samples');
  const model = assetPath('models/squeezenet1.1/squeezenet1.1.onnx');
  const files = readdirSync(dir).filter((f) => f.endsWith('.JPEG')).sort().slice(0, p.images).map((f) => join(dir, f));
  const spec = preprocessSpec('imagenet', { fastShrinkOnLoad: p.fastDecode });
  const per = 3 * spec.crop * spec.crop;
  const each = <T, R>(xs: T[], fn: (x: T) => Promise<R>) => mapBounded(xs, p.concurrency, fn);

  let bytes: Buffer[] = [], pixels: Buffer[] = [];
  const tensor = new Float32Array(files.length * per);
  const read = await timeMedian(async () => (bytes = await each(files, (f) => readFile(f))), p.repeats);
  // Full-size decode alone; with shrink-on-load the decode is fused into the resize and is not separable.
  const decode = p.fastDecode ? 0 : await timeMedian(() => each(bytes, (b) => sharp(b).raw().toBuffer()), p.repeats);
  const decodeResize = await timeMedian(async () => (pixels = await each(bytes, (b) => preprocessPixels(b, spec))), p.repeats);
  const normalise = await timeMedian(() => pixels.forEach((px, i) => normaliseInto(px, spec, tensor, i * per)), p.repeats);
  const enc = await ImageEncoder.load(model, { batchSize: p.batch, threads: p.threads ?? undefined });
  let infer: number;
  try {
    infer = await timeMedian(() => enc.encode(tensor, [files.length, 3, spec.crop, spec.crop]), p.repeats);
  } finally {
    await enc.close();
  }
  const sharpStages: [string, number][] = p.fastDecode ? [['decode_resize_crop', decodeResize]] : [['decode', decode], ['resize_crop', Math.max(0, decodeResize - decode)]];
  const stages: [string, number][] = [['read', read], ...sharpStages, ['normalise', normalise], ['squeezenet', infer]];
  const staged = stages.reduce((s, [, t]) => s + t, 0);
  const results: BenchRow[] = stages.map(([name, seconds]) => ({ name, seconds, images_per_s: files.length / seconds, share: seconds / staged }));
  results.push({ name: 'staged_total', seconds: staged, images_per_s: files.length / staged, share: 1 });

  // End to end through the CLI's code path, on a folder holding just these files.
  const work = mkdtempSync(join(tmpdir(), 'conceptlens-bench-embed-'));
  try {
    mkdirSync(join(work, 'images'));
    for (const f of files) symlinkSync(f, join(work, 'images', f.slice(dir.length + 1)));
    const pipeline = await timeMedian(() => embedImages({
      model, images: join(work, 'images'), out: join(work, 'x.npy'), spec, batchSize: p.batch, concurrency: p.concurrency,
      encoder: { threads: p.threads ?? undefined }, restart: true,
    }), p.repeats);
    results.push({ name: 'pipelined_embed_incl_model_load', seconds: pipeline, images_per_s: files.length / pipeline });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return { suite: 'embed', params: { ...p, model: 'squeezenet1.1', preprocess: 'imagenet' }, machine: await machine(), results };
}

export function registerBenchEmbed(bench: Command): void {
  bench
    .command('embed')
    .description('images/s of decode + preprocess + SqueezeNet 1.1 (onnxruntime), with each stage\'s share of the time')
    .option('--images <n>', 'ImageNet sample images to use', integer('--images'), 96)
    .option('--batch <n>', 'images per model call', integer('--batch'), 32)
    .option('--concurrency <n>', 'images decoded at once', integer('--concurrency'), 2)
    .option('--threads <n>', 'onnxruntime intra-op threads (default: all cores)', integer('--threads'))
    .option('--repeats <n>', 'timed repeats (median)', integer('--repeats'), 3)
    .option('--fast-decode', 'JPEG shrink-on-load before resizing (as `embed --fast-decode`)')
    .option('--json', 'print one JSON object')
    .action(reportAction((o: Omit<EmbedBenchParams, 'threads' | 'fastDecode'> & { threads?: number; fastDecode?: boolean }) =>
      benchEmbed({ ...o, threads: o.threads ?? null, fastDecode: !!o.fastDecode })));
}
