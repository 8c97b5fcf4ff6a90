// A read-only row-major matrix that the core reads in place (fp32 or fp16).
#pragma once
#include <cstdint>
#include <string>

namespace cl {

enum class DType { F32, F16 };

struct MatrixView {
  const void* data = nullptr;
  DType dtype = DType::F32;
  int64_t rows = 0;
  int64_t cols = 0;

  const float* f32() const { return static_cast<const float*>(data); }
  const uint16_t* f16() const { return static_cast<const uint16_t*>(data); }
  size_t element_size() const { return dtype == DType::F32 ? 4 : 2; }
};

// Copies rows [r0, r0+n) into dst as fp32 (converting fp16).
void rows_to_f32(const MatrixView& m, int64_t r0, int64_t n, float* dst);

// Σ x², in 16 independent float lanes (vectorised without reassociation),
// summed in double at the end. NaN/Inf in x give a non-finite result.
double sum_squares(const float* x, int64_t n);

// Index of the first non-finite element, or -1. `what` names the data in errors.
int64_t first_non_finite(const MatrixView& m);
// Throws an Error naming `what`, the row and column of the first NaN/Inf.
void require_finite(const MatrixView& m, const std::string& what);

}  // namespace cl
