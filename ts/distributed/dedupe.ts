// Sharded caption de-duplication (first occurrence wins, as the local
// `dedupe`), in two fan-outs. Scan: each LAION shard's job drops the repeats
// within its shard and writes its other captions into hash buckets. Bucket:
// each bucket's job reads that bucket of every shard in shard order, so the
// first shard holding a caption keeps it and later ones drop it. No machine
// holds more than one shard's captions, or one bucket's. The kept rows then
// shape the vocabulary exactly as `dedupe` would (Vocabulary.open keepRows).
import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { ProgressOptions } from '../abort.js';
import { ConceptLensError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { readNpy, writeNpy } from '../io/npy.js';
import { Vocabulary, type OpenOptions } from '../retrieval/vocabulary.js';
import { MANIFEST } from '../retrieval/vocab-store.js';
import { fanOut, type QueueOptions } from './coordinator.js';
import type { JobKind, PartContext } from './jobs.js';
import { reopen, vocabRef, type VocabRef } from './search.js';
import { localStamp } from './stamp.js';
import { partPath, readDone, runDirFor } from './store.js';

const SCAN = 'dedupe-scan', BUCKET = 'dedupe-bucket';

interface ScanPayload {
  vocab: VocabRef;
  /** The shard's first row and rows (original ids). */
  first: number;
  rows: number;
  buckets: number;
}

interface ScanSummary {
  /** Byte offsets of each bucket's JSON in the part's .buckets.json (buckets + 1 values). */
  offsets: number[];
  /** Rows dropped as repeats within the shard. */
  within: number;
  [k: string]: unknown;
}

interface BucketPayload {
  shards: number;
  bucket: number;
}

/** A caption's bucket: 32-bit FNV-1a of its UTF-16 code units. */
function bucketOf(text: string, buckets: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return (h >>> 0) % buckets;
}

async function scanPart(p: ScanPayload, ctx: PartContext): Promise<ScanSummary> {
  const v = await reopen(p.vocab, ctx.signal);
  const texts = await v.texts!.lookup(Array.from({ length: p.rows }, (_, j) => p.first + j));
  const seen = new Set<string>(), within: number[] = [], buckets: [number, string][][] = Array.from({ length: p.buckets }, () => []);
  texts.forEach((t, j) => {
    if (seen.has(t)) within.push(p.first + j);
    else seen.add(t), buckets[bucketOf(t, p.buckets)].push([p.first + j, t]);
  });
  const parts = buckets.map((b) => Buffer.from(JSON.stringify(b))), offsets = [0];
  for (const b of parts) offsets.push(offsets[offsets.length - 1] + b.length);
  writeNpy(ctx.file('.within.npy'), Float64Array.from(within), [within.length]);
  writeFileAtomic(ctx.file('.buckets.json'), Buffer.concat(parts));
  return { offsets, within: within.length };
}

function readRange(path: string, from: number, to: number): string {
  const buf = Buffer.alloc(to - from), fd = openSync(path, 'r');
  try {
    for (let done = 0; done < buf.length;) done += readSync(fd, buf, done, buf.length - done, from + done) || fail(path);
  } finally {
    closeSync(fd);
  }
  return buf.toString('utf8');
}

function fail(path: string): never {
  throw new ConceptLensError('ERR_FILE', `${path}: shorter than its done marker records`);
}

async function bucketPart(p: BucketPayload, ctx: PartContext): Promise<{ dropped: number }> {
  const seen = new Set<string>(), dropped: number[] = [];
  for (let s = 0; s < p.shards; s++) {
    const scanned = readDone<ScanSummary>(ctx.runDir, SCAN, s);
    if (!scanned) throw new ConceptLensError('ERR_FILE', `${ctx.runDir}: shard ${s} has no scan result; the bucket stage runs after every shard's scan`);
    const { offsets } = scanned.summary;
    const json = readRange(partPath(ctx.runDir, SCAN, s, '.buckets.json'), offsets[p.bucket], offsets[p.bucket + 1]);
    for (const [row, t] of JSON.parse(json) as [number, string][]) {
      if (seen.has(t)) dropped.push(row);
      else seen.add(t);
    }
  }
  writeNpy(ctx.file('.dropped.npy'), Float64Array.from(dropped), [dropped.length]);
  return { dropped: dropped.length };
}

/** The job kind of the first fan-out: one LAION shard's repeats and buckets. */
export const dedupeScanJob: JobKind<ScanPayload> = { kind: SCAN, handle: scanPart };
/** The job kind of the second fan-out: one caption bucket across all shards. */
export const dedupeBucketJob: JobKind<BucketPayload> = { kind: BUCKET, handle: bucketPart };

/** Options of {@link distributedDedupe}. */
export interface DistributedDedupeOptions extends QueueOptions {
  /** Hash buckets of the second fan-out (default one per 8 shards, at most 64): each bucket job holds 1/buckets of the captions. */
  buckets?: number;
}

/**
 * The rows a caption de-duplication keeps (first occurrence of each caption
 * wins, as `Vocabulary.open(dir, { dedupe: true })`), computed over the
 * queue's workers: original row ids, ascending. `dir` is a LAION shard directory with captions.
 */
export async function distributedDedupe(dir: string, o: DistributedDedupeOptions): Promise<Float64Array> {
  const v = await Vocabulary.open(dir, { signal: o.signal }), ref = vocabRef(v);
  if (existsSync(join(ref.path, MANIFEST)) || !v.texts)
    throw new ConceptLensError('ERR_ARG', `${dir}: a sharded dedupe runs over a LAION shard directory with captions`);
  const buckets = o.buckets ?? Math.min(64, Math.ceil(v.shards.length / 8));
  const runDir = runDirFor(o.workDir, 'dedupe', { vocab: ref, buckets, stamp: localStamp() });
  let first = 0;
  const scans = v.shards.map((s) => ({ vocab: ref, first: (first += s.rows) - s.rows, rows: s.rows, buckets }));
  await fanOut({ kind: SCAN, runDir, payloads: scans, label: (i) => `shard ${i} (${basename(v.shards[i].header.path)})` }, o);
  const merges = Array.from({ length: buckets }, (_, bucket) => ({ shards: scans.length, bucket }));
  await fanOut({ kind: BUCKET, runDir, payloads: merges, label: (b) => `caption bucket ${b} of ${buckets}` }, o);
  const drop = new Uint8Array(v.rows);
  const mark = (path: string) => (readNpy(path).data as Float64Array).forEach((row) => (drop[row] = 1));
  scans.forEach((_, s) => mark(partPath(runDir, SCAN, s, '.within.npy')));
  merges.forEach((_, b) => mark(partPath(runDir, BUCKET, b, '.dropped.npy')));
  const kept = new Float64Array(drop.length - drop.reduce((a, d) => a + d, 0));
  for (let row = 0, k = 0; row < drop.length; row++) if (!drop[row]) kept[k++] = row;
  return kept;
}

/**
 * `vocab build --dedupe` with the de-duplication spread over the queue's
 * workers: the store written to `out` is the local build's, file for file.
 * (The store itself is written here, one pass over the kept rows.)
 */
export async function distributedVocabBuild(from: string, out: string,
  o: DistributedDedupeOptions & Pick<OpenOptions, 'normalize' | 'center'> & ProgressOptions): Promise<Vocabulary> {
  const keepRows = await distributedDedupe(from, o);
  const v = await Vocabulary.open(from, { normalize: o.normalize, center: o.center, keepRows, signal: o.signal, onProgress: o.onProgress });
  await v.save(out, { signal: o.signal, onProgress: o.onProgress });
  return v;
}
