// STAND-IN image tower for the offline demo. No CLIP image encoder can be
// obtained here, so SqueezeNet 1.1 (an ImageNet classifier) is mapped into
// the real CLIP ViT-B/32 text space (Detic's LVIS "a {name}" embeddings):
//
//   1. Each ImageNet class is matched to one LVIS concept through WordNet
//      names: first the class's own synonyms, else the names of its WordNet
//      ancestors (Linear Explanations' superclass lists), most specific first,
//      else the head noun of a multi-word synonym ('coffee mug' -> 'mug'),
//      compared with every LVIS synonym (lower case, '_' for spaces). 
//      Classes with no match (about a quarter, e.g. salamanders) get no mass.
//   2. An image's embedding is sum_j q_j t_j over LVIS concepts j, where t_j is
//      the unit CLIP text embedding and q_j the softmax(logits / T) mass of the
//      ImageNet classes mapped to j; then L2-normalised.
//
// The result lives in CLIP's text space but only spans the matched LVIS
// concepts: it is a stand-in for demos and tests, not a CLIP image encoder.
// A real CLIP ONNX export replaces it (`openImageTower({ model })`).
import { assetPath } from '../assets.js';
import { halvesToFloats } from '../engine/fp16.js';
import { fileError } from '../errors.js';
import { readNpy, readNpyHeader } from '../io/npy.js';
import { readJson, readText } from '../io/text.js';
import { normaliseRows } from '../matrix.js';
import type { ProgressOptions } from '../abort.js';
import { preprocessSpec, type PreprocessSpec } from '../images/preprocess.js';
import { ImageEncoder, type Embeddings } from './onnx.js';

/** The {@link ImageTower.label} of the stand-in tower, for output that must say it is not CLIP. */
export const STANDIN_LABEL = 'STAND-IN: SqueezeNet 1.1 ImageNet probabilities mapped onto CLIP ViT-B/32 text embeddings of LVIS concepts (not a CLIP image encoder)';

export interface ImagenetClass {
  wnid: string;
  synonyms: string[];
}

const norm = (s: string) => s.trim().toLowerCase().replace(/[\s-]+/g, '_');

/** The 1000 ImageNet classes with their WordNet synonyms (LE's label -> synset listing, a Python dict literal). */
export function imagenetClasses(path = assetPath('vocab/le_imagenet_label_to_wordnet_synset.txt')): ImagenetClass[] {
  const text = readText(path);
  const re = /(\d+):\s*\{'id':\s*'(\d+)-n',\s*'label':\s*(?:'([^']*)'|"([^"]*)")/g;
  const out: ImagenetClass[] = [];
  for (const m of text.matchAll(re)) out[Number(m[1])] = { wnid: `n${m[2]}`, synonyms: (m[3] ?? m[4]).split(',').map((s) => s.trim()) };
  if (out.length !== 1000 || out.some((c) => !c)) throw fileError(path, `expected 1000 ImageNet classes (0..999), parsed ${out.filter(Boolean).length}`);
  return out;
}

/** How the 1000 ImageNet classes map onto LVIS concepts (rows of the LVIS text embeddings). */
export interface ConceptMap {
  /** LVIS row for each ImageNet class, -1 when no name matched. */
  lvis: Int32Array;
  /** The WordNet name that matched, per class ('' when none). */
  via: string[];
  /** Names of the LVIS concepts by row. */
  lvisNames: string[];
}

/** Matches each ImageNet class to an LVIS concept by WordNet names, most specific first. */
export function imagenetToLvis(): ConceptMap {
  const classes = imagenetClasses();
  const cats = readJson<{ name: string; synonyms: string[]; id: number }[]>(assetPath('embeddings/detic/lvis_v1_train_cat_info.json'));
  const byName = new Map<string, number>();
  cats.forEach((c, row) => [c.name, ...c.synonyms].forEach((s) => byName.has(norm(s)) || byName.set(norm(s), row)));
  const supers = readJson<Record<string, number[]>>(assetPath('vocab/le_imagenet_superclass_to_ids.json'));
  const ancestors = Object.entries(supers).sort((a, b) => a[1].length - b[1].length); // most specific first
  const lvis = new Int32Array(1000).fill(-1);
  const via: string[] = new Array(1000).fill('');
  classes.forEach((c, i) => {
    const heads = c.synonyms.filter((n) => /\s/.test(n)).map((n) => n.split(/\s+/).at(-1)!); // 'coffee mug' -> 'mug'
    const names = [...c.synonyms, ...ancestors.filter(([, ids]) => ids.includes(i)).map(([name]) => name), ...heads];
    const hit = names.find((n) => byName.has(norm(n)));
    if (hit) {
      lvis[i] = byName.get(norm(hit))!;
      via[i] = hit;
    }
  });
  return { lvis, via, lvisNames: cats.map((c) => c.name) };
}

