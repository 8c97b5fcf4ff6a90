// Data shared by the demo sections: SqueezeNet fire22 features of a CIFAR-10
// subset (LE and DN-CBM both use them, so they are computed once per run and
// cached under outDir/features), and seeded random helpers for the synthetic
// fallbacks (beside ts/random.ts).
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { assetPath } from '../assets.js';
import { readNpy, writeNpy } from '../io/npy.js';
import { OnnxModel, poolActivations } from '../encoders/onnx.js';
import { imagenetToLvis, logitsToClipSpace, lvisTextEmbeddings } from '../encoders/standin.js';
import { preprocessBatch, preprocessSpec } from '../images/preprocess.js';
import { shared, type DemoContext } from './context.js';

/** k distinct integers in [0, n), in draw order. */
export function pick(n: number, k: number, rand: () => number): number[] {
  const out = new Set<number>();
  while (out.size < k) out.add(Math.floor(rand() * n));
  return [...out];
}

export interface CifarFeatures {
  /** n × 512 fire22 activations, globally average pooled. */
  fire22: Float32Array;
  /** n × 512 STAND-IN CLIP-space embeddings of the same images (see ts/encoders/standin.ts). */
  clip: Float32Array;
  labels: Int32Array;
  classes: string[];
  n: number;
  dim: number;
  /** The cached fire22 .npy (for tools that stream features from a file). */
  fire22Path: string;
}

/** Images per CIFAR-10 class: enough for LE's 70/10/20 split and a probe, small enough for 2 cores. */
export const CIFAR_PER_CLASS = 100;

/** The first `perClass` files (sorted) of each class folder, with their class ids. */
function cifarFiles(root: string, perClass: number): { files: string[]; labels: Int32Array; classes: string[] } {
  const classes = readdirSync(root).filter((c) => !c.startsWith('.')).sort();
  const files: string[] = [], labels: number[] = [];
  classes.forEach((c, k) => {
    const names = readdirSync(join(root, c)).filter((f) => f.endsWith('.jpg')).sort().slice(0, perClass);
    files.push(...names.map((f) => join(root, c, f)));
    labels.push(...names.map(() => k));
  });
  return { files, labels: Int32Array.from(labels), classes };
}

/** One SqueezeNet pass gives both the fire22 tap and the logits the stand-in maps into CLIP space. */
async function computeCifar(ctx: DemoContext, dir: string, files: string[], labels: Int32Array): Promise<void> {
  const model = await OnnxModel.load(assetPath('models/squeezenet1.1/squeezenet1.1.onnx'), { taps: ['fire22'] });
  const map = imagenetToLvis(), text = lvisTextEmbeddings(), spec = preprocessSpec('imagenet'), B = 50;
  const fire22 = new Float32Array(files.length * 512), clip = new Float32Array(files.length * text.dim);
  try {
    for (let i0 = 0; i0 < files.length; i0 += B) {
      const batch = await preprocessBatch(files.slice(i0, i0 + B), spec);
      if (batch.skipped.length) throw new Error(`${batch.skipped[0].path}: ${batch.skipped[0].reason}`);
      const out = await model.run({ [model.inputs[0].name]: { type: 'float32', dims: batch.shape, data: batch.data } }, ['fire22', 'logits'], { signal: ctx.signal });
      const pooled = poolActivations({ dims: out.fire22.dims, data: out.fire22.data as Float32Array }, 'avg');
      fire22.set(pooled.data, i0 * 512);
      clip.set(logitsToClipSpace(out.logits.data as Float32Array, batch.shape[0], map.lvis, text), i0 * text.dim);
      ctx.log(`features: CIFAR-10 fire22 ${Math.min(files.length, i0 + B)}/${files.length} images`);
    }
  } finally {
    await model.close();
  }
  writeNpy(join(dir, 'cifar_fire22.npy'), fire22, [files.length, 512]);
  writeNpy(join(dir, 'cifar_clip_standin.npy'), clip, [files.length, text.dim]);
  writeNpy(join(dir, 'cifar_labels.npy'), labels, [files.length]);
}

/** The CIFAR-10 subset's features, computed on first use and cached under outDir/features. */
export function cifarFeatures(ctx: DemoContext): Promise<CifarFeatures> {
  return shared(ctx, 'cifar-fire22', async () => {
    const dir = join(ctx.outDir, 'features'), labelsPath = join(dir, 'cifar_labels.npy');
    const { files, labels: want, classes } = cifarFiles(assetPath('images/cifar10-test'), CIFAR_PER_CLASS);
    mkdirSync(dir, { recursive: true });
    // A cache from another subset size is recomputed, not silently reused.
    if (existsSync(labelsPath) && readNpy(labelsPath).shape[0] === files.length) ctx.log(`features: reusing ${dir}`);
    else await computeCifar(ctx, dir, files, want);
    const f = readNpy(join(dir, 'cifar_fire22.npy')), c = readNpy(join(dir, 'cifar_clip_standin.npy'));
    const labels = readNpy(join(dir, 'cifar_labels.npy')).data as Int32Array;
    return { fire22: f.data as Float32Array, clip: c.data as Float32Array, labels, classes, n: f.shape[0], dim: f.shape[1], fire22Path: join(dir, 'cifar_fire22.npy') };
  });
}
