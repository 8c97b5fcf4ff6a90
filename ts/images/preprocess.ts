// Image loading and model preprocessing with sharp: resize the shorter side,
// centre crop, scale to [0,1], normalise by mean/std, NCHW float32. The
// geometry follows torchvision (Resize(int) then CenterCrop), so tensors match
// the published CLIP / ImageNet pipelines up to the resampling kernel.
import sharp, { type OverlayOptions } from 'sharp';
import { readFile } from 'node:fs/promises';
import { argError, ConceptLensError } from '../errors.js';
import { throwIfAborted } from '../abort.js';
import { escapeHtml } from '../report/html.js';

/** sharp resampling kernel for the resize ('cubic' in the CLIP preset, 'linear' in the ImageNet one). */
export type ResizeKernel = 'nearest' | 'linear' | 'cubic' | 'lanczos3';
/** Per-channel values in R, G, B order (on the [0, 1] pixel scale for means and stds). */
export type Rgb = readonly [number, number, number];

/** How an image becomes a model input, torchvision style: Resize(resize), CenterCrop(crop), ToTensor, Normalize(mean, std). */
export interface PreprocessSpec {
  /** Shorter side after resizing. */
  resize: number;
  /** Side of the square centre crop taken after resizing. */
  crop: number;
  /** Resampling kernel of the resize. */
  kernel: ResizeKernel;
  /** Per-channel mean subtracted after scaling pixels to [0, 1]. */
  mean: Rgb;
  /** Per-channel standard deviation divided by after subtracting `mean`. */
  std: Rgb;
  /** Let JPEG decode at 1/2..1/8 scale before resizing: faster, slightly different pixels. */
  fastShrinkOnLoad?: boolean;
}

/** OpenAI CLIP's normalisation mean. */
export const CLIP_MEAN: Rgb = [0.48145466, 0.4578275, 0.40821073];
/** OpenAI CLIP's normalisation standard deviation. */
export const CLIP_STD: Rgb = [0.26862954, 0.26130258, 0.27577711];
/** torchvision's ImageNet normalisation mean. */
export const IMAGENET_MEAN: Rgb = [0.485, 0.456, 0.406];
/** torchvision's ImageNet normalisation standard deviation. */
export const IMAGENET_STD: Rgb = [0.229, 0.224, 0.225];

/**
 * Named preprocessing presets: 'clip' (bicubic resize to 224, crop 224, CLIP mean/std) and 'imagenet'
 * (bilinear resize to 256, crop 224, ImageNet mean/std). {@link preprocessSpec} picks one, with overrides.
 */
export const PRESETS = {
  clip: { resize: 224, crop: 224, kernel: 'cubic', mean: CLIP_MEAN, std: CLIP_STD },
  imagenet: { resize: 256, crop: 224, kernel: 'linear', mean: IMAGENET_MEAN, std: IMAGENET_STD },
} as const satisfies Record<string, PreprocessSpec>;
export type PresetName = keyof typeof PRESETS;

/** A preset by name, with optional overrides (e.g. other sizes). */
export function preprocessSpec(name: string, overrides: Partial<PreprocessSpec> = {}): PreprocessSpec {
  const base = PRESETS[name as PresetName];
  if (!base) throw argError('preprocess', `one of ${Object.keys(PRESETS).join(', ')}`, name);
  const spec = { ...base, ...overrides };
  for (const k of ['resize', 'crop'] as const)
    if (!Number.isInteger(spec[k]) || spec[k] <= 0) throw argError(`preprocess ${k}`, 'a positive integer', spec[k]);
  if (spec.crop > spec.resize) throw argError('preprocess crop', `at most the resized shorter side ${spec.resize}`, spec.crop);
  return spec;
}

