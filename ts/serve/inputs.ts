// Rows a request carries, as the fp32 matrix the engine reads: JSON arrays of
// numbers (their type already checked by the route's schema), or a body of
// little-endian float32 values whose row count is in the X-Rows header. Each
// error names the field, what was expected and what came.
import { argError, ConceptLensError } from '../errors.js';
import { firstNonFinite, requireFinite } from '../matrix.js';

/** The header that gives the row count of a float32 body. */
export const ROWS_HEADER = 'x-rows';

/** Where the width a request must match comes from, for messages ("the dimension of vocabulary 'lvis'"). */
export interface Width {
  dim: number;
  from: string;
}

/** JSON rows (each of `width.dim` numbers) as one fp32 matrix; a value too large for fp32 is an error naming it. */
export function jsonRows(rows: readonly (readonly number[])[], width: Width, field: string): Float32Array {
  const out = new Float32Array(rows.length * width.dim);
  rows.forEach((r, i) => {
    if (r.length !== width.dim) throw new ConceptLensError('ERR_SHAPE', `${field}[${i}]: expected ${width.dim} values (${width.from}), got ${r.length}`);
    out.set(r, i * width.dim);
  });
  // JSON has no NaN or Infinity: a non-finite value here is a number past float32's range.
  const bad = firstNonFinite(out, width.dim);
  if (bad) throw argError(`${field}[${bad.row}][${bad.col}]`, "a value within float32's range (|x| <= 3.4e38)", rows[bad.row][bad.col]);
  return out;
}

/** A float32 body of `rows` rows (from the X-Rows header) as an fp32 matrix, copied (a Buffer need not be aligned). */
export function binaryRows(body: Buffer, rows: number | undefined, width: Width, field: string): Float32Array {
  if (rows === undefined) throw argError(`${ROWS_HEADER} header`, 'the number of float32 rows in the body', rows);
  const bytes = rows * width.dim * 4;
  if (body.length !== bytes)
    throw new ConceptLensError('ERR_SHAPE', `${field}: expected ${rows} rows × ${width.dim} float32 values (${width.from}) = ${bytes} bytes, got ${body.length}`);
  const out = new Float32Array(rows * width.dim);
  new Uint8Array(out.buffer).set(body);
  requireFinite(out, width.dim, field);
  return out;
}
