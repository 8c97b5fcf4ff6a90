// NumPy .npy files (format versions 1-3, C order): headers, whole arrays,
// row ranges for streaming, and atomic writes. fp16 is held as Uint16Array.
import { closeSync, openSync, readSync, fstatSync } from 'node:fs';
import { writeFileAtomic } from './atomic.js';
import { argError, ConceptLensError, fileError, openError } from '../errors.js';

/** Element types a .npy file may hold (little-endian); float16 data is held as raw bits in a Uint16Array. */
export type DType = 'float32' | 'float16' | 'float64' | 'int32' | 'int64' | 'uint8' | 'int8' | 'uint16';
/** The array types .npy data is read into and written from (Uint16Array for float16 and uint16, BigInt64Array for int64). */
export type TypedArray = Float32Array | Uint16Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Int8Array;

const DESCR: Record<string, DType> = {
  '<f4': 'float32', '<f2': 'float16', '<f8': 'float64', '<i4': 'int32', '<i8': 'int64',
  '|u1': 'uint8', '|i1': 'int8', '<u2': 'uint16',
};
const BYTES: Record<DType, number> = { float32: 4, float16: 2, float64: 8, int32: 4, int64: 8, uint8: 1, int8: 1, uint16: 2 };

/** A parsed .npy header: what {@link readNpyRows} needs to read rows of the file without loading all of it. */
export interface NpyHeader {
  /** The file it was read from (named in errors). */
  path: string;
  dtype: DType;
  /** Shape in C order; `[]` for a 0-d array. */
  shape: number[];
  /** Byte offset of the first element in the file. */
  dataOffset: number;
}

/** An n-dimensional array: flat C-order (row-major) `data` of `shape`. */
export interface NdArray<T extends TypedArray = TypedArray> {
  data: T;
  shape: number[];
  dtype: DType;
}

const count = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

function parseHeader(path: string, head: Buffer, fileSize: number): NpyHeader {
  if (head.length < 10 || head.toString('latin1', 0, 6) !== '\x93NUMPY')
    throw fileError(path, 'not a .npy file (missing \\x93NUMPY magic)');
  const major = head[6];
  const wide = major >= 2;
  const hlen = wide ? head.readUInt32LE(8) : head.readUInt16LE(8);
  const start = wide ? 12 : 10;
  if (head.length < start + hlen) throw fileError(path, `corrupt .npy header (truncated at ${head.length} bytes)`);
  const text = head.toString(major >= 3 ? 'utf8' : 'latin1', start, start + hlen);
  const descr = /'descr'\s*:\s*'([^']+)'/.exec(text)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(text)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(text)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined)
    throw fileError(path, `corrupt .npy header: ${JSON.stringify(text.trim())}`);
  const dtype = DESCR[descr === '<f2' || descr === '=f2' ? '<f2' : descr];
  if (!dtype) throw fileError(path, `unsupported dtype '${descr}' (expected one of ${Object.keys(DESCR).join(', ')}, little-endian)`);
  if (fortran === 'True') throw fileError(path, 'array is in Fortran order; expected C order (save with np.ascontiguousarray)');
  const dims = shapeText.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  const bad = dims.find((s) => !/^\d+L?$/.test(s) || !Number.isSafeInteger(parseInt(s, 10)));
  if (bad !== undefined) throw fileError(path, `corrupt .npy header: shape entry '${bad}' is not a non-negative integer`);
  const shape = dims.map((s) => parseInt(s, 10));
  const dataOffset = start + hlen;
  const need = dataOffset + count(shape) * BYTES[dtype];
  if (fileSize < need)
    throw fileError(path, `truncated: shape [${shape.join(', ')}] ${dtype} needs ${need} bytes, file has ${fileSize}`);
  return { path, dtype, shape, dataOffset };
}

/**
 * Reads and checks the header of a .npy file (versions 1-3, C order, little-endian, a known dtype, data not truncated).
 * @throws ConceptLensError ERR_FILE when the file is missing, not a .npy, unsupported or truncated.
 */
export function readNpyHeader(path: string): NpyHeader {
  const fd = openFile(path);
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw fileError(path, 'is a directory; expected a .npy file');
    const size = st.size;
    const head = Buffer.alloc(Math.min(size, 65536));
    readSync(fd, head, 0, head.length, 0);
    return parseHeader(path, head, size);
  } finally {
    closeSync(fd);
  }
}

function openFile(path: string): number {
  try {
    return openSync(path, 'r');
  } catch (e) {
    throw openError(path, e);
  }
}

export function makeTyped(dtype: DType, buf: ArrayBuffer, offset: number, length: number): TypedArray {
  switch (dtype) {
    case 'float32': return new Float32Array(buf, offset, length);
    case 'float16': case 'uint16': return new Uint16Array(buf, offset, length);
    case 'float64': return new Float64Array(buf, offset, length);
    case 'int32': return new Int32Array(buf, offset, length);
    case 'int64': return new BigInt64Array(buf, offset, length);
    case 'uint8': return new Uint8Array(buf, offset, length);
    case 'int8': return new Int8Array(buf, offset, length);
  }
}

/**
 * Reads rows [r0, r0+n) along the first axis into `out` (reused by streaming
 * readers: touching fresh large buffers costs more than the read itself).
 */
