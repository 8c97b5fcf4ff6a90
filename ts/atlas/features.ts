// The atlas's two passes over the probe images, through the library's
// resumable folder embedding: the explained layer, globally average pooled
// (one row per image, one column per unit), and the text-aligned image
// embeddings that SpLiCE, LE(CLIP), FALCON's captions and the SAE's names
// live in: a CLIP image tower, or the stand-in, always labelled as such.
import { join } from 'node:path';
import type { ProgressOptions } from '../abort.js';
import { embedImages, type EmbedImagesResult } from '../encoders/embed-images.js';
import { openImageTower, STANDIN_LABEL, type ImageTower } from '../encoders/standin.js';
import { ConceptLensError } from '../errors.js';
import { preprocessSpec } from '../images/preprocess.js';
import { readMatrix } from '../io/matrix.js';
import { readJson } from '../io/text.js';
import type { Mat } from '../matrix.js';
import type { ImageEncoder as FalconEncoder } from '../methods/falcon/pipeline.js';
import { nchw } from '../methods/falcon/adapters.js';
import { writeJson } from '../io/stages.js';
import type { ProbeSet } from './probe.js';

/** The text-aligned image tower: a CLIP image ONNX export, or the stand-in. */
export interface TowerChoice {
  /** CLIP image encoder (ONNX); absent for the stand-in. */
  clipImage?: string;
}

/** Both feature matrices, rows aligned with the probe set. */
export interface Features {
  /** images × units: the layer, globally average pooled. */
  acts: Mat;
  /** The .npy of `acts` (for tools that stream features from a file). */
  actsPath: string;
  /** images × d: unit rows in the text-aligned space. */
  clip: Mat;
  /** What made `clip`: the CLIP tower's path, or the stand-in's label. */
  tower: string;
  /** True when `clip` comes from the stand-in (every output that uses it says so). */
  standin: boolean;
  /** Shape of the layer's tensor for one image ([1, C, H, W] for a spatial map). */
  layerShape: number[];
}

function requireAll(r: EmbedImagesResult, probe: ProbeSet, what: string): void {
  if (r.rows !== probe.files.length || r.skipped.length > 0)
    throw new ConceptLensError('ERR_FILE', `${what}: ${r.rows} of ${probe.files.length} probe images embedded; unreadable: ` +
      r.skipped.slice(0, 5).map((s) => `${s.path} (${s.reason})`).join('; ') + ' (remove them from --images)');
}

/**
 * Embeds the probe images twice (the layer, the text-aligned tower) into `dir`, resuming interrupted passes, and
 * records the layer's unpooled shape (`tapShape`: whether GradCAM and FALCON apply).
 */
export async function computeFeatures(dir: string, probe: ProbeSet, o: TowerChoice & { model: string; layer: string; tapShape: () => Promise<number[]> },
  report: (stage: string, done: number, total: number) => void, signal?: AbortSignal): Promise<void> {
  const common = (stage: string): ProgressOptions => ({ signal, onProgress: (d, t) => report(stage, d, t) });
  // The ImageNet preset, as FALCON's target model and GradCAM see the images.
  requireAll(await embedImages({
    model: o.model, images: probe.dir, out: join(dir, 'activations.npy'), spec: preprocessSpec('imagenet'),
    encoder: { layer: o.layer, pool: 'avg' }, ...common('activations'),
  }), probe, `layer ${o.layer}`);
  const standin = !o.clipImage;
  requireAll(await embedImages({
    model: o.clipImage ?? 'standin', standin, images: probe.dir, out: join(dir, 'clip.npy'), spec: preprocessSpec(standin ? 'imagenet' : 'clip'),
    encoder: standin ? undefined : { normalize: true }, ...common(standin ? 'stand-in embeddings' : 'CLIP embeddings'),
  }), probe, 'image tower');
  writeJson(join(dir, 'tower.json'), { tower: o.clipImage ? `CLIP image encoder ${o.clipImage}` : STANDIN_LABEL, standin, layerShape: await o.tapShape() });
}

/** The features written by {@link computeFeatures}. */
export function loadFeatures(dir: string): Features {
  const t = readJson<{ tower: string; standin: boolean; layerShape: number[] }>(join(dir, 'tower.json'));
  const actsPath = join(dir, 'activations.npy');
  return { acts: readMatrix(actsPath, { what: 'layer activations' }), actsPath, clip: readMatrix(join(dir, 'clip.npy'), { what: 'image embeddings' }), ...t };
}

/** The same tower as FALCON's crop encoder: crops (RGB, any batch) in, unit rows in the text-aligned space out. */
export async function falconEncoder(o: TowerChoice): Promise<{ encoder: FalconEncoder; tower: ImageTower }> {
  const tower = await openImageTower({ model: o.clipImage });
  return {
    tower,
    encoder: {
      dim: tower.dim,
      embed: async (images) => {
        const t = nchw(images, tower.preprocess);
        return (await tower.encode(t.data as Float32Array, t.dims)).data as Float32Array;
      },
    },
  };
}
