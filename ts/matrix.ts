// Row-major matrices as flat TypedArrays: the shape checks, the fp32 view,
// and the one row normalisation every method uses.
import type { FloatRows } from './engine/addon.js';
import { halvesToFloats } from './engine/fp16.js';
import { firstNonFiniteRow } from './engine/vocab.js';
import { argError, ConceptLensError, describe, type ErrorCode } from './errors.js';

/** A row-major fp32 matrix. */
export interface Mat {
  data: Float32Array;
  rows: number;
  cols: number;
}

export type { FloatRows };

/** Float data as the engine reads it (fp16 as its bits in a Uint16Array), or float64. */
export type FloatData = FloatRows | Float64Array;

/** Rows of a flat array of width d; errors name the argument (ERR_SHAPE, ERR_DTYPE, ERR_ARG). */
export function rowsOf(data: ArrayLike<number> | Uint16Array, d: number, name: string): number {
  if (!Number.isInteger(d) || d < 1) throw argError('d', 'a positive integer', d);
  if (!ArrayBuffer.isView(data)) throw argError(name, 'a TypedArray', data, 'ERR_DTYPE');
  if (data.length % d !== 0)
    throw new ConceptLensError('ERR_SHAPE', `${name}: ${data.length} values are not a whole number of rows of width ${d}`);
  return data.length / d;
}

/** Rows `ids` of m, in that order, as a new matrix's data; an id past m's rows is an error naming `what` (ERR_SHAPE). */
export function gatherRows(m: Mat, ids: ArrayLike<number>, what: string): Float32Array {
  const out = new Float32Array(ids.length * m.cols);
  for (let r = 0; r < ids.length; r++) {
    const id = ids[r];
    if (!(id >= 0 && id < m.rows)) throw new ConceptLensError('ERR_SHAPE', `${what}: row ${id} is beyond its ${m.rows} rows`);
    out.set(m.data.subarray(id * m.cols, (id + 1) * m.cols), r * m.cols);
  }
  return out;
}

/** Checks a TypedArray's class: `name: expected Float32Array, got Float64Array(12)` (ERR_DTYPE). */
export function requireArray<T>(v: unknown, ctor: new (...a: never[]) => T, name: string): T {
  if (!(v instanceof ctor)) throw argError(name, ctor.name, v, 'ERR_DTYPE');
  return v;
}

/** The values as fp32 (fp16 decoded, fp64 rounded); a Float32Array is returned as is. */
export function toFloat32(m: FloatData): Float32Array {
  if (m instanceof Float32Array) return m;
  if (m instanceof Float64Array) return Float32Array.from(m);
  if (m instanceof Uint16Array) return halvesToFloats(m);
  throw argError('data', 'Float32Array, Uint16Array (fp16) or Float64Array', m, 'ERR_DTYPE');
}

/** Options of {@link normaliseRows}. */
export interface NormaliseOptions {
  /** Names the data in errors. */
  name?: string;
  /** Scale the rows of `x` itself instead of a copy. */
  inPlace?: boolean;
  /** A zero row stays zero ('keep', default) or is an error ('error': a direction is needed, e.g. for a cosine). */
  zeroRows?: 'keep' | 'error';
}

/** Each row of x (width d) scaled to unit L2 norm; a non-finite row is an error (ERR_NAN). */
export function normaliseRows(x: Float32Array, d: number, o: NormaliseOptions = {}): Float32Array {
  const name = o.name ?? 'embeddings';
  const n = rowsOf(x, d, name), out = o.inPlace ? x : new Float32Array(x.length);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let t = 0; t < d; t++) s += x[i * d + t] * x[i * d + t];
    if (!Number.isFinite(s)) requireFinite(x.subarray(i * d, (i + 1) * d), d, name, () => `${name}: row ${i}`);
    if (s === 0 && o.zeroRows === 'error') throw new ConceptLensError('ERR_ARG', `${name}: row ${i} is all zero; it has no direction`);
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let t = 0; t < d; t++) out[i * d + t] = x[i * d + t] * inv;
  }
  return out;
}

/** The first NaN/±Infinity as "row r, column c" of a width-d array, or undefined. */
export function firstNonFinite(x: ArrayLike<number>, d: number): { row: number; col: number } | undefined {
  for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i])) return { row: Math.floor(i / d), col: i % d };
  return undefined;
}

/** How an error names row i of the matrix `name`. */
type RowLabel = (i: number) => string;

/** Throws ERR_NAN naming `name` (or the row as rowLabel says), the row and the column of the first non-finite value. */
export function requireFinite(x: ArrayLike<number>, d: number, name: string, rowLabel: RowLabel = (i) => `${name}: row ${i}`): void {
  const bad = firstNonFinite(x, d);
  if (bad) throw nonFiniteError(rowLabel(bad.row), bad.col, x[bad.row * d + bad.col]);
}

/** requireFinite for fp32 rows or fp16 bits, the rows scanned by the engine and the bad one decoded. */
export function requireFiniteRows(x: FloatRows, d: number, name: string, rowLabel: RowLabel = (i) => `${name}: row ${i}`): void {
  const row = firstNonFiniteRow(x, d);
  if (row < 0) return;
  const v = x instanceof Uint16Array ? halvesToFloats(x.subarray(row * d, (row + 1) * d)) : x.subarray(row * d, (row + 1) * d);
  const col = v.findIndex((e) => !Number.isFinite(e));
  throw nonFiniteError(rowLabel(row), col, v[col]);
}

function nonFiniteError(row: string, col: number, value: number): ConceptLensError {
  return new ConceptLensError('ERR_NAN', `${row}, column ${col} is ${describe(value)}; expected finite values`);
}

/**
 * Checks labelled lists of indices into n items (split parts, feature groups): every entry an integer in [0, n), and
 * none in two places, within a list or across them. Errors name the list's label, the entry and its value.
 */
export function checkDisjointIndices(lists: [label: string, ids: ArrayLike<unknown>][], n: number, what: string, code: ErrorCode = 'ERR_ARG'): void {
  const owner = new Int32Array(n).fill(-1);
  lists.forEach(([at, ids], l) => {
    for (let k = 0; k < ids.length; k++) {
      const i = ids[k] as number;
      if (!(Number.isInteger(i) && i >= 0 && i < n)) throw argError(`${at}: entry ${k}`, `an integer ${what} in [0, ${n})`, ids[k], code);
      if (owner[i] >= 0) throw new ConceptLensError(code, `${at}: entry ${k}: ${what} ${i} appears twice${owner[i] === l ? '' : ` (also in ${lists[owner[i]][0]})`}`);
      owner[i] = l;
    }
  });
}

/** Checks that M's data holds rows × cols values: any other length would be read as another matrix (ERR_SHAPE). */
export function requireShape(M: { data: ArrayLike<number> | undefined; rows: number; cols: number }, name: string): void {
  if (M.data?.length !== M.rows * M.cols)
    throw new ConceptLensError('ERR_SHAPE', `${name}: expected ${M.rows} × ${M.cols} = ${M.rows * M.cols} values, got ${M.data?.length ?? describe(M.data)}`);
}

/** requireShape and requireFinite in one: M holds rows × cols values (ERR_SHAPE), all finite (ERR_NAN). */
export function requireFiniteMatrix(M: Mat, name: string): void {
  requireShape(M, name);
  requireFinite(M.data, M.cols, name);
}
