// The service behind the routes: resident resources and one batcher per
// queue (a vocabulary's searches, SpLiCE decompositions, image embeddings).
// Requests are checked before they queue, so a batch fails only when the
// engine does, never because of one bad request.
import type { ImageTower } from '../encoders/standin.js';
import { argError, ConceptLensError } from '../errors.js';
import { preprocessImage } from '../images/preprocess.js';
import { toFloat32 } from '../matrix.js';
import type { ConceptWeight, SpliceModel } from '../methods/splice.js';
import type { Metric } from '../retrieval/exact.js';
import { Batcher, type BatchRunner } from './batcher.js';
import { batchingOf, imageBatchingOf, limitsOf, type BatchingOptions, type LimitsOptions, type ServiceOptions } from './config.js';
import { HttpError } from './errors.js';
import type { ServiceMetrics } from './metrics.js';
import { loadSplice, loadVocabularies, openTower, type Hits, type ResidentVocabulary } from './resources.js';

/** A search: nq × dim queries against one vocabulary. */
export interface SearchJob {
  queries: Float32Array;
  k: number;
  metric: Metric;
  texts: boolean;
}

/** A SpLiCE decomposition of n × d embeddings at λ = l1, keeping the `top` heaviest concepts per row. */
export interface DecomposeJob {
  embeddings: Float32Array;
  l1: number;
  top: number;
}

/** One row's SpLiCE decomposition: its concepts, heaviest first, the non-zero count and the recomposition's cosine. */
export interface RowDecomposition {
  concepts: ConceptWeight[];
  l0: number;
  cosine: number;
}

/** A vocabulary and the queue of its searches (the answer of a job: one Hits per query row). */
interface VocabQueue {
  vocab: ResidentVocabulary;
  batcher: Batcher<SearchJob, Hits[]>;
}

/** The SpLiCE model and the queue of its decompositions. */
interface SpliceQueue {
  model: SpliceModel;
  batcher: Batcher<DecomposeJob, RowDecomposition[]>;
}

/** The image tower (closed with the service when it opened it) and the queue of its images. */
interface ImageQueue {
  tower: ImageTower;
  owned: boolean;
  batcher: Batcher<Buffer, Float32Array>;
}

/** Items grouped by `key`; each group answered by one call; answers back in item order. */
async function grouped<I, R>(items: readonly I[], key: (item: I) => unknown, call: (group: I[]) => Promise<R[]>): Promise<R[]> {
  const out = new Array<R>(items.length), groups = new Map<unknown, number[]>();
  items.forEach((item, i) => {
    const k = key(item), g = groups.get(k);
    if (g) g.push(i);
    else groups.set(k, [i]);
  });
  for (const members of groups.values()) {
    const answers = await call(members.map((i) => items[i]));
    members.forEach((i, j) => (out[i] = answers[j]));
  }
  return out;
}