const LVIS_TEXT = 'embeddings/detic/lvis_v1_clip_a+cname.npy';

/** The stand-in tower's output dimension, that of the embeddings it maps onto, read from their header alone. */
export const standinDim = (): number => readNpyHeader(assetPath(LVIS_TEXT)).shape[1];

/** Unit-norm CLIP ViT-B/32 text embeddings of the LVIS concepts, [1203, 512]. */
export function lvisTextEmbeddings(): { data: Float32Array; rows: number; dim: number } {
  const a = readNpy(assetPath(LVIS_TEXT));
  const data = a.dtype === 'float16' ? halvesToFloats(a.data as Uint16Array) : Float32Array.from(a.data as Float32Array);
  return { data: normaliseRows(data, a.shape[1], { inPlace: true, zeroRows: 'error', name: 'LVIS text embeddings' }), rows: a.shape[0], dim: a.shape[1] };
}

/** Softmax(logits / T) of each row, its mass gathered per LVIS concept, mixed over their text embeddings. */
export function logitsToClipSpace(logits: Float32Array, n: number, map: Int32Array, text: { data: Float32Array; dim: number }, temperature = 1): Float32Array {
  const classes = map.length, d = text.dim;
  const out = new Float32Array(n * d);
  for (let r = 0; r < n; r++) {
    const row = logits.subarray(r * classes, (r + 1) * classes);
    let mx = -Infinity;
    for (const v of row) mx = Math.max(mx, v);
    const p = Float64Array.from(row, (v) => Math.exp((v - mx) / temperature));
    const dst = out.subarray(r * d, (r + 1) * d);
    for (let i = 0; i < classes; i++) {
      if (map[i] < 0) continue;
      const t = text.data.subarray(map[i] * d, (map[i] + 1) * d);
      for (let k = 0; k < d; k++) dst[k] += p[i] * t[k];
    }
  }
  return normaliseRows(out, d, { inPlace: true });
}

/** Common face of a real CLIP image tower and the stand-in: NCHW pixels -> unit rows in CLIP space. */
export interface ImageTower {
  /** Human-readable description of the tower, for reports. */
  readonly label: string;
  /** True for the SqueezeNet stand-in, false for a real CLIP image encoder. */
  readonly standin: boolean;
  /** Preprocessing the tower's pixels need. */
  readonly preprocess: PreprocessSpec;
  /** Embedding width. */
  readonly dim: number;
  /** Embeds preprocessed images (`pixels` N × C × H × W, `shape` [N, C, H, W]) as unit rows in CLIP space, N × dim. */
  encode(pixels: Float32Array, shape: readonly number[], opts?: ProgressOptions): Promise<Embeddings>;
  /** Releases the underlying ONNX session. */
  close(): Promise<void>;
}

/**
 * The offline stand-in CLIP image tower: SqueezeNet 1.1 class probabilities mixed over CLIP text embeddings of LVIS concepts.
 * Not a CLIP image encoder; for demos and tests (see the module notes and {@link STANDIN_LABEL}).
 */
export class StandinImageTower implements ImageTower {
  readonly label = STANDIN_LABEL;
  readonly standin = true;
  readonly preprocess = preprocessSpec('imagenet');

  private constructor(private readonly enc: ImageEncoder, readonly map: ConceptMap, private readonly text: ReturnType<typeof lvisTextEmbeddings>,
    readonly temperature: number) {}

