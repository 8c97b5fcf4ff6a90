// SpLiCE in the atlas: every probe image's text-aligned embedding decomposed
// over the vocabulary (weights.npy), centred on the given image mean or, as
// for the stand-in space where no CLIP image mean applies, on the images' own.
import { join } from 'node:path';
import type { ProgressOptions } from '../abort.js';
import { readMatrix, readVector } from '../io/matrix.js';
import { writeNpy } from '../io/npy.js';
import { readJson } from '../io/text.js';
import { normaliseRows, type Mat } from '../matrix.js';
import { SpliceModel } from '../methods/splice.js';
import { writeJson } from '../io/stages.js';
import type { ConceptVocab } from './vocab.js';

/** The decompositions of the probe images. */
export interface SpliceResult {
  /** images × concepts weights. */
  weights: Mat;
  /** The model (names, dictionary) the weights are over. */
  model: SpliceModel;
  meanL0: number;
  meanCosine: number;
  /** What the embeddings were centred on. */
  centredOn: string;
  l1: number;
}

interface Saved {
  meanL0: number;
  meanCosine: number;
  centredOn: string;
  l1: number;
}

const mean = (x: ArrayLike<number>) => Array.from(x).reduce((a, v) => a + v, 0) / Math.max(1, x.length);

/** The mean of the unit-normalised rows of all the sets: SpLiCE's modality mean when none is given. */
export function unitMean(sets: readonly Mat[]): Float32Array {
  const d = sets[0].cols, m = new Float64Array(d), n = sets.reduce((a, x) => a + x.rows, 0);
  for (const x of sets) {
    const unit = normaliseRows(x.data, d, { zeroRows: 'error', name: 'image embeddings' });
    for (let k = 0; k < unit.length; k++) m[k % d] += unit[k] / n;
  }
  return Float32Array.from(m);
}

function imageMean(clip: Mat, path: string | undefined): { mean: Float32Array; centredOn: string } {
  if (path) return { mean: readVector(path, { what: 'image mean', length: clip.cols, lengthFrom: 'the width of the image embeddings' }), centredOn: path };
  return { mean: unitMean([clip]), centredOn: 'the mean of the probe images\' embeddings' };
}

const model = (vocab: ConceptVocab, m: Float32Array, l1: number) => SpliceModel.fromEmbeddings(vocab.names, vocab.vectors, vocab.d, m, { l1 });

/** Decomposes the probe images into `dir` (weights.npy, splice.json, mean.npy). */
export async function computeSplice(dir: string, clip: Mat, vocab: ConceptVocab, o: { l1: number; imageMean?: string } & ProgressOptions): Promise<void> {
  const { mean: m, centredOn } = imageMean(clip, o.imageMean);
  const enc = await model(vocab, m, o.l1).encode(clip.data, { signal: o.signal, onProgress: o.onProgress });
  writeNpy(join(dir, 'weights.npy'), enc.weights, [enc.n, enc.c]);
  writeNpy(join(dir, 'mean.npy'), m, [m.length]);
  writeJson(join(dir, 'splice.json'), { meanL0: mean(enc.l0), meanCosine: mean(enc.cosine), centredOn, l1: o.l1 } satisfies Saved);
}

/** The decompositions written by {@link computeSplice}. */
export function loadSplice(dir: string, vocab: ConceptVocab): SpliceResult {
  const s = readJson<Saved>(join(dir, 'splice.json'));
  return { ...s, weights: readMatrix(join(dir, 'weights.npy'), { what: 'SpLiCE weights' }), model: model(vocab, readVector(join(dir, 'mean.npy')), s.l1) };
}

/** Mean weights over some rows (a unit's top images, a class). */
export function meanWeights(w: Mat, rows: ArrayLike<number>): Float64Array {
  const m = new Float64Array(w.cols);
  for (let r = 0; r < rows.length; r++) for (let j = 0; j < w.cols; j++) m[j] += w.data[rows[r] * w.cols + j] / rows.length;
  return m;
}
