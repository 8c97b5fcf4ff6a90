// The texts of a vocabulary's rows (concept names, captions), wherever they
// live: in memory, in per-shard files read on demand (LAION captions), or in
// a store's UTF-8 blob. A lookup reads only what holds the rows it asks for
// (the Parquet pages, the lines of a text file near them) and keeps nothing;
// bulk readers (de-duplication, writing a store) take the texts as UTF-8
// bytes, so hundreds of millions of them never become strings at once.
import { closeSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { isUtf8 } from 'node:buffer';
import { ConceptLensError, fileError, openError } from '../errors.js';
import { runText, type ByteRun, type ParquetColumn } from '../io/parquet.js';

export type { ByteRun };

/** The texts (concept names, captions) of a vocabulary's rows, wherever they live; read on demand. */
export interface Texts {
  /** Number of texts (one per vocabulary row). */
  readonly length: number;
  /** Texts of the given row ids, in that order. */
  lookup(ids: readonly number[]): Promise<string[]>;
  /** Every text in row order, in consecutive parts. */
  parts(): AsyncIterable<string[]>;
  /** Every text in row order as UTF-8 bytes, in consecutive runs (de-duplication hashes them, a store copies them). */
  runs?(): AsyncIterable<ByteRun>;
}

function checkIds(ids: readonly number[], length: number): void {
  for (const id of ids)
    if (!Number.isInteger(id) || id < 0 || id >= length)
      throw new ConceptLensError('ERR_ARG', `text id: expected an integer in [0, ${length}), got ${id}`);
}

/** Strings as one UTF-8 run. */
export function encodeRun(texts: readonly string[]): ByteRun {
  const parts = texts.map((t) => Buffer.from(t, 'utf8')), start = new Int32Array(texts.length), length = new Int32Array(texts.length);
  let at = 0;
  parts.forEach((b, i) => ((start[i] = at), (length[i] = b.length), (at += b.length)));
  return { bytes: Buffer.concat(parts), start, length };
}

/** The texts of a run, decoded. */
export const decodeRun = (r: ByteRun): string[] => Array.from({ length: r.start.length }, (_, i) => runText(r, i));

/** Every text of `texts` as UTF-8 runs: its own runs where it has them, else its parts encoded. */
export async function* textRuns(texts: Texts): AsyncIterable<ByteRun> {
  if (texts.runs) return yield* texts.runs();
  for await (const part of texts.parts()) yield encodeRun(part);
}

export class ArrayTexts implements Texts {
  constructor(private readonly a: readonly string[]) {}
  get length(): number {
    return this.a.length;
  }
  async lookup(ids: readonly number[]): Promise<string[]> {
    checkIds(ids, this.length);
    return ids.map((i) => this.a[i]);
  }
  async *parts(): AsyncIterable<string[]> {
    yield [...this.a];
  }
  async *runs(): AsyncIterable<ByteRun> {
    for (let i = 0; i < this.a.length; i += 1 << 16) yield encodeRun(this.a.slice(i, i + (1 << 16)));
  }
}

/** A run of consecutive rows whose texts one file holds. */
export interface TextPart {
  first: number;
  rows: number;
  /** Texts of the part's rows `local` (relative to `first`; ascending, distinct), reading only what holds them. */
  read(local: readonly number[]): Promise<string[]>;
  /** Every text of the part in order, as bytes. */
  runs(): AsyncIterable<ByteRun>;
}

/** Texts in consecutive parts (one per shard file, or one file for all); a lookup reads only near the rows it asks for. */
export class PartTexts implements Texts {
  readonly length: number;

  constructor(private readonly list: readonly TextPart[]) {
    this.length = list.reduce((a, p) => a + p.rows, 0);
  }

  async lookup(ids: readonly number[]): Promise<string[]> {
    checkIds(ids, this.length);
    const out = new Array<string>(ids.length), byPart = new Map<number, number[]>();
    ids.forEach((id, j) => {
      let lo = 0, hi = this.list.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (this.list[mid].first <= id) lo = mid;
        else hi = mid - 1;
      }
      let js = byPart.get(lo);
      if (!js) byPart.set(lo, (js = []));
      js.push(j);
    });
    for (const [p, js] of byPart) {
      const part = this.list[p], local = [...new Set(js.map((j) => ids[j] - part.first))].sort((a, b) => a - b);
      const texts = await part.read(local), at = new Map(local.map((l, i) => [l, i]));
      for (const j of js) out[j] = texts[at.get(ids[j] - part.first)!];
    }
    return out;
  }

  async *parts(): AsyncIterable<string[]> {
    for await (const r of this.runs()) yield decodeRun(r);
  }

  async *runs(): AsyncIterable<ByteRun> {
    for (const p of this.list) yield* p.runs();
  }
}

/** A Parquet file's string column as a part. */
export function parquetPart(first: number, column: ParquetColumn): TextPart {
  return { first, rows: column.rows, read: (local) => column.strings(local), runs: () => column.runs() };
}

/** Texts of the kept rows only (de-duplication): row i is `source` row ids[i]. */
export class SubsetTexts implements Texts {
  constructor(private readonly source: Texts, private readonly ids: Float64Array) {}
  get length(): number {
    return this.ids.length;
  }
  lookup(ids: readonly number[]): Promise<string[]> {
    checkIds(ids, this.length);
    return this.source.lookup(ids.map((i) => this.ids[i]));
  }
  async *parts(): AsyncIterable<string[]> {
    for await (const r of this.runs()) yield decodeRun(r);
  }
  async *runs(): AsyncIterable<ByteRun> {
    let at = 0, k = 0;
    for await (const r of textRuns(this.source)) {
      const n = r.start.length, k0 = k;
      while (k < this.ids.length && this.ids[k] < at + n) k++;
      const pick = this.ids.subarray(k0, k);
      yield { bytes: r.bytes, start: Int32Array.from(pick, (id) => r.start[id - at]), length: Int32Array.from(pick, (id) => r.length[id - at]) };
      at += n;
    }
  }
}

