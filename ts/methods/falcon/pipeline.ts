// FALCON end to end over small interfaces, so the project's image
// preprocessing, ONNX layer taps, image encoder and vocabulary plug in:
// representations → groups → GradCAM crops → interpretability → lowly
// activating counterfactuals → captions → contrasted concepts → report.
// Each stage writes its output atomically into the run directory and is
// skipped when that output is already there (a run resumes).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { throwIfAborted, type ProgressOptions } from '../../abort.js';
import { ensureDir, writeFileAtomic } from '../../io/atomic.js';
import { readNpy, writeNpy } from '../../io/npy.js';
import { cropResize, groupCams, type LayerMaps, type RgbImage } from './cam.js';
import { ConceptLensError, fileError } from '../../errors.js';
import type { Vocabulary } from '../../retrieval/vocabulary.js';
import { topCaptions, type CaptionOptions } from './captions.js';
import { contrastConcepts, type ConceptOptions } from './concepts.js';
import { computeFiring, groupImages, groupMembers, parseGroupKey, DEFAULT_MORE_THAN, DEFAULT_SIGMAS, type Firing, type Groups } from './groups.js';
import { conceptsCsv, reportHtml, type GroupExplanation } from './report.js';
import { INTERPRETABLE_ABOVE, interpretabilityScore, lowlyActivating, type LowlyOptions } from './scores.js';
import { rng } from '../../random.js';
import { readJson } from '../../io/text.js';

/** The probe images as the target model sees them (e.g. resized to 256, centre-cropped to 224). */
export interface ProbeImages {
  /** Number of probe images. */
  readonly count: number;
  /** Image i (0 ≤ i < count) as the target model sees it; called repeatedly, so it should be cheap or cached. */
  rgb(i: number): Promise<RgbImage>;
}

/** The network being explained, at its target layer. */
export interface TargetModel {
  readonly dim: number;
  /** Representations R of the images: n × dim (e.g. the target layer, globally average pooled). */
  represent(images: RgbImage[]): Promise<Float32Array>;
  /** GradCAM inputs for the group target Σ_{i∈group} R[x, i] on these images (one entry per target layer). */
  camLayers(images: RgbImage[], group: number[]): Promise<LayerMaps[]>;
}

/** The vision-language image encoder whose space the caption vocabulary shares. */
export interface ImageEncoder {
  /** Embedding width (must equal the caption vocabulary's). */
  readonly dim: number;
  /** Embeddings of the images, images.length × dim row-major. */
  embed(images: RgbImage[]): Promise<Float32Array>;
}

/** A target model from a layer tap whose representation is that layer's global average pool: GradCAM is analytic. */
export function pooledLayerModel(dim: number, tap: (images: RgbImage[]) => Promise<LayerMaps>, pool: (l: LayerMaps) => Float32Array): TargetModel {
  return {
    dim,
    represent: async (images) => pool(await tap(images)),
    camLayers: async (images) => [await tap(images)],
  };
}

/** What {@link describeGroup} needs to caption and contrast one group. */
export interface DescribeInputs {
  /** The group key ("3,17"). */
  key: string;
  /** Highly activating image indices. */
  high: number[];
  /** Lowly activating (counterfactual) image indices. */
  low: number[];
  /** Similarity of each lowly activating image, aligned with `low`. */
  lowSimilarities: number[];
  /** Embeddings (rows aligned with `high`) used to caption the highly activating images: their crops' where available. */
  highEmbeddings: Float32Array;
  /** Embeddings of the lowly activating images (rows aligned with `low`). */
  lowEmbeddings: Float32Array;
  /** Crop embeddings for the interpretability score, or null. */
  cropEmbeddings: Float32Array | null;
  /** Embedding width. */
  dim: number;
  /** Caption vocabulary in the encoder's space. */
  vocab: Vocabulary;
}

/** Captions and contrasted concepts of one group. */
export async function describeGroup(a: DescribeInputs, opts: CaptionOptions & ConceptOptions = {}): Promise<GroupExplanation> {
  const both = new Float32Array(a.highEmbeddings.length + a.lowEmbeddings.length);
  both.set(a.highEmbeddings);
  both.set(a.lowEmbeddings, a.highEmbeddings.length);
  const caps = await topCaptions(both, a.high.length + a.low.length, a.vocab, opts);
  const high = caps.slice(0, a.high.length), low = caps.slice(a.high.length);
  const { words, phrases } = contrastConcepts(high, low, opts);
  return {
    group: a.key, features: parseGroupKey(a.key), high: a.high, low: a.low, lowSimilarities: a.lowSimilarities,
    interpretability: a.cropEmbeddings ? interpretabilityScore(a.cropEmbeddings, a.high.length, a.dim) : null,
    explained: true, baseline: null, words, phrases, captions: { high, low },
  };
}

