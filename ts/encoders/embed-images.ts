// Streams a folder of images through an image encoder into one .npy: sorted
// recursive listing, labels from class folders or ImageNet file names,
// prefetching the next batch while the model runs, and a checkpoint after every
// batch so an interrupted run resumes where it stopped.
import { closeSync, existsSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readdirSync, rmSync, statSync, writeSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { basename, dirname, extname, join, relative, resolve, sep } from 'node:path';
import { throttled, throwIfAborted, type ProgressOptions } from '../abort.js';
import { commitTemp, requireFileTarget, tempPath, writeFileAtomic } from '../io/atomic.js';
import { npyHeader, writeNpy } from '../io/npy.js';
import { preprocessBatch, type ImageBatch, type PreprocessSpec, type SkippedImage } from '../images/preprocess.js';
import { floatsToHalves } from '../engine/fp16.js';
import { ConceptLensError, fileError } from '../errors.js';
import { fingerprint } from '../io/stages.js';
import { readJson, readLines } from '../io/text.js';
import { ImageEncoder, type EncoderOptions, type Embeddings } from './onnx.js';
import { StandinImageTower } from './standin.js';


/** Extensions sharp decodes; other files are listed as skipped without a decode attempt. */
export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif', '.heic', '.heif'];

export const isImageName = (p: string) => IMAGE_EXTENSIONS.includes(extname(p).toLowerCase());

/** Every non-hidden file under `root`, sorted by path (as Python's sorted() on ASCII names). */
export function listFiles(root: string, exclude: readonly string[] = []): string[] {
  const skip = new Set(exclude.map((p) => resolve(p)));
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
      if (e.name.startsWith('.')) return [];
      const p = join(dir, e.name);
      const st = e.isSymbolicLink() ? statSync(p, { throwIfNoEntry: false }) : e; // follow links (dataset folders often use them)
      if (st?.isDirectory()) return walk(p);
      return st?.isFile() && !skip.has(resolve(p)) ? [p] : [];
    });
  if (!existsSync(root) || !statSync(root).isDirectory()) throw fileError(root, 'not a directory (--images expects a folder of images)');
  return walk(root).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Where image labels come from: an ImageNet wnid at the start of the file name ('wnid'), the top folder under
 * the root ('folder'), or 'auto': wnids when every file name has one, else folders.
 */
export type LabelSource = 'auto' | 'wnid' | 'folder';
const WNID = /^(n\d{8})(?:[_.,\s-]|$)/;

/** The class key of each file: its ImageNet wnid or its top folder under root. */
export function classKeys(root: string, files: readonly string[], source: LabelSource): string[] {
  const wnids = files.map((f) => WNID.exec(basename(f))?.[1]);
  const folders = files.map((f) => relative(root, f).split(sep).slice(0, -1)[0]);
  const useWnid = source === 'wnid' || (source === 'auto' && wnids.every((w) => w !== undefined));
  const keys = useWnid ? wnids : folders;
  const bad = keys.findIndex((k) => k === undefined);
  if (bad >= 0) {
    const why = useWnid ? 'its name does not start with an ImageNet wnid (nXXXXXXXX_)' : 'it is not inside a class folder';
    throw new ConceptLensError('ERR_ARG', `labels: cannot label ${files[bad]}: ${why}`);
  }
  return keys as string[];
}

/** Class list from a file: one class per line, a wnid line may carry a name after it. */
export function readClassList(path: string): string[] {
  return readLines(path).map((l) => l.trim()).filter((l) => l.length > 0)
    .map((l) => WNID.exec(l)?.[1] ?? l);
}

/** Label ids: index of each key in `classes`, else in the sorted set of keys present. */
export function labelIds(keys: readonly string[], classes?: readonly string[], classFile = 'the class list'): Int32Array {
  const list = classes ?? [...new Set(keys)].sort();
  const index = new Map(list.map((c, i) => [c, i]));
  return Int32Array.from(keys, (k) => {
    const i = index.get(k);
    if (i === undefined) throw new ConceptLensError('ERR_ARG', `labels: class '${k}' is not in ${classFile} (${list.length} classes)`);
    return i;
  });
}

