// One string column of a Parquet file (LAION metadata shards keep captions in
// a `caption` column), read a page at a time so that a lookup decompresses
// and decodes only the pages holding the rows it asks for, and makes strings
// of those rows only. The footer is read with hyparquet; pages are walked
// here: data pages v1 and v2, PLAIN or dictionary encoded, optional values
// (null reads as ''), uncompressed, Snappy (in the engine), gzip or brotli.
// Other encodings and nested columns are read through hyparquet.
import { open as openFile, type FileHandle } from 'node:fs/promises';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { asyncBufferFromFile, parquetMetadataAsync, parquetRead, parquetSchema, type ColumnChunk, type FileMetaData, type PageHeader } from 'hyparquet';
import { parquetHeader } from 'hyparquet/src/column.js';
import { plainSpans, snappyUncompress } from '../engine/vocab.js';
import { fileError, openError } from '../errors.js';

type AsyncBuffer = Awaited<ReturnType<typeof asyncBufferFromFile>>;

/** Row groups a lookup decodes at once (each with all its wanted pages in flight). */
const GROUPS_AT_ONCE = 4;

/** Texts as UTF-8 bytes: text i is bytes[start[i], start[i] + length[i]) (length 0 for null). */
export interface ByteRun {
  bytes: Uint8Array;
  start: Int32Array;
  length: Int32Array;
}

const utf8 = new TextDecoder();

/** Text i of a run. */
export const runText = (r: ByteRun, i: number): string => utf8.decode(r.bytes.subarray(r.start[i], r.start[i] + r.length[i]));

async function footer(path: string): Promise<{ file: AsyncBuffer; metadata: FileMetaData }> {
  let file: AsyncBuffer;
  try {
    file = await asyncBufferFromFile(path);
  } catch (e) {
    throw openError(path, e);
  }
  try {
    return { file, metadata: await parquetMetadataAsync(file) };
  } catch (e) {
    throw fileError(path, `not a readable Parquet file (${(e as Error).message})`, e);
  }
}

function requireColumn(path: string, metadata: FileMetaData, column: string): void {
  const columns = parquetSchema(metadata).children.map((c) => c.element.name);
  if (!columns.includes(column))
    throw fileError(path, `no '${column}' column; it has ${columns.map((c) => `'${c}'`).join(', ') || 'no columns'}`);
}

/** Rows of the file, and that `column` exists, from the footer only. */
export async function parquetRows(path: string, column: string): Promise<number> {
  const { metadata } = await footer(path);
  requireColumn(path, metadata, column);
  return Number(metadata.num_rows);
}

/** Values of the RLE / bit-packing hybrid (definition levels, dictionary indices). */
function rleHybrid(b: Uint8Array, bitWidth: number, count: number, what: string): Int32Array {
  const out = new Int32Array(count), bytes = (bitWidth + 7) >> 3, mask = bitWidth === 32 ? -1 : (1 << bitWidth) - 1;
  let p = 0, n = 0;
  while (n < count) {
    let header = 0;
    for (let shift = 0; ; shift += 7) {
      if (p >= b.length) throw fileError(what, 'a level or index run is cut off');
      const c = b[p++];
      header += (c & 0x7f) * 2 ** shift;
      if (c < 0x80) break;
    }
    if (header % 2 === 0) {  // a run of one value
      let v = 0;
      for (let i = 0; i < bytes; i++) v |= b[p + i] << (8 * i);
      p += bytes;
      out.fill(v, n, Math.min(count, n + header / 2));
      n += header / 2;
    } else {  // groups of 8 bit-packed values, least significant bit first
      const values = ((header - 1) / 2) * 8;
      for (let i = 0, bit = p * 8; i < values && n < count; i++, bit += bitWidth, n++) {
        let v = 0;
        for (let k = 0; k < bitWidth; k++) v |= ((b[(bit + k) >> 3] >> ((bit + k) & 7)) & 1) << k;
        out[n] = v & mask;
      }
      p += ((header - 1) / 2) * bitWidth;
    }
  }
  return out;
}

interface Page {
  header: PageHeader;
  body: Uint8Array;
  /** First row of the page within its row group, and its rows. */
  first: number;
  rows: number;
}

interface Group {
  first: number;
  rows: number;
  chunk: ColumnChunk;
}

/**
 * One string column of a Parquet file, read by pages: {@link strings} decodes only the pages holding the rows asked
 * for, {@link runs} streams every row as bytes (for hashing or copying without making strings).
 */
export class ParquetColumn {
  private constructor(private readonly path: string, private readonly column: string, private readonly file: AsyncBuffer,
    private readonly metadata: FileMetaData, private readonly groups: Group[], private readonly optional: boolean,
    private readonly flat: boolean) {}

