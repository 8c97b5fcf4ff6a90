// Sharded embed: the sorted image list of a folder cut into parts of whole
// batches (so every model call sees the images the local run's would), each
// embedded by embedImages on a worker, then joined in order with the labels
// computed as locally. Equal to the local embed bit for bit where the model
// is deterministic for a batch (same onnxruntime build and thread count).
import { randomUUID } from 'node:crypto';
import { renameSync, statSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { requireFileTarget } from '../io/atomic.js';
import { writeNpy } from '../io/npy.js';
import { embedImages, imageFiles, imageLabels, type EmbedImagesOptions, type EmbedImagesResult } from '../encoders/embed-images.js';
import type { SkippedImage } from '../images/preprocess.js';
import { fileError } from '../errors.js';
import { fanOut, type QueueOptions } from './coordinator.js';
import type { JobKind, PartContext } from './jobs.js';
import { localStamp } from './stamp.js';
import { concatNpy, hashArray, partPath, runDirFor } from './store.js';

/** The options every part embeds with (JSON: no signal, callbacks or outputs). */
type PartOptions = Pick<EmbedImagesOptions, 'model' | 'standin' | 'images' | 'spec' | 'encoder' | 'batchSize' | 'concurrency'>;

interface EmbedPayload {
  options: PartOptions;
  files: string[];
}

interface EmbedSummary {
  rows: number;
  dim: number;
  skipped: SkippedImage[];
  [k: string]: unknown;
}

const KIND = 'embed';

async function embedPart(p: EmbedPayload, ctx: PartContext): Promise<EmbedSummary> {
  // Each try writes its own file, renamed into place when whole: two tries of one part never share a file.
  const tmp = ctx.file(`.try-${process.pid}-${randomUUID().slice(0, 8)}.npy`);
  const r = await embedImages({ ...p.options, files: p.files, out: tmp, restart: true, signal: ctx.signal });
  renameSync(tmp, ctx.file('.npy'));
  return { rows: r.rows, dim: r.dim, skipped: r.skipped };
}

/** The embed job kind. */
export const embedJob: JobKind<EmbedPayload> = { kind: KIND, handle: embedPart };

/** Options of {@link distributedEmbed}: embedImages' and the queue's. */
export interface DistributedEmbedOptions extends EmbedImagesOptions, QueueOptions {
  /** Images per job (default 8 batches), rounded up to whole batches. */
  partImages?: number;
}

/**
 * {@link embedImages} spread over the queue's workers: the sorted image list
 * in parts of whole batches, embedded on the workers into the run directory,
 * joined into `out` (and `labelsOut`) as the local embed writes them. A
 * rerun schedules only the parts not yet done; `resumedAt` counts the image
 * files of the parts found done.
 */
export async function distributedEmbed(o: DistributedEmbedOptions): Promise<EmbedImagesResult> {
  requireFileTarget(o.out, '--out embeddings');
  if (o.labelsOut) requireFileTarget(o.labelsOut, '--labels-out labels');
  const root = resolve(o.images), work = resolve(o.workDir) + sep, input = (f: string) => !f.startsWith(work);
  // A work directory inside the folder is not input.
  const listed = imageFiles({ ...o, images: root }), all = listed.all.filter(input), files = listed.files.filter(input);
  const labels = o.labelsOut ? imageLabels({ ...o, images: root }, files) : undefined;
  const batch = o.batchSize ?? 32, per = Math.ceil((o.partImages ?? 8 * batch) / batch) * batch;
  const options: PartOptions = {
    model: o.standin ? o.model : resolve(o.model), standin: o.standin, images: root, spec: o.spec, encoder: o.encoder, batchSize: o.batchSize,
    concurrency: o.concurrency,
  };
  const model = o.standin ? null : statSync(options.model);
  const runDir = runDirFor(o.workDir, KIND, {
    options, model: model && [model.size, model.mtimeMs], files: hashArray(Buffer.from(files.join('\0'))), per, stamp: localStamp(),
  });
  const payloads = Array.from({ length: Math.ceil(files.length / per) }, (_, i) => ({ options, files: files.slice(i * per, (i + 1) * per) }));
  const t0 = Date.now();
  const done = await fanOut({ kind: KIND, runDir, payloads, label: (i) => `images ${i * per}..${i * per + payloads[i].files.length - 1} (from ${payloads[i].files[0]})` }, o);
  const parts = done.map((d) => d.summary as EmbedSummary);
  const dim = parts.find((s) => s.rows > 0)?.dim;
  if (dim === undefined) throw fileError(o.images, `none of the ${files.length} image files could be decoded`);
  const rows = concatNpy(o.out, parts.map((_, i) => partPath(runDir, KIND, i, '.npy')), o.encoder?.dtype ?? 'float32', dim);
  const skipped = parts.flatMap((s) => s.skipped);
  if (labels) {
    const gone = new Set(skipped.map((s) => s.path));
    writeNpy(o.labelsOut!, BigInt64Array.from(files.flatMap((f, i) => (gone.has(f) ? [] : [BigInt(labels[i])]))), [rows]);
  }
  // Paths as the caller named the folder, as the local embed reports them.
  const named = (s: SkippedImage) => ({ ...s, path: join(o.images, relative(root, s.path)) });
  const resumedAt = done.reduce((a, d, i) => a + (d.finishedAt < t0 ? payloads[i].files.length : 0), 0);
  return { rows, dim, files: all.length, skipped: [...listed.notImages.filter((s) => input(s.path)), ...skipped].map(named), resumedAt };
}
