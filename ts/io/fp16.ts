// IEEE 754 half precision (fp16), held as Uint16Array bits as readNpy returns
// it. Bulk conversion runs in the engine (F16C where present); halfToFloat is
// the definition, for single values and as the tests' reference.
import { native } from '../native.js';

/** The value of one fp16 bit pattern, from the definition. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;  // zero and subnormals
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** fp16 bits to a new Float32Array (exact: every fp16 value is a float32). */
export const halvesToFloats = (bits: Uint16Array): Float32Array => native().halvesToFloats(bits);

/** Float32Array to fp16 bits, rounding to nearest, ties to even. */
export const floatsToHalves = (values: Float32Array): Uint16Array => native().floatsToHalves(values);
