// The checked readers of arrays from .npy files that every command and method
// uses: rank, dtype, width against a partner, and finiteness, each an error
// naming the file, what was expected and what was found.
import { ConceptLensError, fileError } from '../errors.js';
import type { FloatRows } from '../engine/addon.js';
import { requireFinite, requireFiniteRows, toFloat32, type Mat } from '../matrix.js';
import { readNpy, type NdArray } from './npy.js';

/** The float dtypes a .npy array of values may hold. */
export type FloatDType = 'float32' | 'float16' | 'float64';

/** Checks {@link readFloatMatrix} and {@link readMatrix} apply to the array read; each failure is an error naming the file. */
export interface MatrixReadOptions {
  /** What the file holds, for messages ("activations", "concept embeddings"). */
  what?: string;
  /** Accepted dtypes (default float32, float16, float64). */
  dtypes?: readonly FloatDType[];
  /** Required width, and what it comes from ("the width of V.npy"). */
  cols?: number;
  colsFrom?: string;
  /** Required row count, and what it comes from. */
  rows?: number;
  rowsFrom?: string;
  /** Allow zero rows (default: an empty matrix is an error). */
  allowEmpty?: boolean;
  /** Skip the NaN/Inf check (default: checked). */
  allowNonFinite?: boolean;
}

const label = (path: string, o: { what?: string }) => (o.what ? `${o.what} ${path}` : path);

/** A 2-D float .npy checked against `o`, as it is stored (fp16 stays fp16 bits). */
export function readFloatMatrix(path: string, o: MatrixReadOptions = {}): NdArray & { rows: number; cols: number } {
  const a = readNpy(path), name = label(path, o);
  const dtypes = o.dtypes ?? ['float32', 'float16', 'float64'];
  if (a.shape.length !== 2) throw fileError(name, `expected a 2-D array (rows × columns), got shape [${a.shape.join(', ')}]`);
  if (!(dtypes as readonly string[]).includes(a.dtype))
    throw new ConceptLensError('ERR_DTYPE', `${name}: expected ${dtypes.join(' or ')} data, got ${a.dtype}`);
  const [rows, cols] = a.shape;
  if (o.cols !== undefined && cols !== o.cols)
    throw new ConceptLensError('ERR_SHAPE', `${name}: expected ${o.cols} columns${o.colsFrom ? ` (${o.colsFrom})` : ''}, got ${cols}`);
  if (o.rows !== undefined && rows !== o.rows)
    throw new ConceptLensError('ERR_SHAPE', `${name}: expected ${o.rows} rows${o.rowsFrom ? ` (${o.rowsFrom})` : ''}, got ${rows}`);
  if (rows === 0 && !o.allowEmpty) throw new ConceptLensError('ERR_SHAPE', `${name}: has 0 rows; expected at least one`);
  if (cols === 0) throw new ConceptLensError('ERR_SHAPE', `${name}: has 0 columns; expected at least one`);
  if (!o.allowNonFinite) {
    if (a.dtype === 'float64') requireFinite(a.data as Float64Array, cols, name);
    else requireFiniteRows(a.data as FloatRows, cols, name);
  }
  return { ...a, rows, cols };
}

/** A 2-D float .npy as an fp32 matrix. */
export function readMatrix(path: string, o: MatrixReadOptions = {}): Mat {
  const a = readFloatMatrix(path, o);
  return { data: toFloat32(a.data as Float32Array | Uint16Array | Float64Array), rows: a.rows, cols: a.cols };
}

/** A float vector (1-D, or one row) of `length` values as fp32. */
export function readVector(path: string, o: { what?: string; length?: number; lengthFrom?: string } = {}): Float32Array {
  const a = readNpy(path), name = label(path, o);
  if (a.dtype !== 'float32' && a.dtype !== 'float16' && a.dtype !== 'float64')
    throw new ConceptLensError('ERR_DTYPE', `${name}: expected float32, float16 or float64 data, got ${a.dtype}`);
  if (a.shape.length > 2 || (a.shape.length === 2 && a.shape[0] !== 1))
    throw fileError(name, `expected a vector (1-D, or 1 × d), got shape [${a.shape.join(', ')}]`);
  const v = toFloat32(a.data as Float32Array | Uint16Array | Float64Array);
  if (o.length !== undefined && v.length !== o.length)
    throw new ConceptLensError('ERR_SHAPE', `${name}: expected ${o.length} values${o.lengthFrom ? ` (${o.lengthFrom})` : ''}, got ${v.length}`);
  requireFinite(v, v.length || 1, name);
  return v;
}

/**
 * Integer labels (1-D, any integer dtype, or floats holding integers): each
 * must be an integer in [0, classes) when classes is given, else ≥ 0.
 */
export function readLabels(path: string, o: { what?: string; rows?: number; rowsFrom?: string; classes?: number } = {}): Int32Array {
  const a = readNpy(path), name = label(path, { what: o.what ?? 'labels' });
  if (a.shape.length !== 1) throw fileError(name, `expected a 1-D array of integer labels, got shape [${a.shape.join(', ')}]`);
  if (o.rows !== undefined && a.shape[0] !== o.rows)
    throw new ConceptLensError('ERR_SHAPE', `${name}: expected ${o.rows} labels${o.rowsFrom ? ` (${o.rowsFrom})` : ''}, got ${a.shape[0]}`);
  const out = new Int32Array(a.shape[0]);
  const values = a.data as ArrayLike<number | bigint>;
  for (let i = 0; i < out.length; i++) {
    const v = Number(values[i]);
    const ok = Number.isInteger(v) && v >= 0 && (o.classes === undefined || v < o.classes) && v < 2 ** 31;
    if (!ok)
      throw new ConceptLensError(Number.isFinite(v) ? 'ERR_ARG' : 'ERR_NAN',
        `${name}: label ${i} is ${String(values[i])}; expected an integer in [0, ${o.classes ?? '2^31'})`);
    out[i] = v;
  }
  return out;
}