/** A region of the original image, in pixels. */
export interface CropBox {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** torchvision Resize(size): the shorter side becomes `size`, the longer one int(size * long / short). */
export function resizedSize(width: number, height: number, size: number): { width: number; height: number } {
  if (width <= height) return { width: size, height: Math.floor((size * height) / width) };
  return { width: Math.floor((size * width) / height), height: size };
}

/** Python's round(): halves go to the even neighbour (torchvision CenterCrop uses it). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** torchvision CenterCrop offsets inside a width x height image. */
export function centreCropBox(width: number, height: number, crop: number): CropBox {
  return { left: roundHalfEven((width - crop) / 2), top: roundHalfEven((height - crop) / 2), width: crop, height: crop };
}

/** An image given as a file path or as encoded bytes (any format sharp decodes). */
export type ImageInput = string | Buffer;

function describe(input: ImageInput): string {
  return typeof input === 'string' ? input : `<buffer of ${input.length} bytes>`;
}

function checkBox(box: CropBox, width: number, height: number, input: ImageInput): void {
  const ok = [box.left, box.top, box.width, box.height].every(Number.isInteger) && box.left >= 0 && box.top >= 0 &&
    box.width > 0 && box.height > 0 && box.left + box.width <= width && box.top + box.height <= height;
  if (!ok) throw new ConceptLensError('ERR_ARG', `${describe(input)}: crop box ${JSON.stringify(box)} is not inside the ${width}x${height} image`);
}

/** Decoded, resized and cropped RGB bytes (HWC, crop x crop x 3). */
export async function preprocessPixels(input: ImageInput, spec: PreprocessSpec, box?: CropBox): Promise<Buffer> {
  const bytes = typeof input === 'string' ? await readFile(input) : input;
  const failOn = 'error' as const; // a truncated or corrupt image is an error, not a grey patch
  const meta = await sharp(bytes, { failOn }).metadata();
  if (!meta.width || !meta.height) throw new ConceptLensError('ERR_FILE', `${describe(input)}: image has no size`);
  const region = box ?? { left: 0, top: 0, width: meta.width, height: meta.height };
  if (box) checkBox(box, meta.width, meta.height, input);
  const size = resizedSize(region.width, region.height, spec.resize);
  let img = sharp(bytes, { failOn });
  if (box) img = img.extract(box);
  const { data, info } = await img
    .resize({ ...size, fit: 'fill', kernel: spec.kernel, fastShrinkOnLoad: spec.fastShrinkOnLoad ?? false })
    .extract(centreCropBox(size.width, size.height, spec.crop))
    .removeAlpha()
    .toColourspace('srgb')
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3 || info.width !== spec.crop || info.height !== spec.crop)
    throw new ConceptLensError('ERR_ENGINE', `${describe(input)}: expected ${spec.crop}x${spec.crop}x3 pixels after preprocessing, got ${info.width}x${info.height}x${info.channels}`);
  return data;
}

/** HWC uint8 RGB -> CHW float32 ((v/255 - mean) / std), written at `out[offset..]`. */
export function normaliseInto(rgb: Uint8Array, spec: Pick<PreprocessSpec, 'mean' | 'std'>, out: Float32Array, offset = 0): void {
  const plane = rgb.length / 3;
  for (let c = 0; c < 3; c++) {
    // Per channel: ((v / 255) - mean) / std with float32 rounding, as ToTensor + Normalize.
    const mean = Math.fround(spec.mean[c]), std = Math.fround(spec.std[c]);
    const base = offset + c * plane;
    for (let i = 0; i < plane; i++) out[base + i] = Math.fround(Math.fround(Math.fround(rgb[i * 3 + c] / 255) - mean) / std);
  }
}

/** One image as a [3, crop, crop] tensor. */
export async function preprocessImage(input: ImageInput, spec: PreprocessSpec, box?: CropBox): Promise<Float32Array> {
  const out = new Float32Array(3 * spec.crop * spec.crop);
  normaliseInto(await preprocessPixels(input, spec, box), spec, out);
  return out;
}

/** An input that could not be read or decoded, and why; it left no row. */
export interface SkippedImage {
  /** The file as given. */
  path: string;
  /** First line of the error message. */
  reason: string;
}

/** A batch of preprocessed images from {@link preprocessBatch}. */
export interface ImageBatch {
  /** NCHW float32, one image per entry of `paths`. */
  data: Float32Array;
  /** The inputs that decoded, in input order. */
  paths: string[];
  /** Indices of `paths` in the input list. */
  indices: number[];
  /** Inputs that could not be read or decoded (no row in `data`). */
  skipped: SkippedImage[];
  /** [n, 3, crop, crop]. */
  shape: [number, number, number, number];
}