/** Options of {@link embedImages}; progress counts files done of the image files listed. */
export interface EmbedImagesOptions extends ProgressOptions {
  /** ONNX image model; ignored with `standin`. */
  model: string;
  /** Embed with the stand-in CLIP-space tower (SqueezeNet mapped onto CLIP text embeddings; see standin.ts). */
  standin?: boolean;
  /** Folder of images, listed recursively and sorted by path (hidden files skipped). */
  images: string;
  /**
   * Output .npy, rows × width in `encoder.dtype` (default float32); `<out>.partial` and `<out>.ckpt.json` hold progress
   * until it is done.
   */
  out: string;
  /** Preprocessing of every image. */
  spec: PreprocessSpec;
  /** Options of the ONNX encoder (output, layer tap, pooling, normalisation, dtype, threads). */
  encoder?: EncoderOptions;
  /** Also write the label id of each row here, as an int64 .npy. */
  labelsOut?: string;
  /** Where labels come from (default 'auto'). */
  labelSource?: LabelSource;
  /**
   * Class list (one class per line, a wnid optionally followed by a name) fixing the label ids; default: the sorted
   * class keys present.
   */
  classesFile?: string;
  /** Images per batch and per checkpoint (default 32). */
  batchSize?: number;
  /** Images decoded at once (default 4). */
  concurrency?: number;
  /** Ignore (and replace) a checkpoint left by an earlier run. */
  restart?: boolean;
  /**
   * Embed these files (under `images`, in this order) instead of the folder's listing: one part of a sharded
   * embed, so a part none of whose files decode is not an error (it writes 0 rows).
   */
  files?: readonly string[];
}

/** What {@link embedImages} wrote. */
export interface EmbedImagesResult {
  /** Rows written: the images that decoded. */
  rows: number;
  /** Width of each row. */
  dim: number;
  /** Files listed under `images`, images or not. */
  files: number;
  /** Files that left no row: non-image files and images that could not be decoded. */
  skipped: SkippedImage[];
  /** Image files already done by an earlier run when this one resumed (0 for a fresh run). */
  resumedAt: number;
}

interface Checkpoint {
  key: string;
  filesDone: number;
  rows: number;
  dim: number;
  skipped: SkippedImage[];
  labels: number[];
}

const partialPath = (out: string) => `${out}.partial`;
const checkpointPath = (out: string) => `${out}.ckpt.json`;

/** Identifies a run: same model file, files, preprocessing and feature. */
function runKey(o: EmbedImagesOptions, files: string[]): string {
  const st = o.standin ? { size: 0, mtimeMs: 0 } : statSync(o.model);
  const { signal: _s, onProgress: _p, restart: _r, concurrency: _c, batchSize: _b, ...config } = o;
  return fingerprint({ config, model: [st.size, st.mtimeMs], files });
}

function loadCheckpoint(o: EmbedImagesOptions, key: string): Checkpoint | undefined {
  const path = checkpointPath(o.out);
  if (!existsSync(path) || o.restart) return undefined;
  const c = readJson<Checkpoint>(path);
  if (c.key !== key)
    throw fileError(path, 'checkpoint of a different run (model, images or options changed); rerun with --restart to start over');
  return c;
}

