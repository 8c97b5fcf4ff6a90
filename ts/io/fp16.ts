// IEEE 754 half precision (fp16), held as Uint16Array bits as readNpy returns
// it. Bulk conversion runs in the engine (engine/fp16.ts, F16C where
// present); halfToFloat is the definition, for single values and as the
// tests' reference.

/** The value of one fp16 bit pattern, from the definition. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;  // zero and subnormals
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}