/** Row blocks stacked into one matrix. */
function concatRows(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A vocabulary's batches: one scan per metric in the batch, at the largest k asked (a prefix is each smaller top k). */
function searchRunner(vocab: ResidentVocabulary) {
  return (jobs: readonly SearchJob[]) => grouped(jobs, (j) => j.metric, async (group) => {
    const k = Math.max(...group.map((j) => j.k));
    const r = await vocab.search(concatRows(group.map((j) => j.queries)), k, group[0].metric);
    let q = 0;
    return group.map((j) => Array.from({ length: j.queries.length / vocab.dim }, () => vocab.hits(r, q++, j.k, j.texts)));
  });
}

/** SpLiCE batches: one solve per λ in the batch. */
function spliceRunner(model: SpliceModel) {
  return (jobs: readonly DecomposeJob[]) => grouped(jobs, (j) => j.l1, async (group) => {
    const enc = await model.encode(concatRows(group.map((j) => j.embeddings)), { l1: group[0].l1 });
    let i = 0;
    return group.map((j) => Array.from({ length: j.embeddings.length / model.d }, () => {
      const row = i++;
      return { concepts: model.topConcepts(enc.weights.subarray(row * model.c, (row + 1) * model.c), j.top), l0: enc.l0[row], cosine: enc.cosine[row] };
    }));
  });
}

function undecodable(e: Error): ConceptLensError {
  return new ConceptLensError('ERR_FILE', `image: expected an image file (JPEG, PNG, WebP, ...), got bytes that do not decode (${e.message})`);
}

/** Image batches: each image decoded on its own (a bad one fails alone), then one model call for the rest. */
function imageRunner(tower: ImageTower) {
  const spec = tower.preprocess;
  return async (images: readonly Buffer[]): Promise<(Float32Array | Error)[]> => {
    const pixels = await Promise.all(images.map((b) => preprocessImage(b, spec).catch((e: Error) => undecodable(e))));
    const ok = pixels.flatMap((p, i) => (p instanceof Float32Array ? [i] : []));
    if (ok.length === 0) return pixels as Error[];
    const emb = await tower.encode(concatRows(ok.map((i) => pixels[i] as Float32Array)), [ok.length, 3, spec.crop, spec.crop]);
    const rows = toFloat32(emb.data), out: (Float32Array | Error)[] = [...(pixels as Error[])];
    ok.forEach((i, j) => (out[i] = rows.slice(j * tower.dim, (j + 1) * tower.dim)));
    return out;
  };
}

/** The resources and queues of one service; the plugin's routes call it. */
export class Service {
  private draining = false;

  private constructor(readonly limits: LimitsOptions, readonly vocabularies: ReadonlyMap<string, VocabQueue>,
    readonly splice: SpliceQueue | undefined, readonly images: ImageQueue | undefined) {}

  /** Loads everything the options name (vocabularies resident, models open) and sets up the queues. */
  static async create(o: ServiceOptions, metrics: ServiceMetrics): Promise<Service> {
    const batching = batchingOf(o), limits = limitsOf(o, batching);
    if (!o.vocabularies?.length && !o.splice && !o.model)
      throw argError('options', 'at least one vocabulary, a SpLiCE model or an image model to serve', 'none of them');
    const queue = <I, R>(name: string, run: BatchRunner<I, R>, policy: BatchingOptions) =>
      new Batcher<I, R>(name, run, policy, metrics.queue(name));
    const vocabs = new Map([...(await loadVocabularies(o.vocabularies ?? []))].map(([name, vocab]) =>
      [name, { vocab, batcher: queue(`search:${name}`, searchRunner(vocab), batching) }]));
    const model = o.splice && loadSplice(o.splice);
    const splice = model && { model, batcher: queue('splice', spliceRunner(model), batching) };
    const opened = o.model && (await openTower(o.model));
    if (opened && model && opened.tower.dim !== model.d) {
      if (opened.owned) await opened.tower.close();
      throw new ConceptLensError('ERR_SHAPE', `model: embeddings of width ${opened.tower.dim} cannot be decomposed by SpLiCE concepts of width ${model.d}`);
    }
    const images = opened && { ...opened, batcher: queue('image', imageRunner(opened.tower), { ...imageBatchingOf(o.model!), maxDelayMs: batching.maxDelayMs }) };
    return new Service(limits, vocabs, splice, images);
  }

  /** A vocabulary by name (the first when no name is given); ERR_ARG naming `vocab` otherwise. */
  vocabulary(name: string | undefined): VocabQueue {
    const v = name === undefined ? this.vocabularies.values().next().value : this.vocabularies.get(name);
    if (v) return v;
    if (this.vocabularies.size === 0) throw notConfigured('search needs a vocabulary (--vocab)');
    throw argError('vocab', `one of ${[...this.vocabularies.keys()].map((n) => `'${n}'`).join(', ')}`, name);
  }

  /** The SpLiCE queue, or 501 when none was configured. */
  spliceQueue(): SpliceQueue {
    if (!this.splice) throw notConfigured('SpLiCE needs --concepts, --concept-names and --image-mean');
    return this.splice;
  }

  /** The image queue, or 501 when no model was configured. */
  imageQueue(): ImageQueue {
    if (!this.images) throw notConfigured('image routes need a model (--model image_encoder.onnx)');
    return this.images;
  }

  /** Searches one vocabulary; the answer per query row. */
  search(v: VocabQueue, job: SearchJob, signal?: AbortSignal): Promise<Hits[]> {
    v.vocab.check(job.k, job.metric);
    return v.batcher.submit(job, job.queries.length / v.vocab.dim, signal);
  }

  /** Decomposes embeddings with SpLiCE; the answer per row. */
  decompose(job: DecomposeJob, signal?: AbortSignal): Promise<RowDecomposition[]> {
    const s = this.spliceQueue();
    return s.batcher.submit(job, job.embeddings.length / s.model.d, signal);
  }

  /** Embeds one encoded image (JPEG, PNG, ...). */
  embed(image: Buffer, signal?: AbortSignal): Promise<Float32Array> {
    return this.imageQueue().batcher.submit(image, 1, signal);
  }

  /** Ready for work: not draining, and no queue at its bound. */
  get ready(): boolean {
    return !this.draining && this.queues().every((q) => !q.full);
  }

  /** True once shutdown began. */
  get isDraining(): boolean {
    return this.draining;
  }

  /** Shutdown, first step: every queue sends its batches at once; requests already accepted are still answered. */
  drain(): void {
    this.draining = true;
    for (const q of this.queues()) q.flush();
  }

  /** Drains, waits for every batch to finish, then closes the image model the service opened. */
  async close(): Promise<void> {
    this.drain();
    await Promise.all(this.queues().map((q) => q.idle()));
    if (this.images?.owned) await this.images.tower.close();
  }

  private queues(): Pick<Batcher<unknown, unknown>, 'full' | 'flush' | 'idle'>[] {
    return [...[...this.vocabularies.values()].map((v) => v.batcher), this.splice?.batcher, this.images?.batcher].filter((b) => b !== undefined);
  }
}

function notConfigured(what: string): HttpError {
  return new HttpError(501, 'ERR_NOT_CONFIGURED', `not configured: ${what}`);
}
