// The service's options: what it serves (vocabularies by name, a SpLiCE
// model, an image model), how it batches and what it accepts; and the JSON
// file `conceptlens serve --config` reads. Every path is read once, at
// start-up; nothing a request carries names a file.
import { dirname, resolve } from 'node:path';
import type { ImageTower } from '../encoders/standin.js';
import { argError, ConceptLensError, requireKnownKeys } from '../errors.js';
import { readJson } from '../io/text.js';
import type { SpliceModel } from '../methods/splice.js';
import type { OpenOptions } from '../retrieval/vocabulary.js';
import { validate } from './schemas.js';

/** One vocabulary the service searches, held in memory from start-up on. */
export interface VocabularyConfig extends Pick<OpenOptions, 'names' | 'normalize' | 'center' | 'dedupe' | 'verify'> {
  /** The name requests select it by (`vocab`); the first vocabulary is the default. Letters, digits, '.', '_', '-'. */
  name: string;
  /** A .npy, a LAION shard directory or a store (`vocab build`), read once at start-up. */
  path?: string;
  /** Or the rows themselves (rows × dim, fp32 or fp16 bits) instead of `path`; read in place, so leave them unchanged. */
  vectors?: Float32Array | Uint16Array;
  /** Width of `vectors`. */
  dim?: number;
  /** Resident precision: 'fp32' (default), or 'fp16' (half the memory; scores are those of the fp16-rounded rows). */
  storage?: 'fp32' | 'fp16';
}

/** SpLiCE from files: concept embeddings, their names (one per line) and the image mean it centres on. */
export interface SpliceFiles {
  /** Concept embeddings (.npy, concepts × d). */
  concepts: string;
  /** Concept names, one per line, aligned with `concepts`. */
  conceptNames: string;
  /** The image modality mean μ (.npy, d values). */
  imageMean: string;
  /** λ when a request gives none (default 0.25). */
  l1?: number;
}

/** The SpLiCE model behind `/v1/splice/decompose` and `/v1/explain/image`: files, or a model already built. */
export type SpliceConfig = SpliceFiles | { model: SpliceModel };

/** How images are batched: at most `maxBatch` images per model call, at most `maxQueue` waiting (default 16 and 64). */
export interface ImageBatching {
  maxBatch?: number;
  maxQueue?: number;
}

/** The image model behind `/v1/embed/image` and `/v1/explain/image`: a CLIP image tower as ONNX, or one already open. */
export type ImageModelConfig = ({ path: string; output?: string; threads?: number } | { tower: ImageTower }) & ImageBatching;

/** The dynamic batcher's policy, per queue (one queue per vocabulary, one for SpLiCE). */
export interface BatchingOptions {
  /** Rows (queries, embeddings) per native call; 1 turns batching off (default 64). */
  maxBatch: number;
  /** How long the oldest waiting request may wait for others before its batch runs (default 2 ms). */
  maxDelayMs: number;
  /** Rows that may wait per queue; past it requests get 503 with Retry-After (default 1024). */
  maxQueue: number;
}

/** What one request may carry. */
export interface LimitsOptions {
  /** Bytes of a JSON or float32 body (default 8 MiB; 413 past it). */
  bodyBytes: number;
  /** Bytes of an image body (default 16 MiB). */
  imageBytes: number;
  /** Rows (queries, embeddings) per request (default 256). */
  maxRows: number;
  /** Largest k a search may ask for (default 1000). */
  maxK: number;
}

/** What the service serves and how: the options of the Fastify plugin and of `createServer`. */
export interface ServiceOptions {
  /** Vocabularies served by name; the first is the default. */
  vocabularies?: VocabularyConfig[];
  /** SpLiCE decompositions. */
  splice?: SpliceConfig;
  /** An image model (image bytes in, embeddings out). */
  model?: ImageModelConfig;
  /** Dynamic batching (see {@link BatchingOptions}). */
  batching?: Partial<BatchingOptions>;
  /** Request limits (see {@link LimitsOptions}). */
  limits?: Partial<LimitsOptions>;
  /** When set, every route but `/health` needs `Authorization: Bearer <token>`. */
  token?: string;
}

/** {@link ServiceOptions} plus where to listen: the options of `createServer` and of the configuration file. */
export interface ServerOptions extends ServiceOptions {
  /** Interface to bind (default 127.0.0.1: loopback only). */
  host?: string;
  /** Port (default 8080; 0 picks a free one). */
  port?: number;
  /** Fastify's request log (pino) on stderr (default off). */
  logger?: boolean;
  /**
   * Niceness of the engine's compute threads, process-wide (default 10; 0 leaves them at the process's priority):
   * the event loop then preempts a saturated engine, so parsing and `/health` stay prompt. See `setComputeNice`.
   */
  computeNice?: number;
}

