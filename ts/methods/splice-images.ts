// SpLiCE end to end on a folder of images: embed (sorted, recursive, corrupt
// files skipped), build the dictionary from the concept embeddings, decompose
// every image, and write per-image and dataset (and per-class) decompositions
// with a bar chart of the dataset's top concepts.
import { renameSync, rmSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import type { ProgressOptions } from '../abort.js';
import { embedImages, classKeys, isImageName, listFiles } from '../encoders/embed-images.js';
import { ConceptLensError } from '../errors.js';
import { preprocessSpec, type PreprocessSpec, type SkippedImage } from '../images/preprocess.js';
import { writeFileAtomic, requireDirTarget, requireOutsideImages } from '../io/atomic.js';
import { formatCsv } from '../io/csv.js';
import { readFloatMatrix, readMatrix, readVector } from '../io/matrix.js';
import { writeNpy } from '../io/npy.js';
import { normaliseRows, toFloat32, type FloatData } from '../matrix.js';
import { writeBarChart } from '../report/chart.js';
import { readVocabulary, SpliceModel, type ConceptWeight } from './splice.js';

/** Options of {@link spliceImages}; give exactly one of `model` and `standin`. `onProgress` reports images embedded. */
export interface SpliceImagesOptions extends ProgressOptions {
  /** Folder of images (recursive, sorted; undecodable files are skipped and reported). */
  images: string;
  /** CLIP image ONNX export; ignored with `standin`. */
  model?: string;
  /** Embed with the offline stand-in tower ({@link StandinImageTower}) instead of a CLIP model. */
  standin?: boolean;
  /** c×d concept embeddings (.npy), rows aligned with the names file (or with its last `vocabLast` lines). */
  concepts: string;
  /** Vocabulary file of concept names, one per line (first ", " part of each line). */
  conceptNames: string;
  /** Use only the last this many vocabulary lines (the most frequent concepts); default all. */
  vocabLast?: number;
  /** The modality mean μ (.npy, d values); without it the images' own mean is used. */
  imageMean?: string;
  /** λ of the SpLiCE objective. */
  l1: number;
  /** Also write per-class mean weights to dataset.csv, with classes from class folders or wnid file names. */
  labelsFrom?: 'folder' | 'wnid';
  /**
   * Output directory (must not be inside `images`): embeddings.npy, weights.npy, decompositions.csv, dataset.csv,
   * dataset.svg/png.
   */
  out: string;
  /** Concepts per image in decompositions.csv (default 10); the chart shows max(top, 15) bars. */
  top?: number;
  /** Preprocessing for a real model (the stand-in always uses ImageNet's). */
  spec?: PreprocessSpec;
  /** Progress of the decomposition (embedding progress goes to onProgress). */
  onSolveProgress?: (done: number, total: number) => void;
}

/** Summary of a {@link spliceImages} run. */
export interface SpliceImagesResult {
  /** Images decomposed. */
  images: number;
  /** Concepts in the dictionary. */
  concepts: number;
  /** Embedding width. */
  d: number;
  /** Files that were not embedded (not images, or not decodable). */
  skipped: SkippedImage[];
  /** 'file' (the given --image-mean) or 'images' (the mean of these images' unit embeddings). */
  centredOn: 'file' | 'images';
  /** Mean non-zero weights per image. */
  meanL0: number;
  /** Mean cosine of each recomposition with its image embedding. */
  meanCosine: number;
  /** Wall time of embedding, in seconds. */
  embedSeconds: number;
  /** Wall time of the decomposition, in seconds. */
  solveSeconds: number;
  /** Decomposition throughput (images per second of solving). */
  samplesPerSecond: number;
  /** Classes found with `labelsFrom` (0 without). */
  classes: number;
  /** The dataset's heaviest concepts by mean weight, as charted (max(top, 15) of them). */
  top: ConceptWeight[];
  /** Paths of the files written. */
  outputs: string[];
}

/** Concept names and their embeddings, the last `vocabLast` of each when given. */
function loadConcepts(o: SpliceImagesOptions): { names: string[]; vectors: Float32Array; d: number } {
  const all = readVocabulary(o.conceptNames);
  const names = o.vocabLast === undefined ? all : readVocabulary(o.conceptNames, o.vocabLast, 'vocabLast');
  const a = readFloatMatrix(o.concepts, { what: 'concept embeddings' });
  if (a.rows !== all.length && a.rows !== names.length)
    throw new ConceptLensError('ERR_SHAPE', `${o.concepts}: expected ${[...new Set([all.length, names.length])].map((n) => `${n}×d`).join(' or ')} (rows aligned with ${o.conceptNames}${o.vocabLast === undefined ? '' : ', or its last vocabLast'}), got shape [${a.rows}, ${a.cols}]`);
  const d = a.cols, vectors = toFloat32(a.data as FloatData);
  return { names, vectors: vectors.subarray((a.rows - names.length) * d), d };
}

function columnMean(w: Float32Array, c: number, rows: readonly number[]): Float64Array {
  const m = new Float64Array(c);
  for (const i of rows) for (let j = 0; j < c; j++) m[j] += w[i * c + j] / rows.length;
  return m;
}

const mean = (xs: ArrayLike<number>) => Array.from(xs).reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

/** Ranked non-zero mean weights of one scope ('all' or a class key) as CSV rows. */
function rankedRows(scope: string, count: number, model: SpliceModel, m: Float64Array): (string | number)[][] {
  return model.topConcepts(m, model.c).map((t, r) => [scope, count, r + 1, t.concept, t.index, t.weight]);
}

/** Embeds, decomposes and writes weights.npy, decompositions.csv, dataset.csv, dataset.svg/png under `out`. */
export async function spliceImages(o: SpliceImagesOptions): Promise<SpliceImagesResult> {
  if (!o.model === !o.standin) throw new ConceptLensError('ERR_ARG', 'give either --model CLIP_IMAGE.onnx or --standin');
  requireOutsideImages(o.out, [o.images]);
  requireDirTarget(o.out, 'SpLiCE images');
  const out = resolve(o.out);
  // Every input is checked before any output is touched; the embeddings go to a
  // temporary file that replaces embeddings.npy only once the whole run succeeds.
  const { names, vectors, d } = loadConcepts(o);
  const givenMean = o.imageMean ? readVector(o.imageMean, { what: 'image mean', length: d, lengthFrom: `the width of ${o.concepts}` }) : undefined;
  const embPath = join(out, 'embeddings.npy'), tmpEmb = join(out, `.embeddings-${process.pid}.npy`);
  try {
    return await decomposeImages(o, { names, vectors, d, givenMean, embPath, tmpEmb });
  } finally {
    for (const f of [tmpEmb, `${tmpEmb}.partial`, `${tmpEmb}.ckpt.json`]) rmSync(f, { force: true });
  }
}

interface Prepared {
  names: string[];
  vectors: Float32Array;
  d: number;
  givenMean?: Float32Array;
  embPath: string;
  tmpEmb: string;
}

async function decomposeImages(o: SpliceImagesOptions, p: Prepared): Promise<SpliceImagesResult> {
  const { names, vectors, d, out } = { ...p, out: resolve(o.out) };
  const t0 = performance.now();
  const r = await embedImages({
    model: o.model ?? 'standin', standin: !!o.standin, images: o.images, out: p.tmpEmb, restart: true,
    spec: o.spec ?? preprocessSpec(o.standin ? 'imagenet' : 'clip'), signal: o.signal, onProgress: o.onProgress,
  });
  const embedSeconds = (performance.now() - t0) / 1000;
  if (r.dim !== d) throw new ConceptLensError('ERR_SHAPE', `${o.concepts}: concepts have d = ${d} but the image embeddings have ${r.dim} (different spaces?)`);
  const skippedPaths = new Set(r.skipped.map((s) => s.path));
  const files = listFiles(o.images, [p.embPath, p.tmpEmb]).filter((f) => isImageName(f) && !skippedPaths.has(f));
  if (files.length !== r.rows) throw new ConceptLensError('ERR_ENGINE', `internal: ${r.rows} embeddings for ${files.length} decodable files`);
  const emb = readMatrix(p.tmpEmb, { what: 'image embeddings' }).data;

  // SpLiCE centres on the modality mean; with none given, the images' own mean of unit embeddings stands in.
  const imageMean = p.givenMean ?? Float32Array.from(columnMean(normaliseRows(emb, d), d, files.map((_, i) => i)));
  const model = SpliceModel.fromEmbeddings(names, vectors, d, imageMean, { l1: o.l1 });
  const t1 = performance.now();
  const enc = await model.encode(emb, { signal: o.signal, onProgress: o.onSolveProgress });
  const solveSeconds = (performance.now() - t1) / 1000;

  const top = o.top ?? 10, c = model.c, rel = files.map((f) => relative(o.images, f));
  writeNpy(join(out, 'weights.npy'), enc.weights, [enc.n, c]);
  const perImage = rel.map((f, i) => [f, enc.l0[i], enc.cosine[i],
    model.topConcepts(enc.weights.subarray(i * c, (i + 1) * c), top).map((t) => `${t.concept}:${t.weight.toPrecision(6)}`).join(' ')]);
  writeFileAtomic(join(out, 'decompositions.csv'), formatCsv([['file', 'l0', 'cosine', 'top_concepts'], ...perImage]));

  const all = files.map((_, i) => i), dataset = columnMean(enc.weights, c, all);
  const rows = rankedRows('all', files.length, model, dataset);
  const groups = new Map<string, number[]>();
  if (o.labelsFrom) classKeys(o.images, files, o.labelsFrom).forEach((k, i) => groups.set(k, [...(groups.get(k) ?? []), i]));
  for (const [k, idx] of [...groups].sort((a, b) => (a[0] < b[0] ? -1 : 1))) rows.push(...rankedRows(k, idx.length, model, columnMean(enc.weights, c, idx)));
  writeFileAtomic(join(out, 'dataset.csv'), formatCsv([['scope', 'images', 'rank', 'concept', 'index', 'mean_weight'], ...rows]));

  const best = model.topConcepts(dataset, Math.max(top, 15));
  const centred = o.imageMean ? 'the given image mean' : 'their own mean';
  const chart = await writeBarChart(join(out, 'dataset'), `SpLiCE: mean concept weights of ${files.length} images (λ = ${o.l1}, centred on ${centred})`, best);
  renameSync(p.tmpEmb, p.embPath);
  const embPath = p.embPath;
  return {
    images: enc.n, concepts: c, d, skipped: r.skipped, centredOn: o.imageMean ? 'file' : 'images',
    meanL0: mean(enc.l0), meanCosine: mean(enc.cosine), embedSeconds, solveSeconds, samplesPerSecond: enc.n / solveSeconds,
    classes: groups.size, top: best,
    outputs: [embPath, ...['weights.npy', 'decompositions.csv', 'dataset.csv'].map((f) => join(out, f)), chart.svg, chart.png],
  };
}
