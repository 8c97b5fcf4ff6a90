// IEEE half <-> float conversion. Storage of large vocabularies is fp16; all
// arithmetic is fp32. The bulk converters use F16C when the CPU has it.
#pragma once
#include <cstdint>

namespace cl {

float half_to_float(uint16_t h);
uint16_t float_to_half(float f);  // round to nearest even

void halves_to_floats(const uint16_t* src, float* dst, int64_t n);
void floats_to_halves(const float* src, uint16_t* dst, int64_t n);

}  // namespace cl
