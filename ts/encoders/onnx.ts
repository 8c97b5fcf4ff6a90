// ONNX encoders on onnxruntime-node. The session lives in a worker thread
// (onnx-worker.ts) because `session.run` blocks its thread. Layer taps are the
// ONNX equivalent of a forward hook: the model protobuf is edited so any
// intermediate tensor becomes an extra graph output, then pooled to one row
// per input.
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import type { onnx as OnnxNs } from 'onnx-proto';
import { cancelFlag, type ProgressOptions } from '../abort.js';
import { floatsToHalves, halvesToFloats } from '../engine/fp16.js';
import { ConceptLensError, abortError, argError, toConceptLensError, requireInteger } from '../errors.js';
import { normaliseRows, requireArray, requireFiniteRows } from '../matrix.js';
import { ClipTokenizer, CONTEXT_LENGTH } from './clip-tokenizer.js';
import type { RawTensor, ValueInfo, WorkerReply, WorkerRun } from './onnx-protocol.js';

export type { RawTensor, ValueInfo } from './onnx-protocol.js';

const require = createRequire(import.meta.url);
const { onnx } = require('onnx-proto') as { onnx: typeof OnnxNs };

const FLOAT = 1;

function decodeModel(model: string | Uint8Array): OnnxNs.ModelProto {
  const bytes = typeof model === 'string' ? readFileSync(model) : model;
  try {
    return onnx.ModelProto.decode(bytes);
  } catch (e) {
    throw new ConceptLensError('ERR_FILE', `${typeof model === 'string' ? model : 'model bytes'}: not an ONNX model (${(e as Error).message})`);
  }
}

/** Names of every tensor a tap can expose: graph inputs and node outputs, in graph order. */
export function tensorNames(model: string | Uint8Array): string[] {
  const g = decodeModel(model).graph;
  if (!g) return [];
  const names = [...(g.input ?? []).map((v) => v.name ?? ''), ...(g.node ?? []).flatMap((n) => n.output ?? [])];
  return [...new Set(names.filter((n) => n.length > 0))];
}

function missingTensorError(name: string, available: string[], where: string): Error {
  const shown = available.length > 300 ? [...available.slice(0, 300), `... (${available.length - 300} more)`] : available;
  return new ConceptLensError('ERR_ARG', `tensor '${name}' not found in ${where}; available tensors (${available.length}): ${shown.join(', ')}`);
}

/**
 * Model bytes with `names` added as graph outputs. Their element type comes
 * from the graph's value_info when known, else that of the first output (an
 * fp16 export computes in fp16), else float32.
 */
export function withTapOutputs(model: string | Uint8Array, names: readonly string[]): Uint8Array {
  const m = decodeModel(model);
  const g = m.graph;
  if (!g) throw new ConceptLensError('ERR_FILE', 'model has no graph');
  const available = tensorNames(model);
  const outputs = new Set((g.output ?? []).map((o) => o.name));
  for (const name of names) {
    if (!available.includes(name)) throw missingTensorError(name, available, typeof model === 'string' ? model : 'the model');
    if (outputs.has(name)) continue;
    const known = [...(g.valueInfo ?? []), ...(g.input ?? [])].find((v) => v.name === name);
    g.output = [...(g.output ?? []), onnx.ValueInfoProto.create({
      name,
      type: known?.type ?? { tensorType: { elemType: g.output?.[0]?.type?.tensorType?.elemType ?? FLOAT } },
    })];
    outputs.add(name);
  }
  return onnx.ModelProto.encode(m).finish();
}

/** Options of {@link OnnxModel.run}; progress counts rows done of the batch axis. */
export interface RunOptions extends ProgressOptions {
  /** Rows per `session.run` (default 32). */
  batchSize?: number;
}

