// SpLiCE end to end on a folder of images: embed (sorted, recursive, corrupt
// files skipped), build the dictionary from the concept embeddings, decompose
// every image, and write per-image and dataset (and per-class) decompositions
// with a bar chart of the dataset's top concepts.
import { join, relative, resolve, sep } from 'node:path';
import type { ProgressOptions } from '../abort.js';
import { embedImages, classKeys, isImageName, listFiles } from '../encoders/embed-images.js';
import { preprocessSpec, type PreprocessSpec, type SkippedImage } from '../images/preprocess.js';
import { writeFileAtomic } from '../io/atomic.js';
import { formatCsv } from '../io/csv.js';
import { readNpy, writeNpy } from '../io/npy.js';
import { writeBarChart } from '../report/chart.js';
import { floatData, normaliseRows, readVocabulary, SpliceModel, toFloat32, type ConceptWeight } from './splice.js';

export interface SpliceImagesOptions extends ProgressOptions {
  images: string;
  /** CLIP image ONNX export; ignored with `standin`. */
  model?: string;
  standin?: boolean;
  /** c×d concept embeddings (.npy), rows aligned with the names file (or with its last `vocabLast` lines). */
  concepts: string;
  conceptNames: string;
  vocabLast?: number;
  /** The modality mean μ (.npy, d values); without it the images' own mean is used. */
  imageMean?: string;
  l1: number;
  labelsFrom?: 'folder' | 'wnid';
  out: string;
  /** Concepts per image in decompositions.csv and bars in the chart. */
  top?: number;
  /** Preprocessing for a real model (the stand-in always uses ImageNet's). */
  spec?: PreprocessSpec;
  /** Progress of the decomposition (embedding progress goes to onProgress). */
  onSolveProgress?: (done: number, total: number) => void;
}

export interface SpliceImagesResult {
  images: number;
  concepts: number;
  d: number;
  skipped: SkippedImage[];
  /** 'file' (the given --image-mean) or 'images' (the mean of these images' unit embeddings). */
  centredOn: 'file' | 'images';
  meanL0: number;
  meanCosine: number;
  embedSeconds: number;
  solveSeconds: number;
  /** Decomposition throughput (images per second of solving). */
  samplesPerSecond: number;
  classes: number;
  top: ConceptWeight[];
  outputs: string[];
}

/** Concept names and their embeddings, the last `vocabLast` of each when given. */
function loadConcepts(o: SpliceImagesOptions): { names: string[]; vectors: Float32Array; d: number } {
  const all = readVocabulary(o.conceptNames);
  const names = o.vocabLast === undefined ? all : readVocabulary(o.conceptNames, o.vocabLast);
  const a = readNpy(o.concepts);
  if (a.shape.length !== 2 || (a.shape[0] !== all.length && a.shape[0] !== names.length))
    throw new Error(`${o.concepts}: expected ${all.length}×d or ${names.length}×d (rows aligned with ${o.conceptNames}), got shape [${a.shape.join(', ')}]`);
  const d = a.shape[1], vectors = toFloat32(floatData(a, o.concepts));
  return { names, vectors: vectors.subarray((a.shape[0] - names.length) * d), d };
}

function columnMean(w: Float32Array, c: number, rows: readonly number[]): Float64Array {
  const m = new Float64Array(c);
  for (const i of rows) for (let j = 0; j < c; j++) m[j] += w[i * c + j] / rows.length;
  return m;
}

function loadMean(path: string, d: number): Float32Array {
  const m = toFloat32(floatData(readNpy(path), path));
  if (m.length !== d) throw new Error(`${path}: expected an image mean of ${d} values (the concepts' width), got ${m.length}`);
  return m;
}

const mean = (xs: ArrayLike<number>) => Array.from(xs).reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

/** Ranked non-zero mean weights of one scope ('all' or a class key) as CSV rows. */
function rankedRows(scope: string, count: number, model: SpliceModel, m: Float64Array): (string | number)[][] {
  return model.topConcepts(m, model.c).map((t, r) => [scope, count, r + 1, t.concept, t.index, t.weight]);
}

/** Embeds, decomposes and writes weights.npy, decompositions.csv, dataset.csv, dataset.svg/png under `out`. */
export async function spliceImages(o: SpliceImagesOptions): Promise<SpliceImagesResult> {
  if (!o.model === !o.standin) throw new Error('give either --model CLIP_IMAGE.onnx or --standin');
  const out = resolve(o.out), root = resolve(o.images);
  if (out === root || out.startsWith(root + sep)) throw new Error(`--out: '${o.out}' is inside --images '${o.images}'; its outputs would be read as images`);
  const { names, vectors, d } = loadConcepts(o);
  const embPath = join(out, 'embeddings.npy');
  const t0 = performance.now();
  const r = await embedImages({
    model: o.model ?? 'standin', standin: !!o.standin, images: o.images, out: embPath, restart: true,
    spec: o.spec ?? preprocessSpec(o.standin ? 'imagenet' : 'clip'), signal: o.signal, onProgress: o.onProgress,
  });
  const embedSeconds = (performance.now() - t0) / 1000;
  if (r.dim !== d) throw new Error(`${o.concepts}: concepts have d = ${d} but the image embeddings have ${r.dim} (different spaces?)`);
  const skippedPaths = new Set(r.skipped.map((s) => s.path));
  const files = listFiles(o.images, [embPath]).filter((f) => isImageName(f) && !skippedPaths.has(f));
  if (files.length !== r.rows) throw new Error(`internal: ${r.rows} embeddings for ${files.length} decodable files`);
  const emb = toFloat32(floatData(readNpy(embPath), embPath));

  // SpLiCE centres on the modality mean; with none given, the images' own mean of unit embeddings stands in.
  const imageMean = o.imageMean ? loadMean(o.imageMean, d) : Float32Array.from(columnMean(normaliseRows(emb, d), d, files.map((_, i) => i)));
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
  return {
    images: enc.n, concepts: c, d, skipped: r.skipped, centredOn: o.imageMean ? 'file' : 'images',
    meanL0: mean(enc.l0), meanCosine: mean(enc.cosine), embedSeconds, solveSeconds, samplesPerSecond: enc.n / solveSeconds,
    classes: groups.size, top: best,
    outputs: [embPath, ...['weights.npy', 'decompositions.csv', 'dataset.csv'].map((f) => join(out, f)), chart.svg, chart.png],
  };
}
