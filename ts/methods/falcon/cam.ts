// FALCON step 3: GradCAM for a group target on the images' layer maps, the
// largest box of the map thresholded at 0.6, and the crop resized to 224.
import sharp from 'sharp';
import type { ProgressOptions } from '../../abort.js';
import { falconCams } from '../../engine/falcon.js';
import { argError, ConceptLensError, requireInteger } from '../../errors.js';
import { requireFinite } from '../../matrix.js';

/** A layer's activations for a batch of images, [N, C, H, W] row-major. */
export interface LayerMaps {
  name: string;
  shape: number[];
  data: Float32Array;
  /**
   * The group target's gradients, same shape. Absent: the analytic form, where
   * GradCAM's channel weights are 1/(H·W) on the group channels and 0 elsewhere.
   * That is exact whenever representation i pools channel i alone with weights
   * summing to one over positions (global average or max pooling: GradCAM keeps
   * only each channel's mean gradient); channels mixed or rescaled after pooling
   * (a linear head, a nonlinearity on the pooled values) need their gradients
   * here (test/falcon.test.ts checks both against finite differences).
   */
  grads?: Float32Array;
}

/** An 8-bit RGB image, interleaved, row-major. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/** A pixel box [left, top, right, bottom): right and bottom exclusive. */
export type Box = [left: number, top: number, right: number, bottom: number];

/** Options of {@link groupCams}. */
export interface CamOptions extends ProgressOptions {
  /** Width in pixels the CAMs are upsampled to (default 224; the images' pixel grid). */
  width?: number;
  /** Height in pixels the CAMs are upsampled to (default 224). */
  height?: number;
  /** CAM value in [0, 1] at or above which pixels count towards the box (default 0.6). */
  threshold?: number;
}

/** GradCAM maps of a feature group over a batch of images, with each image's box. */
export interface GroupCams {
  /** n × height × width maps in [0, 1]. */
  cams: Float32Array;
  /** Per image, [left, top, right, bottom) of the largest island ≥ threshold. */
  boxes: Box[];
  /** Map width in pixels. */
  width: number;
  /** Map height in pixels. */
  height: number;
}

function spatial(l: LayerMaps): { n: number; c: number; h: number; w: number } {
  if (l.shape.length !== 4 || l.shape[2] * l.shape[3] < 2)
    throw new ConceptLensError('ERR_SHAPE', `layer '${l.name}': GradCAM needs a spatial map [N, C, H, W] with H·W ≥ 2, got shape [${l.shape.join(', ')}] (a pooled or fully connected layer has no spatial dimensions)`);
  const [n, c, h, w] = l.shape;
  if (l.data.length !== n * c * h * w) throw new ConceptLensError('ERR_SHAPE', `layer '${l.name}': shape [${l.shape.join(', ')}] needs ${n * c * h * w} values, got ${l.data.length}`);
  if (l.grads && l.grads.length !== l.data.length) throw new ConceptLensError('ERR_SHAPE', `layer '${l.name}': gradients have ${l.grads.length} values, expected ${l.data.length}`);
  return { n, c, h, w };
}

/** GradCAM of the group target Σ_{i∈group} R[x, i], averaged over the layers, with each image's box. */
export async function groupCams(layers: LayerMaps[], group: number[], opts: CamOptions = {}): Promise<GroupCams> {
  if (layers.length === 0) throw new ConceptLensError('ERR_ARG', 'layers: expected at least one target layer for GradCAM, got none');
  const dims = layers.map(spatial);
  const n = dims[0].n;
  const odd = dims.findIndex((d) => d.n !== n);
  if (odd >= 0) throw new ConceptLensError('ERR_SHAPE', `layer '${layers[odd].name}': ${dims[odd].n} images, expected ${n} like '${layers[0].name}'`);
  const width = opts.width ?? 224, height = opts.height ?? 224, threshold = opts.threshold ?? 0.6;
  if (!(threshold >= 0 && threshold <= 1)) throw argError('threshold', 'a fraction of the map\'s maximum in [0, 1]', threshold);
  layers.forEach((l, i) => requireFinite(l.data, dims[i].c * dims[i].h * dims[i].w, `layer '${l.name}' activations`, (x) => `layer '${l.name}': image ${x}`));
  const r = await falconCams(layers.map((l, i) => ({ acts: l.data, grads: l.grads ?? null, channels: dims[i].c, height: dims[i].h, width: dims[i].w })),
    n, group, height, width, threshold, opts);
  const boxes: Box[] = [];
  for (let i = 0; i < n; i++) boxes.push(Array.from(r.boxes.subarray(4 * i, 4 * i + 4)) as Box);
  return { cams: r.cams, boxes, width, height };
}

/** The box of `img` (in the CAM's pixel grid, which is the image's), resized to size × size. */
export async function cropResize(img: RgbImage, box: Box, size = 224): Promise<RgbImage> {
  const [left, top, right, bottom] = box;
  requireInteger(size, 'size', 1);
  if (!(img.data?.length === img.width * img.height * 3))
    throw new ConceptLensError('ERR_SHAPE', `image: expected ${img.width}×${img.height}×3 = ${img.width * img.height * 3} RGB bytes, got ${img.data?.length}`);
  if (!(left >= 0 && top >= 0 && right <= img.width && bottom <= img.height && right > left && bottom > top))
    throw new ConceptLensError('ERR_ARG', `box: expected inside ${img.width}×${img.height} and non-empty, got [${box.join(', ')}]`);
  const data = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .extract({ left, top, width: right - left, height: bottom - top })
    .resize(size, size, { fit: 'fill', kernel: 'linear' })
    .raw().toBuffer();
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: size, height: size };
}

/** Global average pool of [N, C, H, W] maps (or [N, C] as is): the N × C representations. */
export function globalAveragePool(l: LayerMaps): Float32Array {
  if (l.shape.length === 2) return l.data;
  if (l.shape.length !== 4) throw new ConceptLensError('ERR_SHAPE', `layer '${l.name}': expected [N, C] or [N, C, H, W], got shape [${l.shape.join(', ')}]`);
  const [n, c, h, w] = l.shape, hw = h * w;
  if (l.data.length !== n * c * hw) throw new ConceptLensError('ERR_SHAPE', `layer '${l.name}': shape [${l.shape.join(', ')}] holds ${n * c * hw} values, got ${l.data.length}`);
  const out = new Float32Array(n * c);
  for (let i = 0; i < n * c; i++) {
    let s = 0;
    for (let p = 0; p < hw; p++) s += l.data[i * hw + p];
    out[i] = s / hw;
  }
  return out;
}