/** Appends rows to the partial file after cutting it back to what the checkpoint vouches for. */
function appendRows(path: string, validBytes: number, rows: Uint8Array): void {
  const fd = openSync(path, existsSync(path) ? 'r+' : 'w');
  try {
    ftruncateSync(fd, validBytes);
    writeSync(fd, rows, 0, rows.length, validBytes);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Header + partial rows -> temp file -> rename: the output appears whole or not at all. */
async function finishNpy(out: string, rows: number, dim: number, dtype: 'float32' | 'float16'): Promise<void> {
  const fixed = npyHeader([rows, dim], dtype);
  const tmp = tempPath(out);
  const dst = await open(tmp, 'w');
  try {
    await dst.write(fixed);
    const src = await open(partialPath(out), 'r');
    try {
      const buf = Buffer.alloc(1 << 22);
      for (let pos = 0; ; ) {
        const { bytesRead } = await src.read(buf, 0, buf.length, pos);
        if (bytesRead === 0) break;
        await dst.write(buf.subarray(0, bytesRead));
        pos += bytesRead;
      }
    } finally {
      await src.close();
    }
    await dst.sync();
  } finally {
    await dst.close();
  }
  commitTemp(tmp, out);
}

/** The files an embed of `images` takes (sorted; its own outputs left out): all, the images, and the others as skipped. */
export function imageFiles(o: Pick<EmbedImagesOptions, 'images' | 'out' | 'labelsOut'>): { all: string[]; files: string[]; notImages: SkippedImage[] } {
  const all = listFiles(o.images, [o.out, partialPath(o.out), checkpointPath(o.out), ...(o.labelsOut ? [o.labelsOut] : [])]);
  const files = all.filter(isImageName);
  const notImages = all.filter((f) => !isImageName(f)).map((path) => ({ path, reason: `not an image file (extension '${extname(path)}')` }));
  if (files.length === 0) throw fileError(o.images, `no image files (${IMAGE_EXTENSIONS.join(', ')}) under --images`);
  return { all, files, notImages };
}

/** The label id of each file, as `labelSource` and `classesFile` say. */
export function imageLabels(o: Pick<EmbedImagesOptions, 'images' | 'labelSource' | 'classesFile'>, files: readonly string[]): Int32Array {
  return labelIds(classKeys(o.images, files, o.labelSource ?? 'auto'), o.classesFile ? readClassList(o.classesFile) : undefined, o.classesFile);
}

/** Embeds every image under `images` (sorted, recursive) into `out`; resumable. */
export async function embedImages(o: EmbedImagesOptions): Promise<EmbedImagesResult> {
  requireFileTarget(o.out, '--out embeddings');
  if (o.labelsOut) requireFileTarget(o.labelsOut, '--labels-out labels');
  const { all, files, notImages } = o.files ? { all: [...o.files], files: [...o.files], notImages: [] } : imageFiles(o);
  const labels = o.labelsOut ? imageLabels(o, files) : undefined;
  const key = runKey(o, files);
  mkdirSync(dirname(resolve(o.out)), { recursive: true });
  const ckpt = loadCheckpoint(o, key) ?? { key, filesDone: 0, rows: 0, dim: 0, skipped: [], labels: [] };
  const resumedAt = ckpt.filesDone, progress = throttled(o.onProgress);
  const dtype = o.encoder?.dtype ?? 'float32';
  const bytesPer = dtype === 'float16' ? 2 : 4;
  const B = o.batchSize ?? 32;
  const encoder = o.standin ? await StandinImageTower.load({ threads: o.encoder?.threads }) : await ImageEncoder.load(o.model, o.encoder);
  const rows = (e: Embeddings) => (e.dtype === dtype ? e.data : floatsToHalves(e.data as Float32Array));
  try {
    const prep = (f0: number) => preprocessBatch(files.slice(f0, f0 + B), o.spec, { concurrency: o.concurrency, signal: o.signal });
    let next: Promise<ImageBatch> | undefined = ckpt.filesDone < files.length ? prep(ckpt.filesDone) : undefined;
    while (next) {
      const f0 = ckpt.filesDone;
      const batch: ImageBatch = await next;
      next = f0 + B < files.length ? prep(f0 + B) : undefined;
      next?.catch(() => {}); // an abort surfaces from the current batch; the prefetch is dropped
      throwIfAborted(o.signal);
      if (batch.paths.length > 0) {
        const emb = await encoder.encode(batch.data, batch.shape, { signal: o.signal });
        if (ckpt.dim && ckpt.dim !== emb.shape[1]) throw new ConceptLensError('ERR_SHAPE', `feature width changed from ${ckpt.dim} to ${emb.shape[1]}`);
        ckpt.dim = emb.shape[1];
        const data = rows(emb);
        appendRows(partialPath(o.out), ckpt.rows * ckpt.dim * bytesPer, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
        ckpt.rows += batch.paths.length;
        if (labels) ckpt.labels.push(...batch.indices.map((i) => labels[f0 + i]));
      }
      ckpt.skipped.push(...batch.skipped);
      ckpt.filesDone = Math.min(files.length, f0 + B);
      writeFileAtomic(checkpointPath(o.out), JSON.stringify(ckpt));
      progress(ckpt.filesDone, files.length);
    }
  } finally {
    await encoder.close();
  }
  if (ckpt.rows === 0 && !o.files) throw fileError(o.images, `none of the ${files.length} files could be decoded (first: ${ckpt.skipped[0]?.path}: ${ckpt.skipped[0]?.reason})`);
  await finishNpy(o.out, ckpt.rows, ckpt.dim, dtype);
  if (o.labelsOut) writeNpy(o.labelsOut, BigInt64Array.from(ckpt.labels, (l) => BigInt(l)), [ckpt.rows]);
  rmSync(partialPath(o.out), { force: true });
  await rm(checkpointPath(o.out), { force: true });
  return { rows: ckpt.rows, dim: ckpt.dim, files: all.length, skipped: [...notImages, ...ckpt.skipped], resumedAt };
}
