// FALCON end to end over small interfaces, so the project's image
// preprocessing, ONNX layer taps, image encoder and vocabulary plug in:
// representations → groups → GradCAM crops → interpretability → lowly
// activating counterfactuals → captions → contrasted concepts → report.
// Each stage writes its outputs atomically into the run directory and is
// reused only when what it was computed from is the same (ts/io/stages.ts's
// StageCache, as the atlas's stages): a rerun with other inputs or options
// computes the stages they change, and every later one, again.
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { throwIfAborted, type ProgressOptions } from '../../abort.js';
import { ensureDir, writeFileAtomic } from '../../io/atomic.js';
import { readNpy, writeNpy } from '../../io/npy.js';
import { cropResize, groupCams, type LayerMaps, type RgbImage } from './cam.js';
import { argError, ConceptLensError, fileError } from '../../errors.js';
import type { Vocabulary } from '../../retrieval/vocabulary.js';
import { topCaptions, type CaptionOptions } from './captions.js';
import { contrastConcepts, type ConceptOptions } from './concepts.js';
import { computeFiring, groupImages, groupMembers, parseGroupKey, DEFAULT_MORE_THAN, DEFAULT_SIGMAS, type Firing, type Groups } from './groups.js';
import { StageCache } from '../../io/stages.js';
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

/**
 * What the inputs were made from, as any JSON (file identities, the layer, the image list): part of each stage's key,
 * so a rerun reuses a stage's outputs only when these, and the options the stage used, are the same.
 */
export interface RunSources {
  /** The probe images (e.g. their files; their count is keyed anyway). */
  images: unknown;
  /** The target model and layer (e.g. the model file's identity and the layer name). */
  model: unknown;
  /** The image encoder (e.g. its file's identity). */
  encoder: unknown;
  /** The caption vocabulary (e.g. its files' identities). */
  vocab: unknown;
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
  /** What the four inputs above were made from. */
  sources: RunSources;
  /** The representations, already computed (count × model.dim): the first stage stores them rather than calling the model. */
  representations?: Float32Array;
}

/**
 * Options of {@link runFalcon}. `signal` stops the run between steps (finished stages stay on disk and a rerun
 * resumes); progress goes to `onStage`, not `onProgress`.
 */
export interface RunOptions extends ProgressOptions {
  /** Images per call to the target model and the encoder (default 32). */
  batch?: number;
  /** Threshold τ in standard deviations above the mean (default {@link DEFAULT_SIGMAS}). */
  sigmas?: number;
  /** Keep groups shared by more than this many images (default {@link DEFAULT_MORE_THAN}). */
  moreThan?: number;
  /**
   * Explain at most this many groups, largest first. A rerun with another value reuses the groups already explained
   * (their files stay, also those no longer asked for).
   */
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
  /** Explain every group, whatever its interpretability (turns the threshold off). */
  explainAll?: boolean;
  /** Seeds the random image sets each group's score is compared with. Default 0. */
  seed?: number;
  /**
   * Called as each stage starts or progresses (done of total); `cached` when a stage's outputs were reused from an
   * earlier run of the same inputs and options.
   */
  onStage?: (stage: string, done: number, total: number, cached?: boolean) => void;
}

const fileKey = (key: string) => 'g' + key.replace(/,/g, '_');
export const groupFile = (key: string) => `groups/${fileKey(key)}.json`;
export const cropPath = (key: string, image: number) => `crops/${fileKey(key)}/${image}.png`;
export const imagePath = (image: number) => `images/${image}.png`;

/**
 * Each stage's outputs in the run directory, in stage order; the report is rewritten by every run. A stage that
 * starts over removes its own and every later stage's outputs and records (see {@link clearFrom}).
 */
const OUTPUTS: readonly (readonly [stage: string, files: readonly string[]])[] = [
  ['representations', ['representations.npy']],
  ['groups', ['firing.json', 'groups.json']],
  ['explanations', ['groups', 'crops', 'images']],
  ['report', ['concepts.csv', 'report.html']],
];

/** Every path a run writes under its directory (a stage starting over removes them). */
export const RUN_OUTPUTS: readonly string[] = ['stages', ...OUTPUTS.flatMap(([, files]) => files)];

/**
 * A run replaces its outputs by name (images/, groups/, …): only in a folder that holds none of them, or holds a
 * FALCON run's record of its first stage, so nothing else of the user's that bears those names is ever removed.
 */