/** An onnxruntime session in its own worker thread. */
export class OnnxModel {
  private nextId = 1;
  private pending = new Map<number, { resolve: (r: Record<string, RawTensor>) => void; reject: (e: Error) => void; onProgress?: ProgressOptions['onProgress'] }>();
  /** Set by the first close(): later calls return it instead of messaging a worker that is gone. */
  private closing?: Promise<void>;
  /** Set when the worker thread ends: nothing posted to it afterwards would ever be answered. */
  private exitCode?: number;

  private constructor(private readonly worker: Worker, readonly inputs: ValueInfo[], readonly outputs: ValueInfo[], readonly source: string) {
    worker.on('message', (m: WorkerReply) => this.onMessage(m));
    worker.on('error', (e) => this.failAll(e));
    worker.on('exit', (code) => {
      this.exitCode = code;
      this.failAll(new ConceptLensError('ERR_ENGINE', `${source}: the onnxruntime worker exited (code ${code})`));
    });
    worker.unref();
  }

  /** The one guard of every use after close(): a message to an ended worker would wait forever. */
  private checkOpen(): void {
    if (this.closing) throw new ConceptLensError('ERR_ARG', `${this.source}: the model is closed; load it again`);
    if (this.exitCode !== undefined)
      throw new ConceptLensError('ERR_ENGINE', `${this.source}: the onnxruntime worker exited (code ${this.exitCode}); load the model again`);
  }

  /**
   * Loads a model from a file (or bytes). `taps` are intermediate tensors to
   * expose as extra outputs. `threads` bounds onnxruntime's intra-op pool.
   */
  static async load(model: string | Uint8Array, opts: { taps?: string[]; threads?: number } = {}): Promise<OnnxModel> {
    // onnxruntime would refuse it as a failure to load the model.
    if (opts.threads !== undefined) requireInteger(opts.threads, 'threads', 1);
    const source = typeof model === 'string' ? model : 'model bytes';
    const taps = opts.taps ?? [];
    const bytes = taps.length ? withTapOutputs(model, taps) : model;
    const worker = new Worker(new URL('./onnx-worker.js', import.meta.url), { workerData: { model: bytes, threads: opts.threads } });
    const ready = await new Promise<{ inputs: ValueInfo[]; outputs: ValueInfo[] }>((resolve, reject) => {
      worker.once('error', reject);
      worker.once('message', (m: WorkerReply) => {
        if ('ready' in m) resolve(m.ready);
        else if ('error' in m) reject(new ConceptLensError('ERR_FILE', `${source}: onnxruntime cannot load the model: ${m.error.message}`));
      });
    }).catch(async (e) => {
      await worker.terminate();
      throw e;
    });
    return new OnnxModel(worker, ready.inputs, ready.outputs, source);
  }

  /** The model input called `name`; throws ERR_ARG listing the inputs when there is none. */
  input(name: string): ValueInfo {
    const v = this.inputs.find((i) => i.name === name);
    if (!v) throw new ConceptLensError('ERR_ARG', `${this.source}: no input named '${name}' (inputs: ${this.inputs.map((i) => i.name).join(', ')})`);
    return v;
  }

  /** Runs the feeds (sharing a first, batch axis) in batches; returns the named outputs concatenated. */
  async run(feeds: Record<string, RawTensor>, outputs: string[] = [this.outputs[0].name], opts: RunOptions = {}): Promise<Record<string, RawTensor>> {
    this.checkOpen();
    for (const o of outputs)
      if (!this.outputs.some((v) => v.name === o)) throw missingTensorError(o, this.outputs.map((v) => v.name), `the outputs of ${this.source}`);
    const rows = Object.values(feeds).map((t) => t.dims[0]);
    if (rows.length === 0 || rows.some((r) => r !== rows[0] || !(r > 0)))
      throw new ConceptLensError('ERR_SHAPE', `${this.source}: feeds need one shared, non-zero batch size; got first dims [${rows.join(', ')}]`);
    for (const [name, t] of Object.entries(feeds)) checkFeedShape(this.input(name), t.dims, this.source);
    const batchSize = opts.batchSize ?? 32;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw argError('batchSize', 'a positive integer', batchSize);
    const c = cancelFlag(opts.signal);
    const id = this.nextId++;
    const msg: WorkerRun = { id, feeds, outputs, batchSize, cancel: c.flag };
    // The run settles the moment its signal aborts: the worker stops at its next
    // batch, but its progress and result, possibly already posted, are dropped.
    const onAbort = () => this.settle(id)?.reject(abortError());
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    this.worker.ref(); // keep the process alive while a run is in flight
    try {
      return await new Promise<Record<string, RawTensor>>((resolve, reject) => {
        this.pending.set(id, { resolve, reject, onProgress: opts.onProgress });
        this.worker.postMessage(msg);
      });
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
      c.dispose();
      if (this.pending.size === 0) this.worker.unref();
    }
  }