/** Lines per anchor of a {@link LineFile}: a lookup reads at most this many lines around each row it asks for. */
const LINES_PER_ANCHOR = 1024;
const READ_BYTES = 1 << 22;

/**
 * A UTF-8 text file's lines, split as readLines splits them (on \n, \r\n or a bare \r; a leading BOM dropped; a final
 * newline adding no line), with the byte offset of every 1024th line kept (8 bytes per 1024 lines), so a line is read
 * with one small read. Lines are checked as UTF-8 when they are read.
 */
export class LineFile {
  private constructor(private readonly path: string, readonly lines: number, private readonly anchors: Float64Array,
    private readonly size: number) {}

  /** Indexes the file in one streaming pass. */
  static index(path: string): LineFile {
    const anchors: number[] = [], lines = new LineScan();
    let size = 0;
    eachChunk(path, (buf, at) => {
      // The BOM is no line's text.
      const skip = at === 0 && buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf ? 3 : 0;
      lines.scan(buf.subarray(skip), at + skip, (start, line) => line % LINES_PER_ANCHOR === 0 && anchors.push(start));
      size = at + buf.length;
    });
    return new LineFile(path, lines.count, Float64Array.from(anchors), size);
  }

  /** Lines `local` (ascending, distinct) as text. */
  async read(local: readonly number[]): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < local.length;) {
      const a = Math.floor(local[i] / LINES_PER_ANCHOR);
      let j = i;
      while (j < local.length && Math.floor(local[j] / LINES_PER_ANCHOR) === a) j++;
      const run = await this.anchorRun(a);
      for (const l of local.slice(i, j)) out.push(this.text(run, l - a * LINES_PER_ANCHOR, this.anchors[a]));
      i = j;
    }
    return out;
  }

  /** Every line in order, as bytes, a few MiB at a time. */
  async *runs(): AsyncIterable<ByteRun> {
    const per = Math.max(1, Math.floor(READ_BYTES / Math.max(1, this.size / Math.max(1, this.anchors.length))));
    for (let a = 0; a < this.anchors.length; a += per) {
      const run = await this.anchorRun(a, Math.min(this.anchors.length, a + per));
      if (!isUtf8(run.bytes)) throw fileError(this.path, `not valid UTF-8 (in bytes ${this.anchors[a]}..${this.end(a + per)})`);
      yield run;
    }
  }

  private end(a: number): number {
    return a < this.anchors.length ? this.anchors[a] : this.size;
  }

  /** The lines of anchors [a, b) as spans. */
  private async anchorRun(a: number, b = a + 1): Promise<ByteRun> {
    const from = this.anchors[a], bytes = new Uint8Array(this.end(b) - from), fh = await open(this.path, 'r');
    try {
      for (let done = 0; done < bytes.length;) {
        const { bytesRead } = await fh.read(bytes, done, bytes.length - done, from + done);
        if (bytesRead === 0) throw fileError(this.path, `changed since it was opened (ends before byte ${from + bytes.length})`);
        done += bytesRead;
      }
    } finally {
      await fh.close();
    }
    const n = Math.min((b - a) * LINES_PER_ANCHOR, this.lines - a * LINES_PER_ANCHOR);
    const start = new Int32Array(n), length = new Int32Array(n), scan = new LineScan();
    scan.scan(bytes, 0, (s, i) => i < n && (start[i] = s), (e, i) => i < n && (length[i] = e - start[i]));
    if (scan.open && scan.count <= n) length[scan.count - 1] = bytes.length - start[scan.count - 1];  // the file's last line, unended
    return { bytes, start, length };
  }

  /** Line i of a run read from byte `from`, checked as UTF-8. */
  private text(run: ByteRun, i: number, from: number): string {
    if (!isUtf8(run.bytes.subarray(run.start[i], run.start[i] + run.length[i])))
      throw fileError(this.path, `not valid UTF-8 (the line at byte ${from + run.start[i]})`);
    return runText(run, i);
  }
}

/**
 * Lines in consecutive chunks of a text, split as splitLines splits it: \n, \r\n (also across chunks) or a bare \r
 * ends a line, and a final line break starts no line.
 */
class LineScan {
  /** Lines started so far. */
  count = 0;
  /** Whether the last line started has not ended (no line break yet). */
  open = false;
  private afterCr = false;

  /** onStart(offset, line) at each line's first byte, onEnd(offset, line) at its line break (offsets from `at`). */
  scan(buf: Uint8Array, at: number, onStart: (start: number, line: number) => unknown,
    onEnd: (end: number, line: number) => unknown = () => {}): void {
    for (let i = 0; i < buf.length; i++) {
      const c = buf[i];
      if (!this.open) {
        const crlf = this.afterCr && c === 10;
        this.afterCr = false;
        if (crlf) continue;
        onStart(at + i, this.count++);
        this.open = true;
      }
      if (c === 10 || c === 13) {
        onEnd(at + i, this.count - 1);
        this.open = false;
        this.afterCr = c === 13;
      }
    }
  }
}

/** Reads the file in chunks, calling fn(chunk, offset). */
function eachChunk(path: string, fn: (buf: Uint8Array, at: number) => void): void {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw openError(path, e);
  }
  const buf = Buffer.allocUnsafe(READ_BYTES);
  try {
    for (let at = 0, n; (n = readSync(fd, buf, 0, buf.length, at)) > 0; at += n) fn(buf.subarray(0, n), at);
  } finally {
    closeSync(fd);
  }
}
