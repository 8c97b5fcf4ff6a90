// Sharded exact search: one job per source shard of a LAION shard directory
// or a store (a job never splits a shard: FALCON's softmax is per shard by
// definition). Each worker scans its shard with Vocabulary.scan, the code
// the local search runs, and writes that shard's top-k; the coordinator
// merges them by score and then lower id, the engine's own order, and
// finishes with Vocabulary.finish as the local search does. So the result is
// the local search's, bit for bit.
import { existsSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { ConceptLensError, requireInteger } from '../errors.js';
import { readMatrix } from '../io/matrix.js';
import { readNpy, writeNpy } from '../io/npy.js';
import type { SearchResult } from '../retrieval/exact.js';
import { Vocabulary, type OpenOptions, type VocabSearchOptions, type VocabSearchResult } from '../retrieval/vocabulary.js';
import { MANIFEST } from '../retrieval/vocab-store.js';
import { topCaptions, type CaptionOptions, type VocabSearcher } from '../methods/falcon/captions.js';
import type { ImageCaptions } from '../methods/falcon/concepts.js';
import { Recent } from './cache.js';
import { fanOut, type QueueOptions } from './coordinator.js';
import type { JobKind, PartContext } from './jobs.js';
import { localStamp } from './stamp.js';
import { hashArray, partPath, runDirFor } from './store.js';
import { fileIdentity, fingerprint } from '../io/stages.js';

/** How a worker reopens the coordinator's vocabulary exactly: its path, the options that shaped it, its files' identity. */
export interface VocabRef {
  path: string;
  open: Pick<OpenOptions, 'normalize' | 'center' | 'dedupe'>;
  fingerprint: string;
  rows: number;
  dim: number;
}

interface SearchPayload extends Pick<VocabSearchOptions, 'k' | 'metric' | 'softmaxTemperature' | 'kernel' | 'device'> {
  vocab: VocabRef;
  /** queries.npy in the run directory. */
  queries: string;
  /** The source shard (chunk) this part scans. */
  chunk: number;
}

const KIND = 'search';

/** Every file of a shard directory or store: what a sharded job's results depend on. */
const dirFingerprint = (dir: string) => fingerprint(fileIdentity(dir));

/** The reference workers reopen `v` by; only shard directories and stores live where workers can see them. */
export function vocabRef(v: Vocabulary): VocabRef {
  const path = resolve(v.source);
  if (!existsSync(path) || !statSync(path).isDirectory())
    throw new ConceptLensError('ERR_ARG', `vocabulary: a sharded run needs a LAION shard directory or a store on storage every worker sees, got ${v.source}`);
  const store = existsSync(join(path, MANIFEST));
  const open = store ? {} : { normalize: v.transforms.normalize, center: v.transforms.center, dedupe: v.ids !== undefined };
  return { path, open, fingerprint: dirFingerprint(path), rows: v.rows, dim: v.dim };
}

const opened = new Recent<Promise<Vocabulary>>(2);

/** The vocabulary a job refers to, opened once per worker; an error when this machine's files differ from the coordinator's. */
export async function reopen(ref: VocabRef, signal?: AbortSignal): Promise<Vocabulary> {
  const v = await opened.get(JSON.stringify(ref), () => Vocabulary.open(ref.path, { ...ref.open, signal }));
  if (dirFingerprint(ref.path) !== ref.fingerprint || v.rows !== ref.rows || v.dim !== ref.dim)
    throw new ConceptLensError('ERR_FILE', `${ref.path}: differs on this worker from what the coordinator opened (files, sizes or times); `
      + 'the shared path must hold the same data on every machine');
  return v;
}

/** The non-empty source shards of a vocabulary: chunk number, rows and the first file (for messages). */
function chunksOf(v: Vocabulary): { chunk: number; rows: number; file: string }[] {
  const byChunk = new Map<number, { chunk: number; rows: number; file: string }>();
  for (const s of v.shards) {
    const c = byChunk.get(s.chunk) ?? { chunk: s.chunk, rows: 0, file: basename(s.header.path) };
    c.rows += s.rows;
    byChunk.set(s.chunk, c);
  }
  return [...byChunk.values()].filter((c) => c.rows > 0).sort((a, b) => a.chunk - b.chunk);
}

const queriesRead = new Recent<Float32Array>(4);

async function searchPart(p: SearchPayload, ctx: PartContext): Promise<{ rows: number; k: number }> {
  const v = await reopen(p.vocab, ctx.signal);
  const queries = queriesRead.get(p.queries, () => readMatrix(p.queries, { what: 'queries', cols: v.dim }).data);
  const rows = v.shards.reduce((a, s) => a + (s.chunk === p.chunk ? s.rows : 0), 0);
  const r = await v.scan(queries, {
    k: Math.min(p.k, rows), metric: p.metric, softmaxTemperature: p.softmaxTemperature, kernel: p.kernel, device: p.device,
    chunks: [p.chunk], signal: ctx.signal,
  });
  writeNpy(ctx.file('.ids.npy'), r.ids, [r.nq, r.k]);
  writeNpy(ctx.file('.scores.npy'), r.scores, [r.nq, r.k]);
  return { rows, k: r.k };
}

/** The search job kind. */
export const searchJob: JobKind<SearchPayload> = { kind: KIND, handle: searchPart };

/** Whether (score a, id a) ranks before (score b, id b): higher score, then lower id, as the engine orders. */
const before = (sa: number, ia: bigint, sb: number, ib: bigint) => sa > sb || (sa === sb && ia < ib);

/** The top k of two top lists of the same queries (each row best first). */
export function mergeTopK(a: SearchResult, b: SearchResult, k: number): SearchResult {
  requireInteger(k, 'k', 1);
  const nq = a.nq, kk = Math.min(k, a.k + b.k);
  const ids = new BigInt64Array(nq * kk), scores = new Float32Array(nq * kk);
  for (let q = 0; q < nq; q++) {
    let i = 0, j = 0;
    for (let o = q * kk; o < (q + 1) * kk; o++) {
      const takeA = j >= b.k || (i < a.k && before(a.scores[q * a.k + i], a.ids[q * a.k + i], b.scores[q * b.k + j], b.ids[q * b.k + j]));
      const [src, at] = takeA ? [a, q * a.k + i++] : [b, q * b.k + j++];
      ids[o] = src.ids[at];
      scores[o] = src.scores[at];
    }
  }
  return { nq, k: kk, ids, scores };
}

function readPart(runDir: string, part: number, nq: number): SearchResult {
  const ids = readNpy(partPath(runDir, KIND, part, '.ids.npy')), scores = readNpy(partPath(runDir, KIND, part, '.scores.npy'));
  return { nq, k: ids.shape[1], ids: ids.data as BigInt64Array, scores: scores.data as Float32Array };
}

/** Options of {@link distributedSearch}: a search's and the queue's; progress comes through `onStatus` (shards). */
export type DistributedSearchOptions = VocabSearchOptions & QueueOptions;

/**
 * {@link Vocabulary.search} spread over the queue's workers: one job per
 * source shard of a LAION shard directory or a store, each writing its
 * shard's top-k under the run directory, merged into the global top-k. The
 * result equals the local search's bit for bit (ties go to the lower id, the
 * softmax is per shard as locally). Rerunning after a crash schedules only
 * the shards not yet done.
 */
export async function distributedSearch(vocab: string | Vocabulary, queries: Float32Array, opts: DistributedSearchOptions): Promise<VocabSearchResult> {
  const v = typeof vocab === 'string' ? await Vocabulary.open(vocab, { signal: opts.signal }) : vocab;
  if (!(queries instanceof Float32Array) || queries.length === 0 || queries.length % v.dim !== 0)
    throw new ConceptLensError('ERR_SHAPE', `queries: ${queries.length} values are not a whole number of rows of the vocabulary's dimension ${v.dim}`);
  if (!Number.isInteger(opts.k) || opts.k < 1 || opts.k > v.rows)
    throw new ConceptLensError('ERR_ARG', `k: expected an integer from 1 to the vocabulary's ${v.rows} rows, got ${opts.k}`);
  const nq = queries.length / v.dim, ref = vocabRef(v), chunks = chunksOf(v);
  const params = { k: opts.k, metric: opts.metric, softmaxTemperature: opts.softmaxTemperature, kernel: opts.kernel, device: opts.device };
  const runDir = runDirFor(opts.workDir, KIND, { vocab: ref, ...params, queries: hashArray(queries), stamp: localStamp() });
  const queriesPath = join(runDir, 'queries.npy');
  if (!existsSync(queriesPath)) writeNpy(queriesPath, queries, [nq, v.dim]);
  await fanOut({
    kind: KIND, runDir, payloads: chunks.map(({ chunk }) => ({ ...params, vocab: ref, queries: queriesPath, chunk })),
    label: (i) => `shard ${chunks[i].chunk} (${chunks[i].file})`,
  }, opts);
  let merged = readPart(runDir, 0, nq);
  for (let i = 1; i < chunks.length; i++) merged = mergeTopK(merged, readPart(runDir, i, nq), opts.k);
  return v.finish(queries, merged, opts);
}

/** A {@link VocabSearcher} that fans every search out over the queue: for topCaptions and runFalcon's captioning stage. */
export function queueSearcher(q: QueueOptions): VocabSearcher {
  return (v, queries, o) => distributedSearch(v, queries, { ...q, ...o, signal: o.signal ?? q.signal });
}

/** FALCON's caption retrieval ({@link topCaptions}: per-shard softmax top-k) spread over the queue's workers. */
export function distributedTopCaptions(images: Float32Array, n: number, vocab: Vocabulary, opts: CaptionOptions & QueueOptions): Promise<ImageCaptions[]> {
  return topCaptions(images, n, vocab, { ...opts, search: queueSearcher(opts) });
}
