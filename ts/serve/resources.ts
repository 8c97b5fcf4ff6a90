// What the service holds from start-up on: each vocabulary as one resident
// matrix (transforms applied, fp32 or fp16) with its texts and its prepared
// screening copy (rows rounded, frame and bounds, inverse row norms for
// cosine) computed once; the SpLiCE model; the image tower. Requests never
// read a file nor round a row.
import { openImageTower, type ImageTower } from '../encoders/standin.js';
import { floatsToHalves, halvesToFloats } from '../engine/fp16.js';
import { argError } from '../errors.js';
import { SpliceModel } from '../methods/splice.js';
import { ExactTopK, PreparedRows, type Metric, type SearchResult } from '../retrieval/exact.js';
import type { Texts } from '../retrieval/texts.js';
import { Vocabulary } from '../retrieval/vocabulary.js';
import { checkVocabularyConfig, type ImageModelConfig, type SpliceConfig, type VocabularyConfig } from './config.js';

/** The best rows of one query: original ids, scores, and texts when asked for and present. */
export interface Hits {
  ids: number[];
  scores: number[];
  texts?: string[];
}

/** A vocabulary held in memory and searched exactly with one native call per batch. */
export class ResidentVocabulary {
  private constructor(readonly name: string, readonly dim: number, readonly rows: number,
    private readonly data: Float32Array | Uint16Array, private readonly prepared: PreparedRows, private readonly zeroRow: number,
    private readonly texts: readonly string[] | undefined, private readonly ids: Float64Array | undefined) {}

  /** Opens the source (a path, or rows in memory), applies its transforms and keeps the result resident. */
  static async load(c: VocabularyConfig): Promise<ResidentVocabulary> {
    checkVocabularyConfig(c);
    const o = { names: c.names, normalize: c.normalize, center: c.center, dedupe: c.dedupe };
    const v = c.path !== undefined ? await Vocabulary.open(c.path, { ...o, verify: c.verify })
      : await Vocabulary.fromArray(required(c.vectors, `vocabularies '${c.name}'.vectors`), required(c.dim, `vocabularies '${c.name}'.dim`), { ...o, name: c.name });
    // Rows given in memory and used as they are need no copy.
    const asGiven = c.vectors instanceof Float32Array && !c.normalize && !c.center && !c.dedupe;
    const f32 = asGiven ? (c.vectors as Float32Array) : await v.toFloat32();
    const data = c.storage === 'fp16' ? floatsToHalves(f32) : f32;
    const norms = inverseNorms(c.storage === 'fp16' ? halvesToFloats(data as Uint16Array) : f32, v.dim);
    const texts = v.texts && (await allTexts(v.texts));
    // The norms as this service has always computed them, so results match the unprepared scan's.
    const prepared = await PreparedRows.prepare(data, v.dim, { invNorms: norms.inv });
    return new ResidentVocabulary(c.name, v.dim, v.rows, data, prepared, norms.zeroRow, texts, v.ids);
  }

  /** True when texts come with the hits. */
  get hasTexts(): boolean {
    return this.texts !== undefined;
  }

  /** Throws, naming the field, when a search for k rows by `metric` cannot run on this vocabulary. */
  check(k: number, metric: Metric): void {
    if (k > this.rows) throw argError('k', `at most the ${this.rows} rows of vocabulary '${this.name}'`, k);
    if (metric === 'cosine' && this.zeroRow >= 0)
      throw argError('metric', `'ip': row ${this.zeroRow} of vocabulary '${this.name}' has zero norm, so cosine is undefined`, metric);
  }

  /** Exact top-k of nq × dim queries: one scan of the prepared copy, re-scoring from the resident rows. */
  async search(queries: Float32Array, k: number, metric: Metric): Promise<SearchResult> {
    const acc = new ExactTopK(queries, queries.length / this.dim, this.dim, { k, metric });
    await acc.addPrepared(this.prepared, this.data, { idOffset: 0 });
    return acc.result();
  }

  /** Query `q`'s first k hits of a result (whose rows are best first, so a prefix is the top k). */
  hits(r: SearchResult, q: number, k: number, texts: boolean): Hits {
    const rows = Array.from(r.ids.subarray(q * r.k, q * r.k + k), Number);
    return {
      ids: this.ids ? rows.map((i) => this.ids![i]) : rows,
      scores: Array.from(r.scores.subarray(q * r.k, q * r.k + k)),
      texts: texts && this.texts ? rows.map((i) => this.texts![i]) : undefined,
    };
  }
}

function required<T>(v: T | undefined, name: string): T {
  if (v === undefined) throw argError(name, 'a value (or a path to read the vocabulary from)', v);
  return v;
}

/** 1/‖row‖ per row (in double, as the engine computes them), and the first zero row (-1 if none). */
function inverseNorms(x: Float32Array, d: number): { inv: Float32Array; zeroRow: number } {
  const n = x.length / d, inv = new Float32Array(n);
  let zeroRow = -1;
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let t = i * d; t < (i + 1) * d; t++) s += x[t] * x[t];
    if (s === 0 && zeroRow < 0) zeroRow = i;
    inv[i] = s > 0 ? 1 / Math.sqrt(s) : 0;
  }
  return { inv, zeroRow };
}

async function allTexts(t: Texts): Promise<string[]> {
  const out: string[] = [];
  for await (const part of t.parts()) for (const s of part) out.push(s);
  return out;
}

/** Loads vocabularies in order; names must differ. */
export async function loadVocabularies(list: readonly VocabularyConfig[]): Promise<Map<string, ResidentVocabulary>> {
  const out = new Map<string, ResidentVocabulary>();
  for (const [i, c] of list.entries()) {
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(c.name ?? '')) throw argError(`vocabularies[${i}].name`, "1 to 64 letters, digits, '.', '_' or '-'", c.name);
    if (out.has(c.name)) throw argError(`vocabularies[${i}].name`, 'a name no other vocabulary has', c.name);
    out.set(c.name, await ResidentVocabulary.load(c));
  }
  return out;
}

/** The SpLiCE model of a configuration. */
export function loadSplice(c: SpliceConfig): SpliceModel {
  if ('model' in c) return c.model;
  return SpliceModel.load({ vocabulary: c.conceptNames, conceptEmbeddings: c.concepts, imageMean: c.imageMean }, { l1: c.l1 ?? 0.25 });
}

/** The image tower of a configuration, and whether the service owns it (and closes it). */
export async function openTower(c: ImageModelConfig): Promise<{ tower: ImageTower; owned: boolean }> {
  if ('tower' in c) return { tower: c.tower, owned: false };
  return { tower: await openImageTower({ model: c.path, output: c.output, threads: c.threads }), owned: true };
}
