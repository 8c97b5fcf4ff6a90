// One string column of a Parquet file (LAION metadata shards keep captions
// in a `caption` column), read with hyparquet; the row count comes from the
// footer alone.
import { asyncBufferFromFile, parquetMetadataAsync, parquetRead, parquetSchema, type FileMetaData } from 'hyparquet';
import { fileError } from '../errors.js';

type AsyncBuffer = Awaited<ReturnType<typeof asyncBufferFromFile>>;

async function open(path: string): Promise<{ file: AsyncBuffer; metadata: FileMetaData }> {
  let file: AsyncBuffer;
  try {
    file = await asyncBufferFromFile(path);
  } catch (e) {
    throw fileError(path, `cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, e);
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
  const { metadata } = await open(path);
  requireColumn(path, metadata, column);
  return Number(metadata.num_rows);
}

/** The values of `column` as strings (null becomes ''); errors name the file and its columns. */
export async function readParquetStrings(path: string, column: string): Promise<string[]> {
  const { file, metadata } = await open(path);
  requireColumn(path, metadata, column);
  let rows: unknown[][] = [];
  await parquetRead({ file, metadata, columns: [column], onComplete: (r: unknown[][]) => { rows = r; } });
  return rows.map((r) => (r[0] == null ? '' : String(r[0])));
}
