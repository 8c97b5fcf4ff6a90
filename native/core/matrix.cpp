#include "matrix.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "error.h"
#include "fp16.h"
#include "threads.h"

namespace cl {

void rows_to_f32(const MatrixView& m, int64_t r0, int64_t n, float* dst) {
  if (m.dtype == DType::F32)
    std::memcpy(dst, m.f32() + r0 * m.cols, sizeof(float) * n * m.cols);
  else
    halves_to_floats(m.f16() + r0 * m.cols, dst, n * m.cols);
}

double sum_squares(const float* x, int64_t n) {
  float lanes[16] = {0};
  int64_t j = 0;
  for (; j + 16 <= n; j += 16)
    for (int l = 0; l < 16; ++l) lanes[l] += x[j + l] * x[j + l];
  double s = 0;
  for (; j < n; ++j) s += double(x[j]) * x[j];
  for (float v : lanes) s += v;
  return s;
}

namespace {

// fp16 is non-finite exactly when its exponent bits are all ones.
int64_t scan_block(const MatrixView& m, int64_t begin, int64_t end) {
  if (m.dtype == DType::F16) {
    const uint16_t* p = m.f16();
    for (int64_t i = begin; i < end; ++i)
      if ((p[i] & 0x7c00u) == 0x7c00u) return i;
  } else {
    const float* p = m.f32();
    for (int64_t i = begin; i < end; ++i)
      if (!std::isfinite(p[i])) return i;
  }
  return -1;
}

}  // namespace

int64_t first_non_finite(const MatrixView& m) {
  const int64_t n = m.rows * m.cols, block = 1 << 20;
  const int64_t nblocks = (n + block - 1) / block;
  std::vector<int64_t> found(nblocks, -1);
  parallel_for(nblocks, [&](int64_t b, int) { found[b] = scan_block(m, b * block, std::min(n, (b + 1) * block)); });
  for (int64_t f : found)
    if (f >= 0) return f;
  return -1;
}

void require_finite(const MatrixView& m, const std::string& what) {
  int64_t bad = first_non_finite(m);
  if (bad < 0) return;
  fail(ErrorCode::NaN, what + ": expected finite values, found NaN or Inf at row " + std::to_string(bad / m.cols) + ", column " +
       std::to_string(bad % m.cols));
}

}  // namespace cl