/** Options of {@link preprocessBatch}. */
export interface BatchOptions {
  /** Images decoded at once (default 4; sharp works on libuv's pool). */
  concurrency?: number;
  /** Crop boxes, one per input (pre-crop before resizing). */
  boxes?: (CropBox | undefined)[];
  /** Stops the batch between images (rejects with the signal's reason). */
  signal?: AbortSignal;
}

/** Runs fn over items with at most `limit` in flight; results keep input order. */
export async function mapBounded<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>, signal?: AbortSignal): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      throwIfAborted(signal);
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}

const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e)).split('\n')[0];

/**
 * Preprocesses files into one NCHW batch. Files that cannot be read or
 * decoded are listed in `skipped` and leave no row.
 */
export async function preprocessBatch(paths: readonly string[], spec: PreprocessSpec, opts: BatchOptions = {}): Promise<ImageBatch> {
  const per = 3 * spec.crop * spec.crop;
  const pixels = await mapBounded(paths, opts.concurrency ?? 4, async (p, i) => {
    try {
      return await preprocessPixels(p, spec, opts.boxes?.[i]);
    } catch (e) {
      return { path: p, reason: errorText(e) } satisfies SkippedImage;
    }
  }, opts.signal);
  const indices = pixels.flatMap((px, i) => (Buffer.isBuffer(px) ? [i] : []));
  const data = new Float32Array(indices.length * per);
  indices.forEach((src, row) => normaliseInto(pixels[src] as Buffer, spec, data, row * per));
  return {
    data,
    paths: indices.map((i) => paths[i]),
    indices,
    skipped: pixels.filter((px): px is SkippedImage => !Buffer.isBuffer(px)),
    shape: [indices.length, 3, spec.crop, spec.crop],
  };
}

/** Options of {@link imageGrid}. */
export interface GridOptions {
  /** Images per row (default: ceil(sqrt(n))). */
  columns?: number;
  /** Side of each square cell in pixels (default 128; images are cover-resized to it). */
  cell?: number;
  /** Gap between cells and around the sheet in pixels (default 4). */
  gap?: number;
  /** Captions drawn under each cell. */
  captions?: string[];
  /** Output format (default 'png'; JPEG at quality 90). */
  format?: 'png' | 'jpeg';
  /** Background colour (default '#ffffff'). */
  background?: string;
}

/** A contact sheet of images (files or buffers) for reports, as PNG or JPEG bytes. */
export async function imageGrid(images: readonly ImageInput[], opts: GridOptions = {}): Promise<Buffer> {
  if (images.length === 0) throw new ConceptLensError('ERR_ARG', 'imageGrid: no images given');
  const cell = opts.cell ?? 128, gap = opts.gap ?? 4;
  const cols = opts.columns ?? Math.ceil(Math.sqrt(images.length));
  const caption = opts.captions ? 18 : 0;
  const rows = Math.ceil(images.length / cols);
  const tiles = await mapBounded(images, 4, async (img, i) => {
    const tile = await sharp(img, { failOn: 'error' }).resize(cell, cell, { fit: 'cover' }).removeAlpha().png().toBuffer();
    const left = gap + (i % cols) * (cell + gap), top = gap + Math.floor(i / cols) * (cell + gap + caption);
    const parts: OverlayOptions[] = [{ input: tile, left, top }];
    const text = opts.captions?.[i];
    if (text) {
      const svg = `<svg width="${cell}" height="${caption}"><text x="2" y="${caption - 5}" font-family="sans-serif" font-size="12">${escapeHtml(text)}</text></svg>`;
      parts.push({ input: Buffer.from(svg), left, top: top + cell });
    }
    return parts;
  });
  const canvas = sharp({
    create: {
      width: gap + cols * (cell + gap),
      height: gap + rows * (cell + gap + caption),
      channels: 3,
      background: opts.background ?? '#ffffff',
    },
  }).composite(tiles.flat());
  return opts.format === 'jpeg' ? canvas.jpeg({ quality: 90 }).toBuffer() : canvas.png().toBuffer();
}
