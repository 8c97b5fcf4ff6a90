#include <cmath>
#include <limits>
#include <vector>

#include "../core/fp16.h"
#include "../core/vocab_rows.h"
#include "check.h"

namespace {

// Float64 reference from the definition: normalise, subtract the mean, normalise again.
std::vector<double> reference(const std::vector<float>& x, int64_t n, int64_t d, const cl::RowTransform& t) {
  std::vector<double> y(x.begin(), x.end());
  auto unit = [&](double* r) {
    double s = 0;
    for (int64_t j = 0; j < d; ++j) s += r[j] * r[j];
    for (int64_t j = 0; j < d; ++j) r[j] /= std::sqrt(s);
  };
  for (int64_t i = 0; i < n; ++i) {
    double* r = y.data() + i * d;
    if (t.normalize) unit(r);
    if (t.center) {
      for (int64_t j = 0; j < d; ++j) r[j] -= t.mean[j];
      if (t.normalize) unit(r);
    }
  }
  return y;
}

std::vector<float> data(int64_t n, int64_t d) {
  std::vector<float> x(n * d);
  for (int64_t i = 0; i < n * d; ++i) x[i] = float(std::sin(0.37 * double(i) + 1.0) * 3.0);
  return x;
}

}  // namespace

TEST(transform_rows_matches_the_definition_for_every_combination_fp32_and_fp16) {
  const int64_t n = 1000, d = 19;
  std::vector<float> x = data(n, d), mean(d);
  for (int64_t j = 0; j < d; ++j) mean[j] = 0.01f * float(j) - 0.05f;
  std::vector<uint16_t> h(x.size());
  cl::floats_to_halves(x.data(), h.data(), int64_t(x.size()));
  std::vector<float> xh(x.size());
  cl::halves_to_floats(h.data(), xh.data(), int64_t(x.size()));
  for (int combo = 0; combo < 4; ++combo) {
    cl::RowTransform t;
    t.normalize = combo & 1;
    t.center = combo & 2;
    t.mean = mean.data();
    for (bool half : {false, true}) {
      cl::MatrixView m{half ? static_cast<const void*>(h.data()) : x.data(), half ? cl::DType::F16 : cl::DType::F32, n, d};
      std::vector<float> out(n * d);
      cl::Progress p;
      cl::transform_rows(m, out.data(), t, 0, p);
      std::vector<double> ref = reference(half ? xh : x, n, d, t);
      for (int64_t i = 0; i < n * d; ++i) CHECK_NEAR(out[i], ref[i], 1e-5 * std::max(1.0, std::fabs(ref[i])));
    }
  }
}

TEST(transform_rows_names_the_row_with_nan_or_zero_norm) {
  const int64_t n = 600, d = 8;
  std::vector<float> x = data(n, d), out(n * d), mean(d, 0.f);
  x[517 * d + 3] = std::numeric_limits<float>::quiet_NaN();
  cl::MatrixView m{x.data(), cl::DType::F32, n, d};
  cl::Progress p;
  CHECK_THROWS_WITH(cl::transform_rows(m, out.data(), {}, 1000, p), "vocabulary: row 1517 holds NaN/Inf (column 3)");
  x[517 * d + 3] = 0;
  for (int64_t j = 0; j < d; ++j) x[42 * d + j] = 0;
  cl::RowTransform t;
  t.normalize = true;
  cl::Progress p2;
  CHECK_THROWS_WITH(cl::transform_rows(m, out.data(), t, 0, p2), "vocabulary: row 42 has norm 0, cannot L2-normalise");
  // A row equal to the mean has no direction after centring.
  for (int64_t j = 0; j < d; ++j) x[42 * d + j] = x[7 * d + j], mean[j] = x[7 * d + j];
  t.normalize = false;
  t.center = true;
  t.mean = mean.data();
  cl::Progress p3;
  cl::transform_rows(m, out.data(), t, 0, p3);  // centring alone allows a zero row
  for (int64_t j = 0; j < d; ++j) CHECK(out[7 * d + j] == 0.f);
}
