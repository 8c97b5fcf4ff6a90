// FALCON step 6: the top captions of each image from a caption vocabulary
// of any size (retrieval/Vocabulary: a .npy with its captions, a LAION-layout
// shard directory or a store), streamed shard by shard through the exact
// top-k engine, with the reference's per-shard softmax(100·cos) scoring.
import { existsSync, statSync } from 'node:fs';
import type { ProgressOptions } from '../../abort.js';
import { ConceptLensError, fileError } from '../../errors.js';
import { fileIdentity } from '../../io/stages.js';
import { normaliseRows, rowsOf } from '../../matrix.js';
import { Vocabulary, type VocabSearchOptions, type VocabSearchResult } from '../../retrieval/vocabulary.js';
import type { ImageCaptions } from './concepts.js';

/** The captions file of an .npy vocabulary: `text`, else the .npy path with .txt. */
const captionsTextPath = (path: string, text?: string) => text ?? path.replace(/\.npy$/, '') + '.txt';

/**
 * A caption vocabulary: a LAION-layout directory or a store as it is, or an
 * .npy whose captions are `textPath` (default: the .npy path with .txt), or
 * the caption texts themselves.
 */
export async function openCaptions(path: string, text?: string | readonly string[]): Promise<Vocabulary> {
  if (!existsSync(path)) throw fileError(path, 'caption vocabulary not found');
  const v = statSync(path).isDirectory()
    ? await Vocabulary.open(path)
    : await Vocabulary.open(path, { names: typeof text === 'object' ? text : captionsTextPath(path, text) });
  if (!v.texts) throw fileError(path, 'the caption vocabulary has no captions (expected metadata_{i}.parquet, captions_{i}.txt or captions.txt beside the shards)');
  return v;
}

/** Identity of the caption vocabulary {@link openCaptions} opens, for stage keys: its files' identities. */
export function captionsIdentity(path: string, text?: string): unknown {
  return statSync(path).isDirectory() ? fileIdentity(path) : [fileIdentity(path), fileIdentity(captionsTextPath(path, text))];
}

/** Options of {@link topCaptions}; progress counts caption rows scanned. */
export interface CaptionOptions extends ProgressOptions {
  /** Captions per image (default 5, at most the vocabulary's rows). */
  k?: number;
  /** > 0: scores are softmax(T·cos) within each shard (default 100, as the reference); 0: plain cosine. */
  softmaxTemperature?: number;
  /** The vocabulary's rows are unit norm (as LAION's): score by inner product with normalised queries, skipping row norms. */
  unitRows?: boolean;
  /** Runs the search (default: the vocabulary's own; `queueSearcher` fans it out over a job queue's workers). */
  search?: VocabSearcher;
}

/** A search of a vocabulary, as {@link Vocabulary.search} does it or spread over workers. */
export type VocabSearcher = (vocab: Vocabulary, queries: Float32Array, opts: VocabSearchOptions) => Promise<VocabSearchResult>;

/** The top-k captions (best first) of each of n image embeddings (n × dim). */
export async function topCaptions(images: Float32Array, n: number, vocab: Vocabulary, opts: CaptionOptions = {}): Promise<ImageCaptions[]> {
  if (rowsOf(images, vocab.dim, 'image embeddings') !== n)
    throw new ConceptLensError('ERR_SHAPE', `image embeddings: expected ${n}×${vocab.dim} (the caption vocabulary's dimension) = ${n * vocab.dim} values, got ${images.length}`);
  if (n === 0) return [];
  const k = Math.min(opts.k ?? 5, vocab.rows);
  const queries = opts.unitRows ? normaliseRows(images, vocab.dim, { name: 'image embeddings', zeroRows: 'error' }) : images;
  const r = await (opts.search ?? ((v, q, o) => v.search(q, o)))(vocab, queries, {
    k, metric: opts.unitRows ? 'ip' : 'cosine', softmaxTemperature: opts.softmaxTemperature ?? 100, texts: true,
    signal: opts.signal, onProgress: opts.onProgress,
  });
  return Array.from({ length: n }, (_, q) => ({
    captions: r.texts!.slice(q * k, (q + 1) * k),
    scores: Array.from(r.scores.subarray(q * k, (q + 1) * k)),
  }));
}
