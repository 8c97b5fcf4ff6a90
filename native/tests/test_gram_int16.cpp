// The 12-bit products against int64 sums of the same integers (data put on
// the rounding grid, so rounding is exact and only fp32 scaling remains), and
// on arbitrary data against float64 products within the rounding's own bound.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../core/gram_int16.h"
#include "check.h"

namespace {

// An n×c matrix mean_j + scale_j·Q_ij with integer Q in [−2047, 2047] that
// reaches ±2047 in every column: given its means and spreads, rounding gives
// Q back exactly (power-of-two scales, dyadic means).
struct Grid {
  int64_t n, c;
  std::vector<int32_t> Q;
  std::vector<float> X;
  std::vector<double> mean, spread, scale;
};

Grid grid(int64_t n, int64_t c, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_int_distribution<int32_t> q(-cl::kRoundedMax, cl::kRoundedMax);
  Grid d{n, c, std::vector<int32_t>(n * c), std::vector<float>(n * c), std::vector<double>(c), std::vector<double>(c), std::vector<double>(c)};
  for (int64_t j = 0; j < c; ++j) {
    d.scale[j] = std::ldexp(1.0, -int(j % 5) - 8);
    d.mean[j] = (j % 3) * 0.25;
    d.spread[j] = cl::kRoundedMax * d.scale[j];
  }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < c; ++j) {
      const int32_t v = i == j % n ? (j % 2 ? cl::kRoundedMax : -cl::kRoundedMax) : q(g);
      d.Q[i * c + j] = v;
      d.X[i * c + j] = float(d.mean[j] + d.scale[j] * v);
    }
  return d;
}

// alpha·scale_a·scale_b·Σ_i Qa_i·Qb_i, the sum exact in int64.
double grid_product(const Grid& a, int64_t ja, const Grid& b, int64_t jb, double alpha) {
  int64_t s = 0;
  for (int64_t i = 0; i < a.n; ++i) s += int64_t(a.Q[i * a.c + ja]) * b.Q[i * b.c + jb];
  return alpha * a.scale[ja] * b.scale[jb] * double(s);
}

// Sums reach 2047²·n; fp32 holds them to 2⁻²⁴ per flush added.
void expect_close(double got, double want, double size, const char* what) {
  if (std::fabs(got - want) > 4e-7 * size + 1e-30) check::failure(__FILE__, __LINE__, std::string(what) + ": got " + std::to_string(got) + ", want " + std::to_string(want));
}

}  // namespace

TEST(gram_and_cross_of_grid_data_equal_the_integer_sums) {
  if (!cl::int16_gram_available()) check::skip("no AVX-512 VNNI");
  // Odd rows (a padded pair), several 1280-pair chunks and 128-pair flushes,
  // columns that fill neither a 48-column block nor a 16- or 8-column group,
  // and more than one group of four blocks.
  for (auto [n, c, k] : {std::array<int64_t, 3>{7, 5, 3}, {5123, 203, 29}, {300, 48, 16}}) {
    const Grid x = grid(n, c, 1), y = grid(n, k, 2);
    const double alpha = 1.0 / double(n), size = alpha * cl::kRoundedMax * cl::kRoundedMax * double(n);
    const cl::RoundedColumns rx = cl::round_columns(x.X.data(), n, c, x.mean.data(), x.spread.data(), 16);
    std::vector<float> G(c * c, NAN), C(k * c, NAN);
    cl::int16_gram_upper(rx, float(alpha), G.data());
    for (int64_t i = 0; i < c; ++i)
      for (int64_t j = i; j < c; ++j) expect_close(G[i * c + j], grid_product(x, i, x, j, alpha), size * x.scale[i] * x.scale[j], "G");
    for (int64_t width : {8, 16}) {
      const cl::RoundedColumns ry = cl::round_columns(y.X.data(), n, k, y.mean.data(), y.spread.data(), width);
      std::fill(C.begin(), C.end(), NAN);
      cl::int16_cross(ry, rx, float(alpha), C.data());
      for (int64_t t = 0; t < k; ++t)
        for (int64_t j = 0; j < c; ++j) expect_close(C[t * c + j], grid_product(y, t, x, j, alpha), size * y.scale[t] * x.scale[j], "C");
    }
  }
}

