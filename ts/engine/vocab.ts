// vocab_binding.cpp: a vocabulary block's row work, and its caption work on bytes.
import type { ProgressOptions } from '../abort.js';
import { engine, type FloatRows, type NativeTextHashSet } from './addon.js';
import { nativeCall, nativeSync } from './call.js';

/** Rows to fp32 in `out`: normalised, centred on `mean`, normalised again, as asked; row errors name rowBase + i. */
export function transformRows(src: FloatRows, rows: number, dim: number, out: Float32Array, normalize: boolean, center: boolean,
  mean: Float32Array | null, rowBase: number, opts: ProgressOptions = {}): Promise<void> {
  return nativeCall(opts, (_, cancel) => engine().transformRows(src, rows, dim, out, normalize, center, mean, rowBase, null, cancel));
}

/** Index of the first row holding NaN/Inf, or -1 (memory speed, synchronous). */
export function firstNonFiniteRow(src: FloatRows, dim: number): number {
  return nativeSync(() => engine().firstNonFiniteRow(src, src.length / dim, dim));
}

/** Decompresses one raw Snappy block (a Parquet page) into dst, which it must fill exactly, off the JS thread; errors name `what`. */
export function snappyUncompress(src: Uint8Array, dst: Uint8Array, what: string): Promise<void> {
  return nativeCall({}, () => engine().snappyUncompress(src, dst, what));
}

/** Byte spans of n PLAIN byte-array values (4-byte length, then bytes) in data; returns the bytes they take. */
export function plainSpans(data: Uint8Array, n: number, start: Int32Array, length: Int32Array, what: string): number {
  return nativeSync(() => engine().plainSpans(data, n, start, length, what));
}

/**
 * The texts seen so far as 128-bit hashes of their UTF-8 bytes (never the texts): 16 bytes a slot, at most 3/4
 * full, so under 43 bytes per distinct text.
 */
export class TextHashSet {
  private readonly set: NativeTextHashSet;

  /** Sized for `expected` distinct texts (it grows past that). */
  constructor(expected: number) {
    this.set = nativeSync(() => new (engine().TextHashSet)(expected));
  }

  /** For texts i = bytes[start[i], start[i] + length[i]) in order: 1 where it is new (and now in the set), else 0. */
  add(bytes: Uint8Array, start: Int32Array, length: Int32Array, n: number): Uint8Array {
    return nativeSync(() => this.set.add(bytes, start, length, n));
  }

  /** Distinct texts held. */
  get size(): number {
    return this.set.size;
  }

  /** Bytes the table holds. */
  get memoryBytes(): number {
    return this.set.memoryBytes;
  }
}