/** What {@link runFalcon} explains and with what. */
export interface RunInputs {
  /** The probe images. */
  images: ProbeImages;
  /** The network and layer being explained. */
  model: TargetModel;
  /** Vision-language encoder for crops and counterfactuals. */
  encoder: ImageEncoder;
  /** Caption vocabulary sharing the encoder's space. */
  vocab: Vocabulary;
}

/**
 * Options of {@link runFalcon}. `signal` stops the run between steps (finished stages stay on disk and a rerun
 * resumes); progress goes to `onStage`, not `onProgress`.
 */
export interface RunOptions extends ProgressOptions {
  /** Images per call to the target model and the encoder (default 32). */
  batch?: number;
  /** Threshold τ in standard deviations above the mean (default {@link DEFAULT_SIGMAS}); a resumed run must use the same. */
  sigmas?: number;
  /** Keep groups shared by more than this many images (default {@link DEFAULT_MORE_THAN}); a resumed run must use the same. */
  moreThan?: number;
  /** Explain at most this many groups, largest first. */
  maxGroups?: number;
  /** Selection of the counterfactual images. */
  lowly?: LowlyOptions;
  /** Captioning and concept contrast. */
  captions?: CaptionOptions & ConceptOptions;
  /**
   * Groups are captioned and named only when their crops' interpretability
   * score passes this (the reference's 0.8); the others are reported with
   * their score. Default INTERPRETABLE_ABOVE.
   */
  interpretableAbove?: number;
  /** Explain every group, whatever its score (turns the threshold off). */
  explainAll?: boolean;
  /** Seeds the random image sets each group's score is compared with. Default 0. */
  seed?: number;
  /** Called as each stage starts or progresses (done of total). */
  onStage?: (stage: string, done: number, total: number) => void;
}

const fileKey = (key: string) => 'g' + key.replace(/,/g, '_');
export const groupFile = (key: string) => `groups/${fileKey(key)}.json`;
export const cropPath = (key: string, image: number) => `crops/${fileKey(key)}/${image}.png`;
export const imagePath = (image: number) => `images/${image}.png`;

async function writePng(path: string, img: RgbImage): Promise<void> {
  const png = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } }).png().toBuffer();
  writeFileAtomic(path, png);
}

class Run {
  constructor(readonly dir: string, readonly inp: RunInputs, readonly opts: RunOptions) {}

  path(rel: string): string {
    return join(this.dir, rel);
  }

  async rgbs(ids: number[]): Promise<RgbImage[]> {
    return Promise.all(ids.map((i) => this.inp.images.rgb(i)));
  }

  async representations(): Promise<{ data: Float32Array; rows: number; cols: number }> {
    const p = this.path('representations.npy'), { count } = this.inp.images, dim = this.inp.model.dim;
    if (existsSync(p)) {
      const a = readNpy(p);
      if (a.shape[0] !== count || a.shape[1] !== dim)
        throw fileError(p, `shape [${a.shape.join(', ')}] does not match this run (${count} images × ${dim} features); use a fresh run directory`);
      return { data: a.data as Float32Array, rows: count, cols: dim };
    }
    const out = new Float32Array(count * dim), batch = this.opts.batch ?? 32;
    for (let i0 = 0; i0 < count; i0 += batch) {
      throwIfAborted(this.opts.signal);
      const ids = Array.from({ length: Math.min(batch, count - i0) }, (_, j) => i0 + j);
      out.set(await this.inp.model.represent(await this.rgbs(ids)), i0 * dim);
      this.opts.onStage?.('representations', i0 + ids.length, count);
    }
    writeNpy(p, out, [count, dim]);
    return { data: out, rows: count, cols: dim };
  }

  async groups(r: { data: Float32Array; rows: number; cols: number }): Promise<{ firing: Firing; groups: Groups }> {
    const sigmas = this.opts.sigmas ?? DEFAULT_SIGMAS, moreThan = this.opts.moreThan ?? DEFAULT_MORE_THAN;
    const p = this.path('groups.json'), f = this.path('firing.json');
    if (existsSync(p)) this.requireSameGrouping(f, { sigmas, moreThan });
    const firing = await computeFiring(r, { sigmas, signal: this.opts.signal });
    if (existsSync(p)) return { firing, groups: readJson<Groups>(p) };
    const groups = groupImages(firing.sets, moreThan);
    writeFileAtomic(f, JSON.stringify({ mean: firing.mean, std: firing.std, tau: firing.tau, sigmas, moreThan }) + '\n');
    writeFileAtomic(p, JSON.stringify(groups) + '\n');
    return { firing, groups };
  }

  /** A resumed run groups as it did the first time: other settings would mix two runs' outputs. */
  private requireSameGrouping(firingPath: string, asked: { sigmas: number; moreThan: number }): void {
    const recorded = existsSync(firingPath) ? readJson<Partial<typeof asked>>(firingPath) : {};
    for (const k of ['sigmas', 'moreThan'] as const)
      if (recorded[k] !== undefined && recorded[k] !== asked[k])
        throw new ConceptLensError('ERR_ARG', `${k}: the run in ${this.dir} was grouped with ${k} = ${recorded[k]}, this call asks for ${asked[k]}; use the same value or a fresh run directory`);
  }

