// Where a vocabulary's rows and texts come from: one .npy (+ a names file),
// or a directory of shards in the LAION layout (text_emb_{i}.npy with
// metadata_{i}.parquet captions, or one captions.txt for all rows).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readNpyHeader, type NpyHeader } from '../io/npy.js';
import { readParquetStrings } from '../io/parquet.js';
import { dimOf, type Shard } from './vocab-blocks.js';

export interface Source {
  dim: number;
  dtype: 'float32' | 'float16';
  shards: Shard[];
  /** One per row of all shards, or absent. */
  texts?: string[];
}

/** Lines of a text file; a final newline does not make an extra empty line. */
export function readLines(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const lines = text.split(/\r\n|\r|\n/);
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

function embeddingHeader(path: string, like?: NpyHeader): NpyHeader {
  const h = readNpyHeader(path);
  if (h.shape.length !== 2 || (h.dtype !== 'float32' && h.dtype !== 'float16'))
    throw new Error(`${path}: expected a 2-D float16 or float32 array, got ${h.dtype} of shape [${h.shape.join(', ')}]`);
  if (like && dimOf(h) !== dimOf(like))
    throw new Error(`${path}: dimension ${dimOf(h)}, expected ${dimOf(like)} (that of ${like.path})`);
  if (like && h.dtype !== like.dtype)
    throw new Error(`${path}: dtype ${h.dtype}, expected ${like.dtype} (that of ${like.path}); convert the shards to one dtype`);
  return h;
}

function requireCount(textsPath: string, got: number, rows: number, what: string): void {
  if (got !== rows) throw new Error(`${textsPath}: ${got} captions for ${rows} embedding rows (${what})`);
}

function source(headers: NpyHeader[], texts?: string[]): Source {
  const h0 = headers[0];
  return {
    dim: dimOf(h0),
    dtype: h0.dtype as Source['dtype'],
    shards: headers.map((header, chunk) => ({ header, rows: header.shape[0], chunk })),
    texts,
  };
}

export function openNpy(path: string, namesPath?: string): Source {
  const h = embeddingHeader(path);
  const texts = namesPath === undefined ? undefined : readLines(namesPath);
  if (texts) requireCount(namesPath!, texts.length, h.shape[0], path);
  return source([h], texts);
}

export const isLaionDir = (dir: string) => readdirSync(dir).some((f) => /^text_emb_\d+\.npy$/.test(f));

export async function openLaionDir(dir: string): Promise<Source> {
  const ids = readdirSync(dir)
    .map((f) => /^text_emb_(\d+)\.npy$/.exec(f)?.[1])
    .filter((s): s is string => s !== undefined)
    .sort((a, b) => Number(a) - Number(b));
  if (ids.length === 0) throw new Error(`${dir}: no text_emb_{i}.npy shards`);
  const headers: NpyHeader[] = [];
  for (const i of ids) headers.push(embeddingHeader(join(dir, `text_emb_${i}.npy`), headers[0]));
  const rows = headers.reduce((a, h) => a + h.shape[0], 0);
  const captionsTxt = join(dir, 'captions.txt');
  const parquets = ids.map((i) => join(dir, `metadata_${i}.parquet`));
  const present = parquets.filter((p) => existsSync(p));
  if (present.length > 0) {
    if (present.length < parquets.length)
      throw new Error(`${parquets.find((p) => !existsSync(p))}: missing (other shards have metadata parquet files)`);
    const texts: string[] = [];
    for (let s = 0; s < ids.length; s++) {
      const caps = await readParquetStrings(parquets[s], 'caption');
      requireCount(parquets[s], caps.length, headers[s].shape[0], headers[s].path);
      for (const c of caps) texts.push(c);
    }
    return source(headers, texts);
  }
  if (existsSync(captionsTxt)) {
    const texts = readLines(captionsTxt);
    requireCount(captionsTxt, texts.length, rows, `all ${ids.length} text_emb shards`);
    return source(headers, texts);
  }
  return source(headers);
}
