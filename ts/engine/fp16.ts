// fp16_binding.cpp: bulk fp16 <-> fp32 conversion (F16C where present).
import { engine } from './addon.js';
import { nativeSync } from './call.js';

/** fp16 bits to a new Float32Array (exact: every fp16 value is a float32). */
export const halvesToFloats = (bits: Uint16Array): Float32Array => nativeSync(() => engine().halvesToFloats(bits));

/** Float32Array to fp16 bits, rounding to nearest, ties to even. */
export const floatsToHalves = (values: Float32Array): Uint16Array => nativeSync(() => engine().floatsToHalves(values));