  /**
   * Loads SqueezeNet and the LVIS map and embeddings from the assets mirror; `temperature` (default 1) divides the logits
   * before the softmax, `threads` bounds onnxruntime's threads.
   * @throws ConceptLensError ERR_FILE when an asset is missing.
   */
  static async load(opts: { temperature?: number; threads?: number } = {}): Promise<StandinImageTower> {
    const map = imagenetToLvis(), text = lvisTextEmbeddings();
    const enc = await ImageEncoder.load(assetPath('models/squeezenet1.1/squeezenet1.1.onnx'), { threads: opts.threads });
    return new StandinImageTower(enc, map, text, opts.temperature ?? 1);
  }

  /** Embedding width: that of the LVIS text embeddings (512). */
  get dim(): number {
    return this.text.dim;
  }

  /** The unit CLIP text embeddings of the LVIS concepts this tower mixes. */
  get conceptEmbeddings(): Float32Array {
    return this.text.data;
  }

  /**
   * Embeds ImageNet-preprocessed images (`pixels` N × 3 × H × W, `shape` [N, 3, H, W]) as unit fp32 rows, N × {@link
   * StandinImageTower.dim}.
   */
  async encode(pixels: Float32Array, shape: readonly number[], opts: ProgressOptions = {}): Promise<Embeddings> {
    const logits = await this.enc.encode(pixels, shape, opts);
    const data = logitsToClipSpace(logits.data as Float32Array, shape[0], this.map.lvis, this.text, this.temperature);
    return { data, shape: [shape[0], this.dim], dtype: 'float32' };
  }

  /** Releases the SqueezeNet session. */
  close(): Promise<void> {
    return this.enc.close();
  }
}

class OnnxClipTower implements ImageTower {
  readonly standin = false;
  constructor(private readonly enc: ImageEncoder, readonly label: string, readonly preprocess: PreprocessSpec, readonly dim: number) {}

  encode(pixels: Float32Array, shape: readonly number[], opts: ProgressOptions = {}): Promise<Embeddings> {
    return this.enc.encode(pixels, shape, opts);
  }

  close(): Promise<void> {
    return this.enc.close();
  }
}

/**
 * A CLIP image tower: the ONNX export given by `model` (CLIP preprocessing,
 * rows L2-normalised), else the stand-in above.
 */
export async function openImageTower(opts: { model?: string; output?: string; threads?: number } = {}): Promise<ImageTower> {
  if (!opts.model) return StandinImageTower.load({ threads: opts.threads });
  const enc = await ImageEncoder.load(opts.model, { output: opts.output, normalize: true, threads: opts.threads });
  const shape = enc.inputShape;
  const side = typeof shape[2] === 'number' ? shape[2] : 224;
  const spec = preprocessSpec('clip', { resize: side, crop: side });
  const probe = await enc.encode(new Float32Array(3 * side * side), [1, 3, side, side]);
  return new OnnxClipTower(enc, `CLIP image encoder ${opts.model}`, spec, probe.shape[1]);
}

/** Zero-shot accuracy from {@link zeroShotLvis}. */
export interface ZeroShotResult {
  /** Images whose ImageNet class has an LVIS concept (the others cannot be scored). */
  scored: number;
  /** Fraction of the scored images whose concept is the nearest (NaN when none was scored). */
  top1: number;
  /** Fraction of the scored images whose concept is among the 5 nearest. */
  top5: number;
}

/**
 * Zero-shot accuracy in CLIP text space: an image is right at k when the LVIS
 * concept its true ImageNet class maps to is among the k concepts (of all
 * 1203) nearest to its embedding.
 */
export function zeroShotLvis(emb: Float32Array, labels: ArrayLike<number>, map: Int32Array, text: { data: Float32Array; rows: number; dim: number }): ZeroShotResult {
  const d = text.dim;
  let scored = 0, top1 = 0, top5 = 0;
  for (let r = 0; r < labels.length; r++) {
    const target = map[labels[r]];
    if (target < 0) continue;
    scored++;
    const e = emb.subarray(r * d, (r + 1) * d);
    const score = (j: number) => text.data.subarray(j * d, (j + 1) * d).reduce((s, v, k) => s + v * e[k], 0);
    const mine = score(target);
    let above = 0;
    for (let j = 0; j < text.rows; j++) if (j !== target && score(j) > mine) above++;
    top1 += above === 0 ? 1 : 0;
    top5 += above < 5 ? 1 : 0;
  }
  return { scored, top1: top1 / scored, top5: top5 / scored };
}