export function requireRunDir(dir: string): void {
  if (!existsSync(dir) || existsSync(join(dir, 'stages', OUTPUTS[0][0]))) return;
  const held = RUN_OUTPUTS.filter((f) => existsSync(join(dir, f)));
  if (held.length > 0)
    throw fileError(dir, `holds ${held.join(', ')} but no record of a FALCON run (stages/${OUTPUTS[0][0]}), and a run replaces those; give an empty or new --out`);
}

/** Clears stage `name` onwards: no output computed from other inputs stays beside the ones this run computes. */
function clearFrom(cache: StageCache, name: string): () => void {
  return () => {
    for (const [stage, files] of OUTPUTS.slice(OUTPUTS.findIndex(([s]) => s === name))) {
      rmSync(cache.dir(stage), { recursive: true, force: true });
      for (const f of files) rmSync(join(cache.root, f), { recursive: true, force: true });
    }
  };
}

/** The options an explanation depends on; not how it is computed (batch, signal, the searcher, progress). */
function explainSettings(o: RunOptions): unknown {
  const { search: _s, signal: _g, onProgress: _p, ...captions } = o.captions ?? {};
  return { lowly: o.lowly, captions, interpretableAbove: o.interpretableAbove, explainAll: o.explainAll, seed: o.seed };
}

async function writePng(path: string, img: RgbImage): Promise<void> {
  const png = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } }).png().toBuffer();
  writeFileAtomic(path, png);
}

type Reps = { data: Float32Array; rows: number; cols: number };

class Run {
  constructor(readonly dir: string, readonly inp: RunInputs, readonly opts: RunOptions) {}

  path(rel: string): string {
    return join(this.dir, rel);
  }

  async rgbs(ids: number[]): Promise<RgbImage[]> {
    return Promise.all(ids.map((i) => this.inp.images.rgb(i)));
  }

  /** Writes representations.npy: the given representations, or the target model's. */
  async writeRepresentations(): Promise<void> {
    const { count } = this.inp.images, dim = this.inp.model.dim, given = this.inp.representations;
    if (given && given.length !== count * dim)
      throw new ConceptLensError('ERR_SHAPE', `representations: expected ${count} images × ${dim} features = ${count * dim} values, got ${given.length}`);
    writeNpy(this.path('representations.npy'), given ?? await this.represent(count, dim), [count, dim]);
  }

  /** The target model's representations of every image, batch by batch. */
  private async represent(count: number, dim: number): Promise<Float32Array> {
    const out = new Float32Array(count * dim), batch = this.opts.batch ?? 32;
    for (let i0 = 0; i0 < count; i0 += batch) {
      throwIfAborted(this.opts.signal);
      const ids = Array.from({ length: Math.min(batch, count - i0) }, (_, j) => i0 + j);
      out.set(await this.inp.model.represent(await this.rgbs(ids)), i0 * dim);
      this.opts.onStage?.('representations', i0 + ids.length, count);
    }
    return out;
  }

  readRepresentations(): Reps {
    const a = readNpy(this.path('representations.npy'));
    return { data: a.data as Float32Array, rows: a.shape[0], cols: a.shape[1] };
  }

  /** Writes groups.json and firing.json (τ and the grouping settings, for the reader). */
  writeGroups(firing: Firing, grouping: { sigmas: number; moreThan: number }): void {
    writeFileAtomic(this.path('firing.json'), JSON.stringify({ mean: firing.mean, std: firing.std, tau: firing.tau, ...grouping }) + '\n');
    writeFileAtomic(this.path('groups.json'), JSON.stringify(groupImages(firing.sets, grouping.moreThan)) + '\n');
  }

  /** Explains each group not explained yet (an interrupted stage resumes at the first group without a file). */
  async explainGroups(groups: Groups, keys: string[], r: Float32Array, firing: Firing): Promise<void> {
    for (const d of ['groups', 'crops', 'images']) ensureDir(this.path(d), 'FALCON run');
    for (const [i, key] of keys.entries()) {
      this.opts.onStage?.('explanations', i, keys.length);
      if (!existsSync(this.path(groupFile(key)))) await this.explain(key, groupMembers(groups, key), r, firing);
    }
    this.opts.onStage?.('explanations', keys.length, keys.length);
  }

  readExplanations(keys: string[]): GroupExplanation[] {
    return keys.map((key) => readJson<GroupExplanation>(this.path(groupFile(key))));
  }