  /**
   * Releases the session and ends its worker thread; the model cannot run afterwards (runs reject with
   * ERR_ARG). Closing again does nothing.
   */
  close(): Promise<void> {
    this.closing ??= this.release();
    return this.closing;
  }

  private async release(): Promise<void> {
    if (this.exitCode !== undefined) return;
    const exited = new Promise((resolve) => this.worker.once('exit', resolve));
    this.worker.ref(); // wait for the session's release
    this.worker.postMessage('close');
    await exited;
  }

  /** The run's callbacks, taken out of `pending`: nothing reaches a settled run. */
  private settle(id: number) {
    const p = this.pending.get(id);
    this.pending.delete(id);
    return p;
  }

  private onMessage(m: WorkerReply): void {
    if ('progress' in m) return this.pending.get(m.id)?.onProgress?.(...m.progress);
    const p = this.settle(m.id);
    if (!p) return;
    if ('result' in m) p.resolve(m.result);
    else if ('error' in m) {
      const e = new Error(m.error.name === 'AbortError' ? m.error.message : `${this.source}: ${m.error.message}`);
      e.name = m.error.name;
      p.reject(toConceptLensError(e));
    }
  }

  private failAll(e: Error): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }
}

/** Fixed (numeric) dims of a model input must equal the data's. */
function checkFeedShape(info: ValueInfo, dims: number[], source: string): void {
  const fits = info.shape.length === dims.length && info.shape.every((d, i) => typeof d !== 'number' || d < 0 || d === dims[i]);
  if (!fits)
    throw new ConceptLensError('ERR_SHAPE', `${source}: input '${info.name}' expects shape [${info.shape.join(', ')}], got [${dims.join(', ')}]: the data does not fit the model`);
}

/**
 * How a tapped activation becomes one row per input (see {@link poolActivations}): mean or max
 * over positions/tokens, the first position/token, or 'none' to flatten.
 */
export type Pool = 'avg' | 'max' | 'first' | 'none';
const POOLS: readonly Pool[] = ['avg', 'max', 'first', 'none'];
/** How a tensor's axes read: [N, C, ...spatial] | [N, tokens, D] | [tokens, N, D] (older open_clip transformers). */
export type Layout = 'channels' | 'tokens' | 'tokens-first';
const LAYOUTS: readonly Layout[] = ['channels', 'tokens', 'tokens-first'];

/** Refuses a pool or layout that is none of the names (an unknown pool would sum). */
function checkPooling(pool: unknown, layout: unknown): void {
  if (pool !== undefined && !POOLS.includes(pool as Pool)) throw argError('pool', POOLS.join(', '), pool);
  if (layout !== undefined && !LAYOUTS.includes(layout as Layout)) throw argError('layout', LAYOUTS.join(', '), layout);
}

/**
 * One row per input from an activation tensor: avg/max over the spatial
 * positions (channels layout) or tokens, or the first position/token; 'none'
 * flattens. Rank-2 tensors are returned as they are.
 */