  /** Opens `column` of the file from its footer; errors name the file and list its columns. */
  static async open(path: string, column: string): Promise<ParquetColumn> {
    const { file, metadata } = await footer(path);
    requireColumn(path, metadata, column);
    const node = parquetSchema(metadata).children.find((c) => c.element.name === column)!;
    const flat = node.children.length === 0 && node.element.type === 'BYTE_ARRAY' && node.element.repetition_type !== 'REPEATED';
    const index = metadata.row_groups[0]?.columns.findIndex((c) => c.meta_data?.path_in_schema[0] === column) ?? -1;
    let first = 0;
    const groups = metadata.row_groups.map((g) => {
      const rows = Number(g.num_rows);
      return { first: (first += rows) - rows, rows, chunk: g.columns[index] };
    });
    return new ParquetColumn(path, column, file, metadata, groups, node.element.repetition_type === 'OPTIONAL', flat && index >= 0);
  }

  /** Rows of the column. */
  get rows(): number {
    return Number(this.metadata.num_rows);
  }

  /**
   * The values of `rows` (ascending, distinct), null as '', reading only the pages that hold them; row groups a few at
   * a time and their pages all at once, so decompression runs on every core.
   */
  async strings(rows: readonly number[]): Promise<string[]> {
    const jobs: (() => Promise<string[]>)[] = [];
    for (let i = 0, g = 0; i < rows.length; g++) {
      const group = this.groups[g];
      if (!group) throw fileError(this.path, `row ${rows[i]} is past its ${this.rows} rows`);
      let j = i;
      while (j < rows.length && rows[j] < group.first + group.rows) j++;
      if (j === i) continue;
      const wanted = rows.slice(i, j).map((r) => r - group.first), holds = (p: Page, r: number) => r >= p.first && r < p.first + p.rows;
      jobs.push(async () => {
        const pages = await this.pages(group, (p) => wanted.some((r) => holds(p, r)));
        return wanted.map((r) => {
          const { page, run } = pages.find(({ page }) => holds(page, r))!;
          return runText(run, r - page.first);
        });
      });
      i = j;
    }
    const out: string[] = [];
    for (let k = 0; k < jobs.length; k += GROUPS_AT_ONCE) for (const part of await Promise.all(jobs.slice(k, k + GROUPS_AT_ONCE).map((f) => f()))) out.push(...part);
    return out;
  }

  /** Every row in order, a row group at a time, as bytes. */
  async *runs(): AsyncIterable<ByteRun> {
    for (const group of this.groups) for (const { run } of await this.pages(group, () => true)) yield run;
  }

  /** The decoded pages of a row group that `want` accepts, in order. */
  private async pages(group: Group, want: (p: Page) => boolean): Promise<{ page: Page; run: ByteRun }[]> {
    if (!this.flat) {
      const out: { page: Page; run: ByteRun }[] = [];
      for (let r0 = 0; r0 < group.rows; r0 += 1 << 16) {
        const page = { first: r0, rows: Math.min(1 << 16, group.rows - r0) } as Page;
        if (want(page)) out.push({ page, run: await this.hyparquetRun(group.first + page.first, page.rows) });
      }
      return out;
    }
    const meta = group.chunk.meta_data!, what = `${this.path}: column '${this.column}'`;
    const start = Number(meta.dictionary_page_offset || meta.data_page_offset), bytes = await this.read(start, Number(meta.total_compressed_size));
    let dictionary: Promise<ByteRun> | undefined, first = 0;
    const decoded: Promise<{ page: Page; run: ByteRun }>[] = [];
    for (let at = 0; at < bytes.length && first < group.rows;) {
      const reader = { view: new DataView(bytes.buffer, bytes.byteOffset + at, bytes.length - at), offset: 0 };
      const header = parquetHeader(reader), body = bytes.subarray(at + reader.offset, at + reader.offset + header.compressed_page_size);
      at += reader.offset + header.compressed_page_size;
      if (header.type === 'DICTIONARY_PAGE') {
        const count = header.dictionary_page_header!.num_values;
        dictionary = this.decompress(body, header.uncompressed_page_size, meta.codec).then((b) => this.plain(b, count, what));
        dictionary.catch(() => {});  // reported by the pages that use it
        continue;
      }
      if (header.type !== 'DATA_PAGE' && header.type !== 'DATA_PAGE_V2') continue;
      const rows = header.data_page_header_v2?.num_rows ?? header.data_page_header!.num_values;
      const page = { header, body, first, rows }, dict = dictionary;
      first += rows;
      if (want(page)) decoded.push(this.decode(page, group, meta.codec, dict, what).then((run) => ({ page, run })));
    }
    return Promise.all(decoded);
  }