  async embed(imgs: RgbImage[]): Promise<Float32Array> {
    const { encoder } = this.inp, out = new Float32Array(imgs.length * encoder.dim), batch = this.opts.batch ?? 32;
    for (let i0 = 0; i0 < imgs.length; i0 += batch) out.set(await encoder.embed(imgs.slice(i0, i0 + batch)), i0 * encoder.dim);
    return out;
  }

  async explain(key: string, high: number[], r: Float32Array, firing: Firing): Promise<void> {
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
    writeFileAtomic(this.path(groupFile(key)), JSON.stringify(e) + '\n');
  }

  /** The interpretability score of as many random images (whole, seeded by the group): what chance gives. */
  private async randomBaseline(key: string, size: number): Promise<number> {
    const rand = rng(hashKey(key) ^ (this.opts.seed ?? 0)), n = this.inp.images.count;
    const picks = Array.from({ length: Math.min(size, n) }, () => Math.floor(rand() * n));
    return interpretabilityScore(await this.embed(await this.rgbs(picks)), picks.length, this.inp.encoder.dim);
  }

  /** concepts.csv and report.html of the explained groups. */
  writeReport(out: GroupExplanation[]): void {
    writeFileAtomic(this.path('concepts.csv'), conceptsCsv(out));
    writeFileAtomic(this.path('report.html'), reportHtml('FALCON feature groups', out, {
      crops: (e) => e.high.map((i) => cropPath(e.group, i)),
      lowly: (e) => e.low.map(imagePath),
    }));
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

/** The groups explained: at most `maxGroups`, largest first. */
function selectGroups(groups: Groups, maxGroups = Infinity): string[] {
  return Object.keys(groups).sort((a, b) => groups[b].length - groups[a].length || (a < b ? -1 : 1)).slice(0, maxGroups);
}

/**
 * Runs (or resumes) FALCON into `dir`; returns the explained groups. Each stage (representations, groups,
 * explanations) is reused only when its inputs' sources and options match the run that wrote it (records in
 * dir/stages/); otherwise it and every later stage are computed again.
 */
export async function runFalcon(inp: RunInputs, dir: string, opts: RunOptions = {}): Promise<GroupExplanation[]> {
  if (inp.encoder.dim !== inp.vocab.dim)
    throw new ConceptLensError('ERR_SHAPE', `image encoder dimension ${inp.encoder.dim} differs from the caption vocabulary's (${inp.vocab.dim}, ${inp.vocab.source})`);
  if (typeof inp.sources !== 'object' || inp.sources === null) throw argError('inputs.sources', 'what the inputs were made from (RunSources)', inp.sources);
  requireRunDir(dir);
  ensureDir(dir, 'FALCON run');
  const run = new Run(dir, inp, opts), src = inp.sources, signal = opts.signal;
  // Timings stay out of the records: a resumed run writes the same bytes as one never interrupted.
  const cache = new StageCache(dir, { signal, timed: false, progress: (p) => { if (p.cached) opts.onStage?.(p.stage, 1, 1, true); } });
  const reps = await cache.run('representations', { images: src.images, count: inp.images.count, model: src.model, dim: inp.model.dim },
    () => run.writeRepresentations(), () => run.readRepresentations(), clearFrom(cache, 'representations'));
  const grouping = { sigmas: opts.sigmas ?? DEFAULT_SIGMAS, moreThan: opts.moreThan ?? DEFAULT_MORE_THAN };
  const firing = await computeFiring(reps.value, { sigmas: grouping.sigmas, signal });
  const groups = await cache.run('groups', { representations: reps.key, ...grouping },
    async () => run.writeGroups(firing, grouping), () => readJson<Groups>(run.path('groups.json')), clearFrom(cache, 'groups'));
  const keys = selectGroups(groups.value, opts.maxGroups);
  // A group's explanation does not depend on which others are asked for: another maxGroups keeps those explained.
  const explainer = { groups: groups.key, encoder: src.encoder, vocab: src.vocab, settings: explainSettings(opts) };
  const explained = await cache.run('explanations', { ...explainer, keys },
    () => run.explainGroups(groups.value, keys, reps.value.data, firing), () => run.readExplanations(keys), clearFrom(cache, 'explanations'), explainer);
  run.writeReport(explained.value);
  return explained.value;
}