export function poolActivations(t: { dims: number[]; data: Float32Array }, pool: Pool, layout: Layout = t.dims.length === 3 ? 'tokens' : 'channels'): { data: Float32Array; shape: [number, number] } {
  checkPooling(pool, layout);
  const count = t.dims.reduce((x, y) => x * y, 1);
  if (t.data.length !== count) throw new ConceptLensError('ERR_SHAPE', `pool: dims [${t.dims.join(', ')}] hold ${count} values, got ${t.data.length}`);
  const [a, b] = t.dims;
  const rest = t.dims.slice(2).reduce((x, y) => x * y, 1);
  if (t.dims.length <= 2 || (pool === 'none' && layout !== 'tokens-first')) return { data: t.data, shape: [a, t.data.length / Math.max(1, a)] };
  if (t.dims.length !== 3 && layout !== 'channels') throw new ConceptLensError('ERR_SHAPE', `pool: layout '${layout}' needs a rank-3 tensor, got dims [${t.dims.join(', ')}]`);
  if (pool === 'none') throw argError('pool', 'avg, max or first for a [tokens, N, D] tensor', pool);
  // Element (row n, feature c, position s) sits at n*ns + c*cs + s*ps.
  const g = layout === 'channels' ? { n: a, c: b, s: rest, ns: b * rest, ps: 1, cs: rest }
    : layout === 'tokens' ? { n: a, c: rest, s: b, ns: b * rest, ps: rest, cs: 1 }
      : { n: b, c: rest, s: a, ns: rest, ps: b * rest, cs: 1 };
  const out = new Float32Array(g.n * g.c);
  for (let n = 0; n < g.n; n++) {
    for (let c = 0; c < g.c; c++) {
      const base = n * g.ns + c * g.cs;
      let acc = pool === 'max' ? -Infinity : 0;
      const positions = pool === 'first' ? 1 : g.s;
      for (let s = 0; s < positions; s++) {
        const v = t.data[base + s * g.ps];
        acc = pool === 'max' ? Math.max(acc, v) : acc + v;
      }
      out[n * g.c + c] = pool === 'avg' ? acc / g.s : acc;
    }
  }
  return { data: out, shape: [g.n, g.c] };
}

/** Options of {@link ImageEncoder.load} and {@link TextEncoder.load}. */
export interface EncoderOptions {
  /** Input name (default: by convention, see IMAGE_INPUTS / TEXT_INPUTS). */
  input?: string;
  /** Output to return (default: the model's first output). */
  output?: string;
  /** Intermediate tensor to tap instead of an output; pooled by `pool`. */
  layer?: string;
  /** Pooling of the tapped `layer` (default 'avg' with `layer`, else 'none'). */
  pool?: Pool;
  /** Axis layout of the feature tensor (default 'tokens' for rank 3, else 'channels'). */
  layout?: Layout;
  /** Rows per `session.run` (default 32). */
  batchSize?: number;
  /** L2-normalise every row. */
  normalize?: boolean;
  /** Storage of the returned rows: fp32 Float32Array or fp16 bits in a Uint16Array. */
  dtype?: 'float32' | 'float16';
  /** Bound on onnxruntime's intra-op threads (default: onnxruntime's own choice). */
  threads?: number;
}

/** Encoder output: one row per input, n × d row-major. */
export interface Embeddings {
  /** The rows: fp32, or fp16 bits when `dtype` is 'float16'. */
  data: Float32Array | Uint16Array;
  /** [rows, width]. */
  shape: [number, number];
  dtype: 'float32' | 'float16';
}

/** Input names used by open_clip, Hugging Face and torchvision exports, in preference order. */
export const IMAGE_INPUTS = ['pixel_values', 'input', 'image', 'images', 'data', 'x', 'input.1'];
/** Input names taken as the token ids of a text model, in preference order. */
export const TEXT_INPUTS = ['input_ids', 'text', 'input', 'tokens', 'input.1'];

function pickInput(model: OnnxModel, wanted: string | undefined, conventions: string[], what: string): string {
  if (wanted) return model.input(wanted).name;
  const names = model.inputs.map((i) => i.name);
  const hit = conventions.find((c) => names.includes(c)) ?? (names.length === 1 ? names[0] : undefined);
  if (!hit) throw new ConceptLensError('ERR_ARG', `${model.source}: cannot tell which input takes the ${what} (inputs: ${names.join(', ')}); pass the input name`);
  return hit;
}