const name = { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' };
const text = { type: 'string', minLength: 1 };
const flag = { type: 'boolean' };
const count = (dflt: number, max = 2 ** 31 - 1) => ({ type: 'integer', minimum: 1, maximum: max, default: dflt });

const BATCHING_SCHEMA = {
  type: 'object', additionalProperties: false,
  properties: { maxBatch: count(64, 65536), maxDelayMs: { type: 'number', minimum: 0, maximum: 60000, default: 2 }, maxQueue: count(1024) },
};
const LIMITS_SCHEMA = {
  type: 'object', additionalProperties: false,
  properties: { bodyBytes: count(8 * 2 ** 20), imageBytes: count(16 * 2 ** 20), maxRows: count(256), maxK: count(1000) },
};
const IMAGE_BATCHING = { maxBatch: count(16, 4096), maxQueue: count(64) };
const STORAGES = ['fp32', 'fp16'];
const VOCABULARY_PROPERTIES = { name, path: text, names: text, normalize: flag, center: flag, dedupe: flag, verify: flag, storage: { enum: STORAGES } };

const CONFIG_SCHEMA = {
  type: 'object', additionalProperties: false,
  properties: {
    vocabularies: { type: 'array', items: { type: 'object', additionalProperties: false, required: ['name', 'path'], properties: VOCABULARY_PROPERTIES } },
    splice: {
      type: 'object', additionalProperties: false, required: ['concepts', 'conceptNames', 'imageMean'],
      properties: { concepts: text, conceptNames: text, imageMean: text, l1: { type: 'number', minimum: 0 } },
    },
    model: {
      type: 'object', additionalProperties: false, required: ['path'],
      properties: { path: text, output: text, threads: { type: 'integer', minimum: 1 }, ...IMAGE_BATCHING },
    },
    batching: BATCHING_SCHEMA,
    limits: LIMITS_SCHEMA,
    token: text, host: text, port: { type: 'integer', minimum: 0, maximum: 65535 }, logger: flag,
    computeNice: { type: 'integer', minimum: 0, maximum: 19 },
  },
};

/** The options the configuration file takes, which code passes to createServer too. */
export const CONFIG_OPTIONS: readonly string[] = Object.keys(CONFIG_SCHEMA.properties);

/** A vocabulary given in code: the file's options for one, plus its rows instead of a path; unknown ones or an unknown storage are refused. */
export function checkVocabularyConfig(c: VocabularyConfig): void {
  requireKnownKeys(c, [...Object.keys(VOCABULARY_PROPERTIES), 'vectors', 'dim'], `vocabularies '${c.name}'`);
  if (c.storage !== undefined && !STORAGES.includes(c.storage)) throw argError(`vocabularies '${c.name}'.storage`, "'fp32' or 'fp16'", c.storage);
}

/** The batching policy with defaults filled in, checked (ERR_ARG naming the field). */
export function batchingOf(o: ServiceOptions): BatchingOptions {
  return validate<BatchingOptions>(BATCHING_SCHEMA, { ...o.batching }, 'batching');
}

/** The request limits with defaults filled in, checked; maxQueue must hold a request of maxRows rows. */
export function limitsOf(o: ServiceOptions, batching: BatchingOptions): LimitsOptions {
  const limits = validate<LimitsOptions>(LIMITS_SCHEMA, { ...o.limits }, 'limits');
  if (batching.maxQueue < limits.maxRows)
    throw new ConceptLensError('ERR_ARG', `batching.maxQueue: expected at least limits.maxRows (${limits.maxRows}), so that a request of that many rows can wait, got ${batching.maxQueue}`);
  return limits;
}

/** The image batching with defaults filled in. */
export function imageBatchingOf(m: ImageModelConfig): Required<ImageBatching> {
  return validate<Required<ImageBatching>>({ type: 'object', properties: IMAGE_BATCHING }, { maxBatch: m.maxBatch, maxQueue: m.maxQueue }, 'model');
}

/**
 * Reads a configuration file (JSON, shaped like {@link ServerOptions} with paths): unknown or mistyped
 * fields are errors naming them; relative paths are taken from the file's folder.
 */
export function readConfigFile(path: string): ServerOptions {
  const o = validate<ServerOptions>(CONFIG_SCHEMA, readJson(path), path, ': ');
  const at = (p: string) => resolve(dirname(path), p);
  return {
    ...o,
    vocabularies: o.vocabularies?.map((v) => ({ ...v, path: at(v.path!), names: typeof v.names === 'string' ? at(v.names) : undefined })),
    splice: o.splice && resolveSplice(o.splice as SpliceFiles, at),
    model: o.model && { ...o.model, path: at((o.model as { path: string }).path) },
  };
}

function resolveSplice(s: SpliceFiles, at: (p: string) => string): SpliceFiles {
  return { ...s, concepts: at(s.concepts), conceptNames: at(s.conceptNames), imageMean: at(s.imageMean) };
}
