// Demo section: the atlas. Real data: a small atlas of SqueezeNet fire22 (the
// first 24 ImageNet samples and 4 images of each CIFAR-10 class, the 24 most
// varying units, the stand-in tower), linked from the report, with the
// full-size command. Synthetic: there are no images to show, only the command.
import { existsSync, mkdirSync, readdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { assetPath } from '../assets.js';
import { runAtlas } from '../atlas/run.js';
import type { DemoContext, DemoSection } from './context.js';

const TITLE = 'Atlas (every method on one layer, as a site)';

const fullCommand = (assets: string) => '`npx conceptlens atlas --model ' + `${assets}/models/squeezenet1.1/squeezenet1.1.onnx --layer fire22 ` +
  `--images ${assets}/images/imagenet-samples ${assets}/images/cifar10-test --per-class 100 --standin --out atlas` + '`';

/** The first n ImageNet samples, linked into a folder of their own. */
function imagenetSubset(dir: string, n: number): string {
  const src = assetPath('images/imagenet-samples');
  mkdirSync(dir, { recursive: true });
  for (const f of readdirSync(src).filter((f) => f.endsWith('.JPEG')).sort().slice(0, n))
    if (!existsSync(join(dir, f))) symlinkSync(join(src, f), join(dir, f));
  return dir;
}

async function realSection(ctx: DemoContext): Promise<DemoSection> {
  const out = join(ctx.outDir, 'atlas');
  const r = await runAtlas({
    model: assetPath('models/squeezenet1.1/squeezenet1.1.onnx'), layer: 'fire22', standin: true, out, perClass: 4, minClassImages: 4, units: 24,
    images: [imagenetSubset(join(ctx.outDir, 'atlas-images', 'imagenet-samples'), 24), assetPath('images/cifar10-test')],
    sae: { epochs: 8 }, falcon: { maxGroups: 3 }, signal: ctx.signal,
    onProgress: (p) => (p.cached || p.done === p.total) && ctx.log(`atlas: ${p.stage} ${p.cached ? 'reused' : 'done'}`),
  });
  const lines = [
    `A small atlas of SqueezeNet fire22: ${r.images} images (the first 24 ImageNet samples and 4 of each CIFAR-10 class), the ${r.units} most varying units, ` +
    `**text-aligned space: STAND-IN** (SqueezeNet probabilities over CLIP text embeddings of LVIS concepts, labelled on every page). ` +
    `Open **[atlas/index.html](atlas/index.html)** (units sortable by each method's score, a page per unit with what LE, FALCON, SpLiCE and the SAE say side by side) ` +
    `and **[atlas/figures.html](atlas/figures.html)** (the papers' figures).`, '',
    `Stages: ${r.stages.map((s) => `${s.name} ${s.cached ? '(reused)' : `${s.seconds.toFixed(1)} s`}`).join(', ')}.`, '',
    `The full-size atlas (2,000 images, all 512 units): ${fullCommand(ctx.assets!)}.`,
  ];
  return { title: TITLE, markdown: lines.join('\n') };
}

export function atlasSection(ctx: DemoContext): Promise<DemoSection> {
  if (ctx.concepts.source === 'real') return realSection(ctx);
  return Promise.resolve({
    title: TITLE,
    markdown: 'The atlas explains a layer on real images; none are available without the assets mirror (set CONCEPTLENS_ASSETS). With it: ' +
      `${fullCommand('$CONCEPTLENS_ASSETS')}.`,
  });
}