const toFloats = (t: RawTensor): Float32Array =>
  t.type === 'float16' ? halvesToFloats(t.data as Uint16Array) : t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as Float64Array);

/** Shared by the image and text encoders: one model, one feature (output or pooled tap). */
abstract class Encoder {
  protected constructor(readonly model: OnnxModel, protected readonly opts: EncoderOptions, readonly feature: string) {}

  /**
   * Loads the model with `opts.layer` tapped and checks that the feature (the tap, `output`, else
   * the first output) exists; otherwise closes the model and throws ERR_ARG.
   */
  protected static async open(path: string | Uint8Array, opts: EncoderOptions): Promise<{ model: OnnxModel; feature: string }> {
    checkPooling(opts.pool, opts.layout);
    const model = await OnnxModel.load(path, { taps: opts.layer ? [opts.layer] : [], threads: opts.threads });
    const feature = opts.layer ?? opts.output ?? model.outputs[0].name;
    if (!model.outputs.some((o) => o.name === feature)) {
      await model.close();
      throw missingTensorError(feature, model.outputs.map((o) => o.name), `the outputs of ${model.source}`);
    }
    return { model, feature };
  }

  /** Runs the feeds and turns the feature into rows: pooled, normalised and stored as `opts` say. */
  protected async embed(feeds: Record<string, RawTensor>, opts: ProgressOptions): Promise<Embeddings> {
    const out = (await this.model.run(feeds, [this.feature], { ...opts, batchSize: this.opts.batchSize }))[this.feature];
    const pool = this.opts.pool ?? (this.opts.layer ? 'avg' : 'none');
    const rows = poolActivations({ dims: out.dims, data: toFloats(out) }, pool, this.opts.layout);
    if (this.opts.normalize) normaliseRows(rows.data, rows.shape[1], { inPlace: true, name: `${this.model.source} output '${this.feature}'` });
    if (this.opts.dtype === 'float16') return { data: floatsToHalves(rows.data), shape: rows.shape, dtype: 'float16' };
    return { ...rows, dtype: 'float32' };
  }

  /** Releases the onnxruntime session and its worker thread. */
  close(): Promise<void> {
    return this.model.close();
  }
}

/** Image tower: NCHW float pixels in, one row per image out. */
export class ImageEncoder extends Encoder {
  /**
   * Loads an image model from a file or bytes; the pixel input is `opts.input`, else the first of
   * {@link IMAGE_INPUTS} present, else the only input.
   */
  static async load(path: string | Uint8Array, opts: EncoderOptions = {}): Promise<ImageEncoder> {
    const { model, feature } = await Encoder.open(path, opts);
    try {
      return new ImageEncoder(model, opts, feature, pickInput(model, opts.input, IMAGE_INPUTS, 'images'));
    } catch (e) {
      await model.close();
      throw e;
    }
  }

  private constructor(model: OnnxModel, opts: EncoderOptions, feature: string, readonly inputName: string) {
    super(model, opts, feature);
  }

  /** The [C, H, W] the model's input asks for (symbolic dims as strings). */
  get inputShape(): (number | string)[] {
    return this.model.input(this.inputName).shape.slice(1);
  }