  async embed(imgs: RgbImage[]): Promise<Float32Array> {
    const { encoder } = this.inp, out = new Float32Array(imgs.length * encoder.dim), batch = this.opts.batch ?? 32;
    for (let i0 = 0; i0 < imgs.length; i0 += batch) out.set(await encoder.embed(imgs.slice(i0, i0 + batch)), i0 * encoder.dim);
    return out;
  }

  async explain(key: string, high: number[], r: Float32Array, firing: Firing): Promise<GroupExplanation> {
    const p = this.path(groupFile(key));
    if (existsSync(p)) return readJson<GroupExplanation>(p);
    const features = parseGroupKey(key, firing.cols);
    const imgs = await this.rgbs(high);
    const cams = await groupCams(await this.inp.model.camLayers(imgs, features), features,
      { width: imgs[0].width, height: imgs[0].height, signal: this.opts.signal });
    const crops = await Promise.all(imgs.map((img, j) => cropResize(img, cams.boxes[j])));
    ensureDir(this.path(`crops/${fileKey(key)}`), 'FALCON run');
    await Promise.all(crops.map((c, j) => writePng(this.path(cropPath(key, high[j])), c)));
    const cropEmb = await this.embed(crops), dim = this.inp.encoder.dim;
    const lowly = lowlyActivating(r, firing, features, high, this.opts.lowly);
    const lowImgs = await this.rgbs(lowly.images);
    await Promise.all(lowImgs.map((img, j) => writePng(this.path(imagePath(lowly.images[j])), img)));
    const base = { key, high, low: lowly.images, lowSimilarities: lowly.similarities, highEmbeddings: cropEmb, cropEmbeddings: cropEmb, dim, vocab: this.inp.vocab };
    const score = interpretabilityScore(cropEmb, high.length, dim);
    const explained = this.opts.explainAll || score > (this.opts.interpretableAbove ?? INTERPRETABLE_ABOVE);
    const e = explained
      ? await describeGroup({ ...base, lowEmbeddings: await this.embed(lowImgs) }, { ...this.opts.captions, signal: this.opts.signal })
      : unexplained(base, score);
    e.boxes = cams.boxes;
    e.baseline = await this.randomBaseline(key, high.length);
    writeFileAtomic(p, JSON.stringify(e) + '\n');
    return e;
  }

  /** The interpretability score of as many random images (whole, seeded by the group): what chance gives. */
  private async randomBaseline(key: string, size: number): Promise<number> {
    const rand = rng(hashKey(key) ^ (this.opts.seed ?? 0)), n = this.inp.images.count;
    const picks = Array.from({ length: Math.min(size, n) }, () => Math.floor(rand() * n));
    return interpretabilityScore(await this.embed(await this.rgbs(picks)), picks.length, this.inp.encoder.dim);
  }
}

/** A group whose crops score below the threshold: reported with its score, not captioned. */
function unexplained(a: Omit<DescribeInputs, 'lowEmbeddings'>, score: number): GroupExplanation {
  return {
    group: a.key, features: parseGroupKey(a.key), high: a.high, low: a.low, lowSimilarities: a.lowSimilarities,
    interpretability: score, explained: false, baseline: null, words: [], phrases: [], captions: { high: [], low: [] },
  };
}

/** A 32-bit FNV-1a hash of a group key (seeds its random baseline). */
function hashKey(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** Runs (or resumes) FALCON into `dir`; returns the explained groups. */
export async function runFalcon(inp: RunInputs, dir: string, opts: RunOptions = {}): Promise<GroupExplanation[]> {
  if (inp.encoder.dim !== inp.vocab.dim)
    throw new ConceptLensError('ERR_SHAPE', `image encoder dimension ${inp.encoder.dim} differs from the caption vocabulary's (${inp.vocab.dim}, ${inp.vocab.source})`);
  for (const d of ['groups', 'crops', 'images']) ensureDir(join(dir, d), 'FALCON run');
  const run = new Run(dir, inp, opts);
  const r = await run.representations();
  const { firing, groups } = await run.groups(r);
  const keys = Object.keys(groups).sort((a, b) => groups[b].length - groups[a].length || (a < b ? -1 : 1)).slice(0, opts.maxGroups ?? Infinity);
  const out: GroupExplanation[] = [];
  for (const key of keys) {
    opts.onStage?.('groups', out.length, keys.length);
    out.push(await run.explain(key, groupMembers(groups, key), r.data, firing));
  }
  opts.onStage?.('groups', out.length, keys.length);
  writeFileAtomic(join(dir, 'concepts.csv'), conceptsCsv(out));
  writeFileAtomic(join(dir, 'report.html'), reportHtml('FALCON feature groups', out, {
    crops: (e) => e.high.map((i) => cropPath(e.group, i)),
    lowly: (e) => e.low.map(imagePath),
  }));
  return out;
}
