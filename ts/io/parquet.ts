// One string column of a Parquet file (LAION metadata shards keep captions
// in a `caption` column), read with hyparquet.
import { asyncBufferFromFile, parquetMetadataAsync, parquetRead, parquetSchema } from 'hyparquet';

/** The values of `column` as strings (null becomes ''); errors name the file and its columns. */
export async function readParquetStrings(path: string, column: string): Promise<string[]> {
  let file;
  try {
    file = await asyncBufferFromFile(path);
  } catch (e) {
    throw new Error(`${path}: cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  let metadata;
  try {
    metadata = await parquetMetadataAsync(file);
  } catch (e) {
    throw new Error(`${path}: not a readable Parquet file (${(e as Error).message})`);
  }
  const columns = parquetSchema(metadata).children.map((c) => c.element.name);
  if (!columns.includes(column))
    throw new Error(`${path}: no '${column}' column; it has ${columns.map((c) => `'${c}'`).join(', ') || 'no columns'}`);
  let rows: unknown[][] = [];
  await parquetRead({ file, metadata, columns: [column], onComplete: (r: unknown[][]) => { rows = r; } });
  return rows.map((r) => (r[0] == null ? '' : String(r[0])));
}