  /** A data page's rows as spans of its values (or of the dictionary's). */
  private async decode(p: Page, group: Group, codec: string, dictionary: Promise<ByteRun> | undefined, what: string): Promise<ByteRun> {
    const v2 = p.header.data_page_header_v2, encoding = v2?.encoding ?? p.header.data_page_header!.encoding;
    let levels: Uint8Array | undefined, values: Uint8Array;
    if (v2) {
      const skip = v2.repetition_levels_byte_length, defs = v2.definition_levels_byte_length;
      levels = this.optional ? p.body.subarray(skip, skip + defs) : undefined;
      const rest = p.body.subarray(skip + defs);
      values = v2.is_compressed === false ? rest : await this.decompress(rest, p.header.uncompressed_page_size - skip - defs, codec);
    } else {
      const body = await this.decompress(p.body, p.header.uncompressed_page_size, codec);
      const defs = this.optional ? new DataView(body.buffer, body.byteOffset).getUint32(0, true) : 0;
      levels = this.optional ? body.subarray(4, 4 + defs) : undefined;
      values = body.subarray(this.optional ? 4 + defs : 0);
    }
    const defined = levels && rleHybrid(levels, 1, p.rows, what);
    const count = defined ? defined.reduce((a, d) => a + d, 0) : p.rows;
    let run: ByteRun;
    if (encoding === 'PLAIN') run = this.plain(values, count, what);
    else if ((encoding === 'RLE_DICTIONARY' || encoding === 'PLAIN_DICTIONARY') && dictionary) {
      const idx = rleHybrid(values.subarray(1), values[0], count, what), dict = await dictionary;
      run = { bytes: dict.bytes, start: idx.map((i) => dict.start[i]), length: idx.map((i) => dict.length[i]) };
    } else return this.hyparquetRun(group.first + p.first, p.rows);
    return defined ? spread(run, defined) : run;
  }

  private plain(values: Uint8Array, count: number, what: string): ByteRun {
    const start = new Int32Array(count), length = new Int32Array(count);
    plainSpans(values, count, start, length, what);
    return { bytes: values, start, length };
  }

  private async decompress(src: Uint8Array, size: number, codec: string): Promise<Uint8Array> {
    if (codec === 'UNCOMPRESSED') return src;
    if (codec === 'SNAPPY') {
      const out = Buffer.allocUnsafe(size);  // every byte is written, or it throws
      await snappyUncompress(src, out, `${this.path}: column '${this.column}'`);
      return out;
    }
    if (codec === 'GZIP') return gunzipSync(src);
    if (codec === 'BROTLI') return brotliDecompressSync(src);
    throw fileError(this.path, `column '${this.column}' is compressed with ${codec}; supported: uncompressed, Snappy, gzip, brotli`);
  }

  private async read(at: number, bytes: number): Promise<Uint8Array> {
    let fh: FileHandle;
    try {
      fh = await openFile(this.path, 'r');
    } catch (e) {
      throw openError(this.path, e);
    }
    try {
      const out = new Uint8Array(bytes);
      const { bytesRead } = await fh.read(out, 0, bytes, at);
      if (bytesRead !== bytes) throw fileError(this.path, `truncated: column '${this.column}' ends at byte ${at + bytesRead}, the footer says ${at + bytes}`);
      return out;
    } finally {
      await fh.close();
    }
  }

  /** Rows [first, first + n) through hyparquet (nested columns, other encodings), re-encoded as UTF-8. */
  private async hyparquetRun(first: number, n: number): Promise<ByteRun> {
    let rows: unknown[][] = [];
    await parquetRead({ file: this.file, metadata: this.metadata, columns: [this.column], rowStart: first, rowEnd: first + n, onComplete: (r: unknown[][]) => { rows = r; } });
    const parts = rows.map((r) => Buffer.from(r[0] == null ? '' : String(r[0]), 'utf8'));
    const start = new Int32Array(n), length = new Int32Array(n);
    let at = 0;
    parts.forEach((b, i) => ((start[i] = at), (length[i] = b.length), (at += b.length)));
    return { bytes: Buffer.concat(parts), start, length };
  }
}

/** Spans of the non-null values placed at the rows whose definition level is 1; nulls get empty spans. */
function spread(values: ByteRun, defined: Int32Array): ByteRun {
  const start = new Int32Array(defined.length), length = new Int32Array(defined.length);
  for (let i = 0, k = 0; i < defined.length; i++)
    if (defined[i]) (start[i] = values.start[k]), (length[i] = values.length[k++]);
  return { bytes: values.bytes, start, length };
}
