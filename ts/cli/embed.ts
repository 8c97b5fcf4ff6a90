// `conceptlens embed`: one row per image (sorted, recursive) from an ONNX
// image model's output or a pooled intermediate tensor; resumable.
import type { Command } from 'commander';
import { preprocessSpec } from '../images/preprocess.js';
import { embedImages, type EmbedImagesOptions, type LabelSource } from '../encoders/embed-images.js';
import { distributedEmbed } from '../distributed/embed.js';
import type { Pool } from '../encoders/onnx.js';
import { progressBar } from './progress.js';
import { existingFile, integer, oneOf } from './options.js';
import { act, UsageError } from './run.js';
import { addQueueOptions, withQueueStatus, type QueueFlags } from './queue.js';

interface EmbedCliOptions extends QueueFlags {
  model?: string;
  standin?: boolean;
  images: string;
  preprocess: string;
  resize?: number;
  crop?: number;
  layer?: string;
  pool: Pool;
  output?: string;
  input?: string;
  out: string;
  labelsOut?: string;
  labelSource: LabelSource;
  classes?: string;
  batch: number;
  threads?: number;
  normalize?: boolean;
  fp16?: boolean;
  restart?: boolean;
  fastDecode?: boolean;
}

/** Options the stand-in tower does not take (it is SqueezeNet's logits mapped into CLIP space, ImageNet preprocessing). */
const NOT_FOR_STANDIN = ['layer', 'output', 'input', 'resize', 'crop'] as const;

async function run(o: EmbedCliOptions, signal: AbortSignal): Promise<void> {
  if (!o.model === !o.standin) throw new UsageError('give either --model M.onnx or --standin');
  const ignored = o.standin ? NOT_FOR_STANDIN.filter((k) => o[k] !== undefined) : [];
  if (ignored.length) throw new UsageError(`--standin: the stand-in tower takes no ${ignored.map((k) => `--${k}`).join(', ')} (it always embeds SqueezeNet's logits with ImageNet preprocessing)`);
  const spec = preprocessSpec(o.standin ? 'imagenet' : o.preprocess, {
    ...(o.resize ? { resize: o.resize } : {}),
    ...(o.crop ? { crop: o.crop } : {}),
    fastShrinkOnLoad: !!o.fastDecode,
  });
  const bar = progressBar('embed', 'images', !o.json && process.stderr.isTTY && !process.env.CI);
  const options: EmbedImagesOptions = {
    model: o.model ?? 'standin', standin: !!o.standin, images: o.images, out: o.out, spec,
    encoder: {
      layer: o.layer, output: o.output, input: o.input,
      pool: o.pool,
      normalize: !!o.normalize, dtype: o.fp16 ? 'float16' : 'float32',
      threads: o.threads, batchSize: o.batch,
    },
    labelsOut: o.labelsOut,
    labelSource: o.labelSource,
    classesFile: o.classes,
    batchSize: o.batch,
    restart: o.restart,
    signal, // stops after the current batch; the checkpoint lets a rerun resume
    onProgress: (done, total) => bar.update(done, total),
  };
  try {
    const r = await withQueueStatus('embed', o, { workDir: `${o.out}.runs`, signal }, (q) =>
      q ? distributedEmbed({ ...options, ...q, partImages: o.partImages }) : embedImages(options));
    bar.stop();
    if (o.json) console.log(JSON.stringify({ out: o.out, labelsOut: o.labelsOut ?? null, ...r }));
    else {
      const resumed = r.resumedAt ? ` (resumed at file ${r.resumedAt})` : '';
      console.error(`wrote ${o.out}: ${r.rows} x ${r.dim} from ${r.files} files${resumed}`);
    }
    if (r.skipped.length) {
      console.error(`skipped ${r.skipped.length} file(s) that are not readable images:`);
      for (const s of r.skipped) console.error(`  ${s.path}: ${s.reason}`);
    }
  } finally {
    bar.stop();
  }
}

export function registerEmbed(program: Command): void {
  addQueueOptions(program
    .command('embed')
    .description('embed every image under a folder (sorted, recursive) with an ONNX model; one row per image')
    .option('--model <path>', 'ONNX image model (a CLIP image export for CLIP-space rows)', existingFile('--model'))
    .option('--standin', 'STAND-IN CLIP ViT-B/32 space tower: SqueezeNet 1.1 class probabilities mixed over CLIP text embeddings of LVIS concepts (ImageNet preprocessing)')
    .requiredOption('--images <dir>', 'folder of images (recursive)')
    .requiredOption('--out <path>', 'output .npy, [images, features]')
    .option('--preprocess <preset>', 'clip | imagenet', oneOf('--preprocess', ['clip', 'imagenet']), 'imagenet')
    .option('--resize <n>', 'shorter side after resizing (overrides the preset)', integer('--resize'))
    .option('--crop <n>', 'centre crop side (overrides the preset)', integer('--crop'))
    .option('--layer <name>', 'tap this intermediate tensor instead of an output')
    .option('--pool <how>', 'pooling of a tapped tensor: avg | max | first | none', oneOf<Pool>('--pool', ['avg', 'max', 'first', 'none']), 'avg')
    .option('--output <name>', 'model output to keep (default: the first)')
    .option('--input <name>', 'model input for the images (default: by convention)')
    .option('--labels-out <path>', 'also write int64 labels, one per row')
    .option('--label-source <how>', 'auto | wnid (nXXXXXXXX_ file names) | folder (class folders)', oneOf<LabelSource>('--label-source', ['auto', 'wnid', 'folder']), 'auto')
    .option('--classes <file>', 'class list, one per line: label = line index (default: sorted classes present)')
    .option('--batch <n>', 'images per model call', integer('--batch'), 32)
    .option('--threads <n>', 'onnxruntime intra-op threads (default: all cores)', integer('--threads', 1, 1024))
    .option('--normalize', 'L2-normalise every row')
    .option('--fp16', 'store rows as float16')
    .option('--fast-decode', 'let JPEGs decode at a reduced scale before resizing (faster, pixels differ slightly)')
    .option('--restart', 'ignore a checkpoint from an earlier, interrupted run')
    .option('--json', 'print a JSON summary on stdout'), 'parts of whole batches of the sorted images', 'OUT.runs')
    .option('--part-images <n>', 'with --queue: images per job, rounded up to whole batches (default 8 batches)', integer('--part-images'))
    .action(act((o: EmbedCliOptions, { signal }) => run(o, signal)));
}
