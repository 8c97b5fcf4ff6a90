#include "vocab_rows.h"

#include <cmath>
#include <string>

#include "error.h"
#include "threads.h"

namespace cl {
namespace {

constexpr int64_t kRowsPerTask = 256;

[[noreturn]] void bad_row(int64_t row, const std::string& what, ErrorCode code = ErrorCode::Arg) {
  fail(code, "vocabulary: row " + std::to_string(row) + what);
}

void normalise(float* x, int64_t d, int64_t row, const char* when) {
  double s = 0;
  for (int64_t j = 0; j < d; ++j) s += double(x[j]) * x[j];
  if (!(s > 0)) bad_row(row, std::string(" has norm 0") + when + ", cannot L2-normalise");
  const float inv = static_cast<float>(1.0 / std::sqrt(s));
  for (int64_t j = 0; j < d; ++j) x[j] *= inv;
}

void transform_row(float* x, int64_t d, const RowTransform& t, int64_t row) {
  for (int64_t j = 0; j < d; ++j)
    if (!std::isfinite(x[j]))
      bad_row(row, ", column " + std::to_string(j) + " is " + (std::isnan(x[j]) ? "NaN" : x[j] > 0 ? "Infinity" : "-Infinity") +
                       "; expected finite values", ErrorCode::NaN);
  if (t.normalize) normalise(x, d, row, "");
  if (!t.center) return;
  for (int64_t j = 0; j < d; ++j) x[j] -= t.mean[j];
  if (t.normalize) normalise(x, d, row, " after centring");
}

}  // namespace

void transform_rows(const MatrixView& src, float* out, const RowTransform& t, int64_t row_base, Progress& progress) {
  require(!t.center || t.mean, "mean: required when centring");
  const int64_t d = src.cols, ntasks = (src.rows + kRowsPerTask - 1) / kRowsPerTask;
  progress.set_total(src.rows);
  parallel_for(ntasks, [&](int64_t task, int) {
    progress.check();
    const int64_t r0 = task * kRowsPerTask, n = std::min(kRowsPerTask, src.rows - r0);
    rows_to_f32(src, r0, n, out + r0 * d);
    for (int64_t i = 0; i < n; ++i) transform_row(out + (r0 + i) * d, d, t, row_base + r0 + i);
    progress.advance(n);
  });
}

}  // namespace cl