TEST(row_blocks_accumulate_to_the_whole) {
  if (!cl::int16_gram_available()) check::skip("no AVX-512 VNNI");
  const int64_t n = 301, c = 53, k = 9, split = 128;  // an even first block, an odd last one
  const Grid x = grid(n, c, 4), y = grid(n, k, 5);
  const float alpha = 1.0f / float(n);
  std::vector<float> G(c * c), C(k * c);
  for (int64_t r0 : {int64_t(0), split}) {
    const int64_t rows = r0 ? n - split : split;
    const cl::RoundedColumns rx = cl::round_columns(x.X.data() + r0 * c, rows, c, x.mean.data(), x.spread.data(), 16);
    const cl::RoundedColumns ry = cl::round_columns(y.X.data() + r0 * k, rows, k, y.mean.data(), y.spread.data(), 8);
    cl::int16_gram_upper(rx, alpha, G.data(), r0 > 0);
    cl::int16_cross(ry, rx, alpha, C.data(), r0 > 0);
  }
  const double size = cl::kRoundedMax * double(cl::kRoundedMax);
  for (int64_t i = 0; i < c; ++i)
    for (int64_t j = i; j < c; ++j) expect_close(G[i * c + j], grid_product(x, i, x, j, alpha), size * x.scale[i] * x.scale[j], "G");
  for (int64_t t = 0; t < k; ++t)
    for (int64_t j = 0; j < c; ++j) expect_close(C[t * c + j], grid_product(y, t, x, j, alpha), size * y.scale[t] * x.scale[j], "C");
}

TEST(gram_of_arbitrary_data_is_within_the_rounding_bound) {
  if (!cl::int16_gram_available()) check::skip("no AVX-512 VNNI");
  const int64_t n = 1001, c = 37;
  std::vector<float> X = check::randn(n * c, 3, 2.0f, 1.5f);
  for (int64_t i = 0; i < n; ++i) X[i * c + 4] = 7.0f;  // a constant column: all zeros after centring
  std::vector<double> mean(c, 0), spread(c, 0);
  for (int64_t j = 0; j < c; ++j) {
    for (int64_t i = 0; i < n; ++i) mean[j] += X[i * c + j] / double(n);
    for (int64_t i = 0; i < n; ++i) spread[j] = std::max(spread[j], std::fabs(X[i * c + j] - mean[j]));
  }
  const cl::RoundedColumns r = cl::round_columns(X.data(), n, c, mean.data(), spread.data(), 16);
  std::vector<float> G(c * c);
  cl::int16_gram_upper(r, 1.0f / float(n), G.data());
  // Each centred value moves by at most half a step h_j = spread_j/2047, so
  // |Σ(x_a x_b − x̂_a x̂_b)| ≤ Σ(|e_a||x̂_b| + |x_a||e_b|) ≤ (h_a/2)Σ|x̂_b| + (h_b/2)Σ|x_a|.
  for (int64_t a = 0; a < c; ++a)
    for (int64_t b = a; b < c; ++b) {
      double exact = 0, ab = 0, aa = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double xa = X[i * c + a] - mean[a], xb = X[i * c + b] - mean[b];
        exact += xa * xb, ab += std::fabs(xb) + spread[b] / cl::kRoundedMax / 2, aa += std::fabs(xa);
      }
      const double bound = (spread[a] / cl::kRoundedMax / 2 * ab + spread[b] / cl::kRoundedMax / 2 * aa) / double(n);
      CHECK(std::fabs(G[a * c + b] - exact / double(n)) <= bound + 1e-6 * spread[a] * spread[b] + 1e-12);
      if (a == 4 || b == 4) CHECK(G[a * c + b] == 0.0f);
    }
}
