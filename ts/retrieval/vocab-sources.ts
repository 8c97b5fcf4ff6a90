// Where a vocabulary's rows and texts come from: one .npy (+ names), or a
// directory of shards in the LAION layout: text_emb_{i}.npy, i = 0..n-1 with
// no gap, with captions in metadata_{i}.parquet (column `caption`), in
// captions_{i}.txt, or in one captions.txt for all rows. This is the one LAION
// shard reader (search, vocab build and FALCON's captions all use it). Row
// counts of the captions are checked at open (a Parquet footer, or one pass
// that indexes a text file's lines); their texts are read on demand, only
// the pages or lines that hold the rows asked for.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ConceptLensError, fileError } from '../errors.js';
import { readNpyHeader, type NpyHeader } from '../io/npy.js';
import { ParquetColumn } from '../io/parquet.js';
import { readLines } from '../io/text.js';
import { ArrayTexts, LineFile, PartTexts, parquetPart, type TextPart, type Texts } from './texts.js';
import { dimOf, type Shard } from './vocab-blocks.js';

export interface Source {
  dim: number;
  dtype: 'float32' | 'float16';
  shards: Shard[];
  texts?: Texts;
}

function embeddingHeader(path: string, like?: NpyHeader): NpyHeader {
  const h = readNpyHeader(path);
  if (h.shape.length !== 2 || (h.dtype !== 'float32' && h.dtype !== 'float16'))
    throw new ConceptLensError('ERR_DTYPE', `${path}: expected a 2-D float16 or float32 array, got ${h.dtype} of shape [${h.shape.join(', ')}]`);
  if (h.shape[1] === 0) throw new ConceptLensError('ERR_SHAPE', `${path}: rows have 0 columns`);
  if (like && dimOf(h) !== dimOf(like))
    throw new ConceptLensError('ERR_SHAPE', `${path}: dimension ${dimOf(h)}, expected ${dimOf(like)} (that of ${like.path})`);
  if (like && h.dtype !== like.dtype)
    throw new ConceptLensError('ERR_DTYPE', `${path}: dtype ${h.dtype}, expected ${like.dtype} (that of ${like.path}); convert the shards to one dtype`);
  return h;
}

function requireCount(textsPath: string, got: number, rows: number, what: string): void {
  if (got !== rows) throw fileError(textsPath, `${got} captions for ${rows} embedding rows (${what})`);
}

function source(headers: NpyHeader[], texts?: Texts): Source {
  const h0 = headers[0];
  return {
    dim: dimOf(h0),
    dtype: h0.dtype as Source['dtype'],
    shards: headers.map((header, chunk) => ({ header, rows: header.shape[0], chunk })),
    texts,
  };
}

/** One .npy; names: a file (one per line) or the names themselves. */
export function openNpy(path: string, names?: string | readonly string[]): Source {
  const h = embeddingHeader(path);
  if (names === undefined) return source([h]);
  const list = typeof names === 'string' ? readLines(names) : names;
  requireCount(typeof names === 'string' ? names : 'names', list.length, h.shape[0], path);
  return source([h], new ArrayTexts(list));
}

export const isLaionDir = (dir: string) => readdirSync(dir).some((f) => /^text_emb_\d+\.npy$/.test(f));

/** Shard numbers 0..n-1 of the text_emb_{i}.npy files; a gap is an error. */
function shardNumbers(dir: string): number[] {
  const ids = readdirSync(dir).map((f) => /^text_emb_(\d+)\.npy$/.exec(f)?.[1]).filter((s): s is string => s !== undefined)
    .map(Number).sort((a, b) => a - b);
  if (ids.length === 0) throw fileError(dir, 'no text_emb_{i}.npy shards');
  const gap = ids.findIndex((id, i) => id !== i);
  if (gap >= 0) throw fileError(dir, `shard text_emb_${gap}.npy is missing (found text_emb_${ids[gap]}.npy next); shards are numbered 0..n-1 without gaps`);
  return ids;
}

/** Per-shard caption files, all present or all absent. */
function perShard(files: string[]): string[] | undefined {
  const present = files.filter((p) => existsSync(p));
  if (present.length === 0) return undefined;
  const missing = files.find((p) => !existsSync(p));
  if (missing) throw fileError(missing, 'missing (other shards have one)');
  return files;
}

/** A text file's lines as the texts of `rows` rows from `first`. */
function linePart(path: string, first: number, rows: number, what: string): TextPart {
  const lines = LineFile.index(path);
  requireCount(path, lines.lines, rows, what);
  return { first, rows, read: (local) => lines.read(local), runs: () => lines.runs() };
}

async function laionTexts(dir: string, headers: NpyHeader[]): Promise<Texts | undefined> {
  const n = headers.length, firsts: number[] = [];
  let rows = 0;
  for (const h of headers) firsts.push(rows), (rows += h.shape[0]);
  const parquets = perShard(headers.map((_, i) => join(dir, `metadata_${i}.parquet`)));
  if (parquets) {
    const parts: TextPart[] = [];
    for (let i = 0; i < n; i++) {
      const column = await ParquetColumn.open(parquets[i], 'caption');
      requireCount(parquets[i], column.rows, headers[i].shape[0], headers[i].path);
      parts.push(parquetPart(firsts[i], column));
    }
    return new PartTexts(parts);
  }
  const txts = perShard(headers.map((_, i) => join(dir, `captions_${i}.txt`)));
  if (txts) return new PartTexts(txts.map((t, i) => linePart(t, firsts[i], headers[i].shape[0], headers[i].path)));
  const all = join(dir, 'captions.txt');
  if (!existsSync(all)) return undefined;
  return new PartTexts([linePart(all, 0, rows, `all ${n} text_emb shards`)]);
}

export async function openLaionDir(dir: string): Promise<Source> {
  const headers: NpyHeader[] = [];
  for (const i of shardNumbers(dir)) headers.push(embeddingHeader(join(dir, `text_emb_${i}.npy`), headers[0]));
  return source(headers, await laionTexts(dir, headers));
}
