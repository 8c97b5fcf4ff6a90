// The compact vocabulary store: a directory with manifest.json (dim, dtype,
// rows, transforms, shard list, size and sha256 of every file), the vectors
// as .npy shards of at most one streaming block each, the mean row, the
// original ids kept by de-duplication, and the texts as one UTF-8 blob plus
// offsets, and optionally the prepared screening copy of the vectors (their
// rounded values, per-row terms and frame; PreparedRows). Reopening reads the
// manifest and .npy headers only. Written into a temp directory that is
// renamed into place.
import { constants } from 'node:buffer';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { throttled } from '../abort.js';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import type { PreparedArrays } from '../engine/addon.js';
import { requireFiniteRows } from '../matrix.js';
import { commitTemp, tempPath } from '../io/atomic.js';
import { ConceptLensError, fileError } from '../errors.js';
import { npyBytes, npyHeader, parseNpy, readNpy, readNpyHeader } from '../io/npy.js';
import { textRuns, type ByteRun, type Texts } from './texts.js';
import { dimOf, readBlocks, rowName, type Shard, type Transforms } from './vocab-blocks.js';
import { readJson } from '../io/text.js';


export const MANIFEST = 'manifest.json';
const FORMAT = 'conceptlens-vocabulary';

/** What a vocabulary holds: its embedding shards and how they are read, with optional texts and original ids. */
export interface VocabContent {
  /** Embedding width. */
  dim: number;
  /** Storage type of the shards (fp16 as bits in a Uint16Array). */
  dtype: 'float32' | 'float16';
  /** Rows in the vocabulary (after de-duplication). */
  rows: number;
  /** Size of the original id space (rows before de-duplication). */
  sourceRows: number;
  /** Transforms applied to rows as they are read. */
  transforms: Transforms;
  /** The mean row subtracted when `transforms.center` is on (dim values). */
  mean?: Float64Array;
  /** Original id of each row, when de-duplication dropped rows. */
  ids?: Float64Array;
  /** Texts of the rows, by vocabulary row. */
  texts?: Texts;
  /** The embedding files (or in-memory arrays) the rows come from, in row order. */
  shards: Shard[];
}

interface Manifest {
  format: typeof FORMAT;
  version: 1;
  dim: number;
  dtype: VocabContent['dtype'];
  rows: number;
  sourceRows: number;
  transforms: Transforms;
  shards: { file: string; rows: number; chunk: number }[];
  mean?: string;
  ids?: string;
  texts?: { blob: string; offsets: string };
  /** The prepared screening copy of the vectors: packed values, per-row terms, and the frame unless it is the identity. */
  prepared?: { format: PreparedArrays['format']; layout?: number; packed: string; terms: string; frame?: string };
  files: Record<string, { bytes: number; sha256: string }>;
}

/** Rows of prepared_terms.npy, each one value per vocabulary row. */
const TERMS = ['scale', 'err', 'norm', 'vnorm', 'inv'] as const;

export interface StoreWriteOptions {
  blockBytes?: number;
  /** The vectors' prepared screening copy, written beside them. */
  prepared?: PreparedArrays;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}


/** int32 when every value fits, else int64 (npy has no uint32 here). */
function intNpy(values: ArrayLike<number>, maxValue: number): Buffer {
  return maxValue < 2 ** 31
    ? npyBytes(Int32Array.from(values), [values.length], 'int32')
    : npyBytes(BigInt64Array.from(Array.from(values, (v) => BigInt(v))), [values.length], 'int64');
}

/**
 * Writes the texts one after another as UTF-8, run by run through a 4 MiB buffer (never all of them in memory), and
 * returns their offsets.
 */
async function writeTexts(texts: Texts, out: FileSink): Promise<Buffer> {
  const offsets = new Float64Array(texts.length + 1), buf = Buffer.allocUnsafe(1 << 22);
  let i = 0, used = 0;
  for await (const r of textRuns(texts))
    for (let j = 0; j < r.start.length; j++, i++) {
      const n = r.length[j];
      if (used + n > buf.length) out.write(buf.subarray(0, used)), (used = 0);
      if (n > buf.length) out.write(r.bytes.subarray(r.start[j], r.start[j] + n));
      else buf.set(r.bytes.subarray(r.start[j], r.start[j] + n), used), (used += n);
      offsets[i + 1] = offsets[i] + n;
    }
  out.write(buf.subarray(0, used));
  return intNpy(offsets, offsets[texts.length]);
}

/** A file being written, with its size and sha256 kept as it grows. */
interface FileSink {
  write(part: Uint8Array): void;
}