  /**
   * Embeds a batch of preprocessed images: `pixels` N × C × H × W row-major with `shape`
   * [N, C, H, W] (converted to fp16 when the model takes fp16).
   * @throws ConceptLensError ERR_SHAPE when `shape` does not describe `pixels` or does not fit the model input,
   * ERR_DTYPE when they are not a Float32Array, ERR_NAN for a non-finite pixel.
   */
  encode(pixels: Float32Array, shape: readonly number[], opts: ProgressOptions = {}): Promise<Embeddings> {
    requireArray(pixels, Float32Array, 'pixels');
    const count = shape.reduce((a, b) => a * b, 1);
    if (shape.length !== 4 || count !== pixels.length)
      throw new ConceptLensError('ERR_SHAPE', `ImageEncoder.encode: shape [${shape.join(', ')}] does not describe ${pixels.length} floats as [N, C, H, W]`);
    // A NaN pixel would spread into its image's embedding, or vanish in a pooling max: either way a wrong answer.
    requireFiniteRows(pixels, count / shape[0], 'pixels', (x) => `pixels: image ${x}`);
    const half = this.model.input(this.inputName).type === 'float16';
    const data = half ? floatsToHalves(pixels) : pixels;
    return this.embed({ [this.inputName]: { type: half ? 'float16' : 'float32', dims: [...shape], data } }, opts);
  }
}

/** CLIP-style text tower: texts -> CLIP BPE ids (+ attention mask) -> one row per text. */
export class TextEncoder extends Encoder {
  /**
   * Loads a text model fed token ids (`opts.input`, else the first of {@link TEXT_INPUTS}) and,
   * when it has one, `attention_mask`; `opts.tokenizer` defaults to {@link ClipTokenizer.load}().
   * @throws ConceptLensError ERR_ARG when the model needs any other input.
   */
  static async load(path: string | Uint8Array, opts: EncoderOptions & { tokenizer?: ClipTokenizer } = {}): Promise<TextEncoder> {
    const { model, feature } = await Encoder.open(path, opts);
    try {
      const ids = pickInput(model, opts.input, TEXT_INPUTS, 'token ids');
      const mask = model.inputs.find((i) => i.name === 'attention_mask')?.name;
      const unfed = model.inputs.filter((i) => i.name !== ids && i.name !== mask).map((i) => i.name);
      if (unfed.length) throw new ConceptLensError('ERR_ARG', `${model.source}: a text encoder is fed token ids and an attention mask only; the model also needs ${unfed.join(', ')}`);
      return new TextEncoder(model, opts, feature, ids, mask, opts.tokenizer ?? ClipTokenizer.load());
    } catch (e) {
      await model.close();
      throw e;
    }
  }

  private constructor(model: OnnxModel, opts: EncoderOptions, feature: string, readonly idsName: string,
    readonly maskName: string | undefined, readonly tokenizer: ClipTokenizer) {
    super(model, opts, feature);
  }

  /** The model's fixed context length, else CLIP's 77. */
  get contextLength(): number {
    const d = this.model.input(this.idsName).shape[1];
    return typeof d === 'number' && d > 0 ? d : CONTEXT_LENGTH;
  }

  /**
   * Embeds texts: CLIP BPE ids padded or truncated to {@link TextEncoder.contextLength}, with an
   * attention mask up to and including the end token.
   */
  encode(texts: readonly string[], opts: ProgressOptions = {}): Promise<Embeddings> {
    const L = this.contextLength;
    const ids = this.tokenizer.tokenize(texts, L);
    // Attend up to and including the end token; id 0 is a real token ('!'), so padding is found by position.
    const mask = new Int32Array(ids.length);
    for (let r = 0; r < texts.length; r++) {
      const row = ids.subarray(r * L, (r + 1) * L);
      mask.fill(1, r * L, r * L + row.indexOf(this.tokenizer.endToken) + 1);
    }
    const feeds: Record<string, RawTensor> = { [this.idsName]: this.intTensor(this.idsName, ids, texts.length, L) };
    if (this.maskName) feeds[this.maskName] = this.intTensor(this.maskName, mask, texts.length, L);
    return this.embed(feeds, opts);
  }

  private intTensor(name: string, v: Int32Array, n: number, L: number): RawTensor {
    const type = this.model.input(name).type;
    if (type === 'int64') return { type, dims: [n, L], data: BigInt64Array.from(v, (x) => BigInt(x)) };
    if (type === 'int32') return { type, dims: [n, L], data: v };
    throw new ConceptLensError('ERR_DTYPE', `${this.model.source}: input '${name}' has type ${type}; expected int64 or int32 token ids`);
  }
}