export function readNpyRowsInto<T extends TypedArray>(h: NpyHeader, r0: number, n: number, out: T): T {
  requireRowRange(h, r0, n);
  return readRows(h, r0, n, out);
}

/** Rows [r0, r0+n) along the first axis, into a fresh aligned array. */
export function readNpyRows(h: NpyHeader, r0: number, n: number): TypedArray {
  requireRowRange(h, r0, n);  // before sizing the array by n
  const rowElems = count(h.shape.slice(1));
  return readRows(h, r0, n, makeTyped(h.dtype, new ArrayBuffer(n * rowElems * BYTES[h.dtype]), 0, n * rowElems));
}

function requireRowRange(h: NpyHeader, r0: number, n: number): void {
  const rows = h.shape[0] ?? 1;
  if (!(Number.isInteger(r0) && Number.isInteger(n) && r0 >= 0 && n >= 0 && r0 + n <= rows))
    throw argError('rows', `a range within the ${rows} rows of ${h.path}`, `${r0}..${r0 + n}`);
}

function readRows<T extends TypedArray>(h: NpyHeader, r0: number, n: number, out: T): T {
  const rowElems = count(h.shape.slice(1));
  const bytes = n * rowElems * BYTES[h.dtype];
  if (out.byteLength < bytes) throw new ConceptLensError('ERR_SHAPE', `${h.path}: buffer of ${out.byteLength} bytes cannot hold rows ${r0}..${r0 + n} (${bytes} bytes)`);
  const target = new Uint8Array(out.buffer, out.byteOffset, bytes);
  const fd = openFile(h.path);
  try {
    let done = 0;
    const pos = h.dataOffset + r0 * rowElems * BYTES[h.dtype];
    while (done < bytes) {
      const len = Math.min(bytes - done, 1 << 30);
      const got = readSync(fd, target, done, len, pos + done);
      if (got === 0) throw fileError(h.path, `truncated while reading rows ${r0}..${r0 + n}`);
      done += got;
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

/**
 * Reads a whole .npy file; a 0-d array comes back with `shape` `[]` and one element.
 * @throws ConceptLensError ERR_FILE as {@link readNpyHeader}.
 */
export function readNpy(path: string): NdArray {
  const h = readNpyHeader(path);
  const rows = h.shape.length === 0 ? 1 : h.shape[0];
  return { data: readNpyRows({ ...h, shape: h.shape.length === 0 ? [1] : h.shape }, 0, rows), shape: h.shape, dtype: h.dtype };
}

/**
 * A .npy file already read whole (`bytes`, e.g. hashed first), checked as {@link readNpyHeader} checks a file; the
 * data is a view of the bytes where they are aligned for its dtype, a copy otherwise.
 */
export function parseNpy(path: string, bytes: Uint8Array): NdArray {
  const h = parseHeader(path, Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(bytes.length, 65536)), bytes.length);
  const n = count(h.shape), at = bytes.byteOffset + h.dataOffset;
  const data = at % BYTES[h.dtype] === 0 ? makeTyped(h.dtype, bytes.buffer as ArrayBuffer, at, n)
    : makeTyped(h.dtype, bytes.slice(h.dataOffset, h.dataOffset + n * BYTES[h.dtype]).buffer, 0, n);
  return { data, shape: h.shape, dtype: h.dtype };
}

export function dtypeOf(a: TypedArray, fp16 = true): DType {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Uint16Array) return fp16 ? 'float16' : 'uint16';
  if (a instanceof Float64Array) return 'float64';
  if (a instanceof Int32Array) return 'int32';
  if (a instanceof BigInt64Array) return 'int64';
  if (a instanceof Int8Array) return 'int8';
  return 'uint8';
}

/** The header (magic, version, dict, padding) for an array; data follows it. */
export function npyHeader(shape: number[], dtype: DType): Buffer {
  const descr = Object.entries(DESCR).find(([, v]) => v === dtype)![0];
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';  // pad so data starts on 64 bytes
  const pre = Buffer.alloc(10);
  Buffer.from('\x93NUMPY', 'latin1').copy(pre);
  pre[6] = 1;
  pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  return Buffer.concat([pre, Buffer.from(header, 'latin1')]);
}

/**
 * The bytes of a .npy file (format 1.0) holding `data` with `shape`; `dtype` defaults to the array's (a Uint16Array as float16).
 * @throws ConceptLensError ERR_SHAPE when `shape` does not hold `data.length` elements.
 */
export function npyBytes(data: TypedArray, shape: number[], dtype: DType = dtypeOf(data)): Buffer {
  const bad = shape.find((x) => !(Number.isInteger(x) && x >= 0));
  if (bad !== undefined) throw argError('shape', 'integer sizes >= 0', bad);
  if (count(shape) !== data.length)
    throw new ConceptLensError('ERR_SHAPE', `npy: shape [${shape.join(', ')}] holds ${count(shape)} elements, data has ${data.length}`);
  return Buffer.concat([npyHeader(shape, dtype), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]);
}

/** Writes atomically: a temp file beside the target, then rename. */
export function writeNpy(path: string, data: TypedArray, shape: number[], dtype?: DType): void {
  writeFileAtomic(path, npyBytes(data, shape, dtype));
}