/** Moves the finished temp directory to `out`, replacing an older store there (never other data). */
function swapInto(tmp: string, out: string): void {
  if (!existsSync(out)) return renameSync(tmp, out);
  if (!existsSync(join(out, MANIFEST))) throw fileError(out, 'exists and is not a vocabulary store; choose another --out');
  const old = `${out}.old-${process.pid}-${Date.now()}`;
  renameSync(out, old);
  renameSync(tmp, out);
  rmSync(old, { recursive: true, force: true });
}

/** Writes what `fill` writes to path, part after part (so large blocks are never copied); its size and sha256. */
async function writeHashed(path: string, fill: (out: FileSink) => Promise<void> | void): Promise<Manifest['files'][string]> {
  const fd = openSync(path, 'w'), hash = createHash('sha256');
  let bytes = 0;
  try {
    await fill({
      write: (p) => {
        writeSync(fd, p);
        hash.update(p);
        bytes += p.length;
      },
    });
  } finally {
    closeSync(fd);
  }
  return { bytes, sha256: hash.digest('hex') };
}

export async function writeStore(v: VocabContent, out: string, opts: StoreWriteOptions = {}): Promise<void> {
  const tmp = tempPath(out);
  mkdirSync(tmp, { recursive: true });
  const files: Manifest['files'] = {};
  const stream = async (name: string, fill: (out: FileSink) => Promise<void> | void) => {
    files[name] = await writeHashed(join(tmp, name), fill);
    return name;
  };
  const put = (name: string, ...parts: Uint8Array[]) => stream(name, (out) => parts.forEach((p) => out.write(p)));
  try {
    const shards: Manifest['shards'] = [], progress = throttled(opts.onProgress);
    for await (const b of readBlocks(v.shards, opts.blockBytes, opts.signal)) {
      requireFiniteRows(b.data, v.dim, 'vectors', (i) => rowName(v.shards, b, i));
      const file = await put(`vectors_${shards.length}.npy`, npyHeader([b.rows, v.dim], v.dtype),
        new Uint8Array(b.data.buffer, b.data.byteOffset, b.data.byteLength));
      shards.push({ file, rows: b.rows, chunk: v.shards[b.shard].chunk });
      progress(b.start + b.rows, v.rows);
    }
    const m: Manifest = {
      format: FORMAT, version: 1, dim: v.dim, dtype: v.dtype, rows: v.rows, sourceRows: v.sourceRows,
      transforms: v.transforms, shards, files,
    };
    if (opts.prepared) m.prepared = await putPrepared(opts.prepared, put);
    if (v.mean) m.mean = await put('mean.npy', npyBytes(v.mean, [v.dim], 'float64'));
    if (v.ids) m.ids = await put('ids.npy', intNpy(v.ids, v.sourceRows));
    if (v.texts) {
      const texts = v.texts;
      let offsets: Buffer = Buffer.alloc(0);
      const blob = await stream('texts.bin', async (out) => void (offsets = await writeTexts(texts, out)));
      m.texts = { blob, offsets: await put('texts_offsets.npy', offsets) };
    }
    writeFileSync(join(tmp, MANIFEST), JSON.stringify(m, null, 1));
    swapInto(tmp, out);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Writes the prepared copy's files through `put` (which records their size and sha256). */
async function putPrepared(a: PreparedArrays, put: (name: string, ...parts: Uint8Array[]) => Promise<string>): Promise<Manifest['prepared']> {
  const terms = new Float32Array(TERMS.length * a.rows);
  TERMS.forEach((t, i) => a[t].length && terms.set(a[t], i * a.rows));
  const steps = a.packed.length / Math.max(1, a.rows);
  const frame = a.mu && a.invC ? new Float32Array([...a.mu, ...a.invC]) : undefined;
  return {
    format: a.format,
    layout: a.layout,
    packed: await put('prepared_packed.npy', npyHeader([a.rows, steps], 'uint8'), a.packed),
    terms: await put('prepared_terms.npy', npyBytes(terms, [TERMS.length, a.rows], 'float32')),
    frame: frame && (await put('prepared_frame.npy', npyBytes(frame, [2, a.dim], 'float32'))),
  };
}

/**
 * Adds (or replaces) the prepared copy of the store in `dir` in place: each file written under a temp name and renamed
 * into place, the manifest last, so the manifest never names a file that is not whole (a reader between the two sees a
 * sha256 that does not match, and refuses it).
 */
export async function writePreparedInto(dir: string, a: PreparedArrays): Promise<void> {
  const m = readManifest(dir);
  if (a.rows !== m.rows || a.dim !== m.dim) throw fileError(dir, `a prepared copy of ${a.rows} × ${a.dim} rows does not fit the store's ${m.rows} × ${m.dim}`);
  const put = async (name: string, ...parts: Uint8Array[]) => {
    const path = join(dir, name), tmp = tempPath(path);
    try {
      m.files[name] = await writeHashed(tmp, (out) => parts.forEach((p) => out.write(p)));
      commitTemp(tmp, path);
    } catch (e) {
      rmSync(tmp, { force: true });
      throw fileError(path, `cannot write (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, e);
    }
    return name;
  };
  for (const name of [m.prepared?.frame].filter((f): f is string => !!f)) delete m.files[name];  // an old frame the new copy may not have
  m.prepared = await putPrepared(a, put);
  const manifest = join(dir, MANIFEST), tmp = tempPath(manifest);
  writeFileSync(tmp, JSON.stringify(m, null, 1));
  commitTemp(tmp, manifest);
}

/** The most bytes one Uint8Array holds in this Node (2³² in Node 20). */
const MAX_ARRAY_BYTES = constants.MAX_LENGTH;

/**
 * Refuses a store file whose sha256 is not the one its manifest records; read a few MiB at a time, into memory
 * whole when `keep` asks for its bytes (then the bytes hashed are the bytes returned).
 */
async function requireIntact(path: string, recorded: string | undefined, keep = false): Promise<Uint8Array | undefined> {
  const h = createHash('sha256');
  const unreadable = (e: NodeJS.ErrnoException) => {
    throw e instanceof ConceptLensError ? e : fileError(path, `cannot read (${e.code ?? e.message})`, e);
  };
  const fh = await open(path, 'r').catch(unreadable);
  let all: Uint8Array | undefined;
  try {
    const size = (await fh.stat()).size, chunk = 1 << 22;
    if (keep && size > MAX_ARRAY_BYTES)
      throw fileError(path, `is ${size} bytes; the prepared copy is held in memory whole, and one array holds at most ${MAX_ARRAY_BYTES}: prepare fewer rows per store`);
    all = keep ? new Uint8Array(size) : undefined;
    const buf = all ? undefined : new Uint8Array(chunk);
    for (let at = 0; at < size;) {
      const into = all ? all.subarray(at, at + chunk) : buf!;
      const { bytesRead } = await fh.read(into, 0, Math.min(into.length, size - at), at);
      if (bytesRead === 0) throw fileError(path, `changed while it was read (ends before byte ${size})`);
      h.update(into.subarray(0, bytesRead));
      at += bytesRead;
    }
  } catch (e) {
    unreadable(e as NodeJS.ErrnoException);
  } finally {
    await fh.close();
  }
  const got = h.digest('hex');
  if (got !== recorded) throw fileError(path, `sha256 ${got}, the manifest records ${recorded}; the store is damaged, rebuild it`);
  return all;
}

/**
 * The store's prepared screening copy, if it has one: every file read whole and its bytes hashed against the
 * manifest (they certify the search's exactness, so damage is refused whatever `verify` says).
 * @throws ConceptLensError ERR_FILE naming a file whose sha256 or shape does not match.
 */
export async function readPrepared(dir: string): Promise<PreparedArrays | undefined> {
  const m = readManifest(dir), p = m.prepared;
  if (!p) return undefined;
  const load = async (name: string, dtype: string, shape: number[]) => {
    const path = join(dir, name), a = parseNpy(path, (await requireIntact(path, m.files[name]?.sha256, true))!);
    if (a.dtype !== dtype || a.shape.length !== 2 || a.shape[0] !== shape[0] || (shape[1] >= 0 && a.shape[1] !== shape[1]))
      throw fileError(path, `${a.dtype} [${a.shape.join(', ')}], expected ${dtype} [${shape.map((x) => (x < 0 ? '*' : x)).join(', ')}]`);
    return a.data;
  };
  const packed = (await load(p.packed, 'uint8', [m.rows, -1])) as Uint8Array;
  const terms = (await load(p.terms, 'float32', [TERMS.length, m.rows])) as Float32Array;
  const frame = p.frame ? ((await load(p.frame, 'float32', [2, m.dim])) as Float32Array) : undefined;
  const term = (i: number) => (p.format || TERMS[i] === 'inv' ? terms.slice(i * m.rows, (i + 1) * m.rows) : new Float32Array(0));
  return {
    format: p.format, layout: p.layout ?? 1, rows: m.rows, dim: m.dim, packed,
    mu: frame ? frame.slice(0, m.dim) : null, invC: frame ? frame.slice(m.dim) : null,
    scale: term(0), err: term(1), norm: term(2), vnorm: term(3), inv: term(4),
  };
}

/** Blobs up to this size are read whole on first use; larger ones one text at a time. */
const WHOLE_BLOB_BYTES = 256 * 2 ** 20;

/** Texts held as one UTF-8 blob plus offsets. */
class BlobTexts implements Texts {
  private blob?: Buffer;
  constructor(private readonly path: string, private readonly offsets: Float64Array) {}
  get length() {
    return this.offsets.length - 1;
  }
  async lookup(ids: readonly number[]): Promise<string[]> {
    for (const i of ids)
      if (!Number.isInteger(i) || i < 0 || i >= this.length) throw new ConceptLensError('ERR_ARG', `text id: expected an integer in [0, ${this.length}), got ${i}`);
    return ids.map((i) => this.get(i));
  }
  async *parts(): AsyncIterable<string[]> {
    const step = 1 << 16;
    for (let i0 = 0; i0 < this.length; i0 += step)
      yield Array.from({ length: Math.min(step, this.length - i0) }, (_, j) => this.get(i0 + j));
  }
  async *runs(): AsyncIterable<ByteRun> {
    const step = 1 << 16;
    for (let i0 = 0; i0 < this.length; i0 += step) {
      const i1 = Math.min(this.length, i0 + step), from = this.offsets[i0];
      const bytes = this.range(from, this.offsets[i1]), start = new Int32Array(i1 - i0), length = new Int32Array(i1 - i0);
      for (let i = i0; i < i1; i++) (start[i - i0] = this.offsets[i] - from), (length[i - i0] = this.offsets[i + 1] - this.offsets[i]);
      yield { bytes, start, length };
    }
  }
  private get(i: number): string {
    return this.range(this.offsets[i], this.offsets[i + 1]).toString('utf8');
  }
  /** Bytes [a, b) of the blob. */
  private range(a: number, b: number): Buffer {
    if (this.offsets[this.length] <= WHOLE_BLOB_BYTES) {
      this.blob ??= readFileSync(this.path);
      return this.blob.subarray(a, b);
    }
    const buf = Buffer.alloc(b - a), fd = openSync(this.path, 'r');
    try {
      readSync(fd, buf, 0, buf.length, a);
    } finally {
      closeSync(fd);
    }
    return buf;
  }
}

const asNumbers = (a: ArrayLike<number | bigint>) => Float64Array.from(a as ArrayLike<number>, Number);

function readManifest(dir: string): Manifest {
  const path = join(dir, MANIFEST);
  let m: Manifest;
  try {
    m = readJson(path);
  } catch (e) {
    throw fileError(path, `cannot read the store manifest (${(e as Error).message})`);
  }
  if (m.format !== FORMAT || m.version !== 1)
    throw fileError(path, `format ${JSON.stringify(m.format)} version ${m.version}, expected ${FORMAT} version 1`);
  for (const [name, f] of Object.entries(m.files)) {
    const p = join(dir, name);
    const size = existsSync(p) ? statSync(p).size : -1;
    if (size !== f.bytes)
      throw fileError(p, `${size < 0 ? 'missing' : `${size} bytes`}, the manifest records ${f.bytes}; the store is damaged, rebuild it`);
  }
  return m;
}

/** Opens a store from its manifest and .npy headers (no data pass). */
export function readStore(dir: string): VocabContent {
  const m = readManifest(dir);
  const shards: Shard[] = m.shards.map((s) => {
    const header = readNpyHeader(join(dir, s.file));
    if (header.dtype !== m.dtype || header.shape.length !== 2 || header.shape[0] !== s.rows || dimOf(header) !== m.dim)
      throw fileError(header.path, `${header.dtype} [${header.shape.join(', ')}], the manifest records ${m.dtype} [${s.rows}, ${m.dim}]`);
    return { header, rows: s.rows, chunk: s.chunk };
  });
  const offsets = m.texts ? asNumbers(readNpy(join(dir, m.texts.offsets)).data as ArrayLike<number | bigint>) : undefined;
  return {
    dim: m.dim, dtype: m.dtype, rows: m.rows, sourceRows: m.sourceRows, transforms: m.transforms, shards,
    mean: m.mean ? asNumbers(readNpy(join(dir, m.mean)).data as Float64Array) : undefined,
    ids: m.ids ? asNumbers(readNpy(join(dir, m.ids)).data as ArrayLike<number | bigint>) : undefined,
    texts: m.texts && offsets ? new BlobTexts(join(dir, m.texts.blob), offsets) : undefined,
  };
}

/** Stores up to this size are re-hashed on every open; larger ones when asked (hashing reads every byte, ~1.5 GB/s). */
export const VERIFY_ON_OPEN_BYTES = 256 * 2 ** 20;

/** Bytes of all the store's files, from its manifest. */
export function storeBytes(dir: string): number {
  return Object.values(readManifest(dir).files).reduce((a, f) => a + f.bytes, 0);
}

/** Re-hashes every file of the store against its manifest. */
export async function verifyStore(dir: string): Promise<void> {
  const m = readManifest(dir);
  for (const [name, f] of Object.entries(m.files)) await requireIntact(join(dir, name), f.sha256);
}
