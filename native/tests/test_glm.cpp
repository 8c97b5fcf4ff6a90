// Both elastic-net solvers against a plain float64 coordinate descent written
// from the objective (naive residual updates, intercept re-centred each pass),
// and the coordinate descent's weights against the optimality (KKT) conditions
// evaluated in float64 on the data.
#include <algorithm>
#include <array>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "../core/glm.h"
#include "../core/gram_int16.h"
#include "check.h"

namespace {

struct Data {
  int64_t n, p, K;
  std::vector<float> X, Y;
};

// Standardised features with some correlation, targets sparse in them plus noise, standardised too.
Data make_data(int64_t n, int64_t p, int64_t K, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<double> nd(0, 1);
  std::vector<double> X(n * p), Y(n * K);
  for (int64_t i = 0; i < n; ++i) {
    double shared = nd(g);
    for (int64_t j = 0; j < p; ++j) X[i * p + j] = nd(g) + 0.5 * shared + (j % 3 == 0 ? 2.0 : 0.0);
  }
  for (int64_t k = 0; k < K; ++k)
    for (int64_t i = 0; i < n; ++i) {
      double y = nd(g);
      for (int64_t j = k; j < p; j += 7) y += (1.0 + 0.3 * k) * X[i * p + j] * ((j / 7) % 2 ? 1 : -1);
      Y[i * K + k] = y;
    }
  auto standardise = [n](std::vector<double>& A, int64_t c) {
    for (int64_t j = 0; j < c; ++j) {
      double m = 0, v = 0;
      for (int64_t i = 0; i < n; ++i) m += A[i * c + j];
      m /= n;
      for (int64_t i = 0; i < n; ++i) v += (A[i * c + j] - m) * (A[i * c + j] - m);
      double sd = std::sqrt(v / (n - 1));
      for (int64_t i = 0; i < n; ++i) A[i * c + j] = (A[i * c + j] - m) / sd;
    }
  };
  standardise(X, p);
  standardise(Y, K);
  return Data{n, p, K, std::vector<float>(X.begin(), X.end()), std::vector<float>(Y.begin(), Y.end())};
}

double soft(double z, double t) { return z > t ? z - t : z < -t ? z + t : 0.0; }

// The solver on fp32 moments: what the tests of exact convergence take (the
// default rounds standardised data to 12 bits; see the int16 tests below).
cl::CdOptions exact_moments() {
  cl::CdOptions o;
  o.moments = cl::MomentArithmetic::Fp32;
  return o;
}

struct Reference {
  std::vector<double> w;
  double b, objective;
};

// Minimiser of (1/2n)‖y − Xw − b‖² + λ(α‖w‖₁ + ½(1−α)‖w‖²) for target k, in float64.
Reference reference_fit(const Data& d, int64_t k, double lam, double alpha) {
  const int64_t n = d.n, p = d.p;
  std::vector<double> w(p, 0), r(n), sq(p, 0);
  double b = 0;
  for (int64_t i = 0; i < n; ++i) b += d.Y[i * d.K + k];
  b /= n;
  for (int64_t i = 0; i < n; ++i) r[i] = d.Y[i * d.K + k] - b;
  for (int64_t j = 0; j < p; ++j)
    for (int64_t i = 0; i < n; ++i) sq[j] += double(d.X[i * p + j]) * d.X[i * p + j] / n;
  for (int pass = 0; pass < 100000; ++pass) {
    double change = 0;
    for (int64_t j = 0; j < p; ++j) {
      double g = 0;
      for (int64_t i = 0; i < n; ++i) g += d.X[i * p + j] * r[i] / n;
      double wn = soft(g + sq[j] * w[j], lam * alpha) / (sq[j] + lam * (1 - alpha));
      for (int64_t i = 0; i < n; ++i) r[i] -= (wn - w[j]) * d.X[i * p + j];
      change = std::max(change, std::fabs(wn - w[j]));
      w[j] = wn;
    }
    double db = 0;
    for (int64_t i = 0; i < n; ++i) db += r[i] / n;
    b += db;
    for (int64_t i = 0; i < n; ++i) r[i] -= db;
    if (change < 1e-13 && std::fabs(db) < 1e-13) break;
  }
  double rss = 0, l1 = 0, l2 = 0;
  for (double x : r) rss += x * x;
  for (double x : w) l1 += std::fabs(x), l2 += x * x;
  return {w, b, 0.5 * rss / n + lam * (alpha * l1 + 0.5 * (1 - alpha) * l2)};
}

double reference_objective(const Data& d, int64_t k, double lam, double alpha) {
  return reference_fit(d, k, lam, alpha).objective;
}

void expect_reference_objective(const Data& d, const cl::GlmFit& fit, const cl::ElasticNet& en, double rel) {
  for (int64_t k = 0; k < d.K; ++k) {
    double ref = reference_objective(d, k, en.lambda, en.alpha);
    CHECK_NEAR(fit.objective[k], ref, rel * ref);
    CHECK(fit.objective[k] >= ref * (1 - 1e-9));  // nobody beats the minimum
  }
}

double column_sd(const std::vector<float>& A, int64_t n, int64_t c, int64_t j) {
  double m = 0, v = 0;
  for (int64_t i = 0; i < n; ++i) m += A[i * c + j] / double(n);
  for (int64_t i = 0; i < n; ++i) v += (A[i * c + j] - m) * (A[i * c + j] - m) / double(n);
  return std::sqrt(v);
}

// Largest violation, over targets and features, of the optimality conditions
// of the returned (fp32) weights, with the gradient g = Xᵀ(y − Xw − b)/n in
// float64: g_j = λα·sign(w_j) + λ(1−α)·w_j where w_j ≠ 0, |g_j| ≤ λα where
// w_j = 0. In units of sd(x_j)·sd(y), the scale of g_j: fp32 products resolve
// g to ~1e-7 of it. b is the intercept optimal for the weights (mean residual
// 0), which the returned one must equal to fp32 resolution.
double kkt_violation(const Data& d, const cl::GlmFit& fit, const cl::ElasticNet& en) {
  const double l1 = en.lambda * en.alpha, l2 = en.lambda * (1 - en.alpha);
  double worst = 0;
  for (int64_t k = 0; k < d.K; ++k) {
    const float* w = &fit.weights[k * d.p];
    std::vector<double> r(d.n), g(d.p, 0.0);
    double b = 0;
    for (int64_t i = 0; i < d.n; ++i) {
      r[i] = d.Y[i * d.K + k];
      for (int64_t j = 0; j < d.p; ++j) r[i] -= double(d.X[i * d.p + j]) * w[j];
      b += r[i] / d.n;
    }
    for (int64_t i = 0; i < d.n; ++i)
      for (int64_t j = 0; j < d.p; ++j) g[j] += d.X[i * d.p + j] * (r[i] - b) / d.n;
    const double sy = column_sd(d.Y, d.n, d.K, k);
    CHECK_NEAR(fit.bias[k], b, 1e-6 * (sy + std::fabs(b)));
    for (int64_t j = 0; j < d.p; ++j) {
      const double sx = column_sd(d.X, d.n, d.p, j);
      if (sx == 0) continue;  // a constant column has no gradient
      const double v = w[j] != 0 ? std::fabs(g[j] - l1 * (w[j] > 0 ? 1 : -1) - l2 * w[j]) : std::fabs(g[j]) - l1;
      worst = std::max(worst, v / (sx * sy));
    }
  }
  return worst;
}

}  // namespace

TEST(cd_reaches_the_reference_minimum) {
  Data d = make_data(400, 60, 6, 1);
  cl::Progress p;
  for (double lam : {0.05 / 0.99, 0.2, 0.01}) {
    cl::ElasticNet en{lam, 0.99};
    cl::GlmFit fit = cl::elastic_net_cd(d.X.data(), d.n, d.p, d.Y.data(), d.K, en, exact_moments(), p);
    expect_reference_objective(d, fit, en, 1e-6);
  }
}

// Features scaled and shifted (x·scale + shift), targets shifted: the solver's
// own centring must give the reference minimum and satisfy the KKT conditions.
void expect_solves_shifted(uint32_t seed, float scale, float shift, float y_shift, cl::ElasticNet en, double rel) {
  Data d = make_data(300, 40, 3, seed);
  for (auto& x : d.X) x = x * scale + shift;
  for (auto& y : d.Y) y += y_shift;
  cl::Progress p;
  cl::GlmFit fit = cl::elastic_net_cd(d.X.data(), d.n, d.p, d.Y.data(), d.K, en, exact_moments(), p);
  expect_reference_objective(d, fit, en, rel);
  CHECK(kkt_violation(d, fit, en) < 2e-6);
}

TEST(cd_with_ridge_heavy_mix_and_uncentred_features) {
  expect_solves_shifted(2, 3.0f, 5.0f, 50.0f, {0.1, 0.3}, 1e-6);  // far from centred: centred copies
}

TEST(cd_above_lambda_max_gives_zero_weights_and_mean_bias) {
  Data d = make_data(200, 10, 2, 3);
  cl::Progress p;
  cl::GlmFit fit = cl::elastic_net_cd(d.X.data(), d.n, d.p, d.Y.data(), d.K, {100.0, 0.99}, exact_moments(), p);
  for (float w : fit.weights) CHECK(w == 0.0f);
  for (int64_t k = 0; k < d.K; ++k) CHECK_NEAR(fit.bias[k], 0.0, 1e-6);  // targets are centred
}

TEST(cd_meets_the_optimality_conditions_in_float64) {
  // ~29 features per target in 200 correlated ones: the working set must regrow several times.
  Data d = make_data(600, 200, 3, 9);
  cl::Progress p;
  for (double alpha : {0.99, 0.5}) {
    cl::ElasticNet en{0.05, alpha};
    cl::GlmFit fit = cl::elastic_net_cd(d.X.data(), d.n, d.p, d.Y.data(), d.K, en, exact_moments(), p);
    CHECK(kkt_violation(d, fit, en) < 2e-6);
    expect_reference_objective(d, fit, en, 1e-9);
  }
}

TEST(cd_keeps_every_feature_the_optimum_uses) {
  Data d = make_data(500, 150, 3, 10);
  cl::Progress p;
  cl::ElasticNet en{0.03, 0.99};
  cl::GlmFit fit = cl::elastic_net_cd(d.X.data(), d.n, d.p, d.Y.data(), d.K, en, exact_moments(), p);
  for (int64_t k = 0; k < d.K; ++k) {
    Reference ref = reference_fit(d, k, en.lambda, en.alpha);
    int64_t used = 0;
    for (int64_t j = 0; j < d.p; ++j) {
      const double w = fit.weights[k * d.p + j];
      CHECK_NEAR(w, ref.w[j], 1e-4 * (1 + std::fabs(ref.w[j])));
      if (std::fabs(ref.w[j]) <= 1e-6) continue;
      CHECK(w * ref.w[j] > 0);  // same support and signs
      ++used;
    }
    CHECK(used > 16);  // more than the first working set holds
    CHECK_NEAR(fit.bias[k], ref.b, 1e-4);
  }
}

TEST(cd_solves_dense_problems_where_newton_steps_finish) {
  Data d = make_data(400, 80, 2, 16);
  cl::Progress p;
  cl::ElasticNet en{1e-3, 0.5};  // nearly every feature in the support
  cl::GlmFit fit = cl::elastic_net_cd(d.X.data(), d.n, d.p, d.Y.data(), d.K, en, exact_moments(), p);
  expect_reference_objective(d, fit, en, 1e-9);
  CHECK(kkt_violation(d, fit, en) < 2e-6);
  int64_t nonzero = 0;
  for (float w : fit.weights) nonzero += w != 0;
  CHECK(nonzero > d.K * d.p / 2);
}

TEST(cd_corrects_near_centred_features_after_the_gram) {
  expect_solves_shifted(11, 1.0f, 0.4f, -0.3f, {0.05, 0.9}, 1e-9);  // within a standard deviation: no copies
}

TEST(cd_solves_pure_ridge_and_ignores_constant_columns) {
  Data d = make_data(300, 30, 2, 12);
  for (int64_t i = 0; i < d.n; ++i) d.X[i * d.p + 4] = 2.0f, d.X[i * d.p + 7] = 0.0f;
  cl::Progress p;
  cl::ElasticNet en{0.1, 0.0};  // no L1: every feature enters the working set
  cl::GlmFit fit = cl::elastic_net_cd(d.X.data(), d.n, d.p, d.Y.data(), d.K, en, exact_moments(), p);
  expect_reference_objective(d, fit, en, 1e-9);
  for (int64_t k = 0; k < d.K; ++k) CHECK(fit.weights[k * d.p + 4] == 0.0f && fit.weights[k * d.p + 7] == 0.0f);
}

TEST(objective_matches_a_direct_float64_sum) {
  // Rows not a multiple of the 16-row tiles; then full tiles (64 row blocks
  // of 17 rows or more) over 16-column groups with a partial one after them,
  // in X (40 columns, the middle group unused) and in Y (20 targets).
  for (auto [n, p, K] : {std::array<int64_t, 3>{37, 9, 5}, {1100, 40, 20}}) {
    Data d = make_data(n, p, K, 13);
    std::vector<float> W = check::randn(d.K * d.p, 14), b = check::randn(d.K, 15);
    for (size_t i = 0; i < W.size(); i += 3) W[i] = 0.0f;
    if (p == 40)
      for (int64_t k = 0; k < K; ++k) std::fill_n(&W[k * p + 16], 16, 0.0f);
    cl::ElasticNet en{0.2, 0.7};
    std::vector<double> obj = cl::elastic_net_objective(d.X.data(), d.n, d.p, d.Y.data(), d.K, W.data(), b.data(), en);
    for (int64_t k = 0; k < d.K; ++k) {
      double rss = 0, l1 = 0, l2 = 0;
      for (int64_t i = 0; i < d.n; ++i) {
        double r = double(d.Y[i * d.K + k]) - b[k];
        for (int64_t j = 0; j < d.p; ++j) r -= double(d.X[i * d.p + j]) * W[k * d.p + j];
        rss += r * r;
      }
      for (int64_t j = 0; j < d.p; ++j) l1 += std::fabs(W[k * d.p + j]), l2 += double(W[k * d.p + j]) * W[k * d.p + j];
      CHECK_NEAR(obj[k], 0.5 * rss / d.n + en.lambda * (en.alpha * l1 + 0.5 * (1 - en.alpha) * l2), 1e-12 * obj[k]);
    }
  }
}

// Standardised data rounded to 12 bits: the minimum of the rounded problem
// lies within 1e-6 of the exact one in objective (about 1e-8 on LE's problem,
// bench glm), the support is the exact one's, and the fit says what it used.
TEST(cd_on_int16_moments_reaches_the_minimum_within_rounding) {
  Data d = make_data(600, 120, 4, 21);
  cl::Progress p;
  cl::ElasticNet en{0.05, 0.99};
  cl::CdOptions o;
  o.moments = cl::MomentArithmetic::Int16;
  if (!cl::int16_gram_available()) {  // no VNNI (or CONCEPTLENS_NO_AVX512): auto keeps fp32, int16 is refused
    CHECK_THROWS_WITH(cl::elastic_net_cd(d.X.data(), d.n, d.p, d.Y.data(), d.K, en, o, p), "int16 needs AVX-512 VNNI");
    CHECK(std::string(cl::elastic_net_cd(d.X.data(), d.n, d.p, d.Y.data(), d.K, en, {}, p).moments_by) == "fp32");
    return;
  }
  cl::GlmFit fit = cl::elastic_net_cd(d.X.data(), d.n, d.p, d.Y.data(), d.K, en, o, p);
  CHECK(std::string(fit.moments_by) == "int16");
  expect_reference_objective(d, fit, en, 1e-6);
  cl::GlmFit exact = cl::elastic_net_cd(d.X.data(), d.n, d.p, d.Y.data(), d.K, en, exact_moments(), p);
  CHECK(std::string(exact.moments_by) == "fp32");
  for (size_t i = 0; i < fit.weights.size(); ++i) CHECK((fit.weights[i] != 0) == (exact.weights[i] != 0));
  // auto takes it too: every column lies within kInt16MaxSpread standard deviations.
  CHECK(std::string(cl::elastic_net_cd(d.X.data(), d.n, d.p, d.Y.data(), d.K, en, {}, p).moments_by) == "int16");
}

TEST(cd_on_int16_moments_rounds_long_data_a_block_of_rows_at_a_time) {
  if (!cl::int16_gram_available()) return;  // the test above checks the refusal
  Data d = make_data((int64_t(1) << 16) + 1001, 12, 2, 23);  // a second, odd block of rows
  cl::Progress p;
  cl::ElasticNet en{0.05, 0.99};
  cl::CdOptions o;
  o.moments = cl::MomentArithmetic::Int16;
  cl::GlmFit fit = cl::elastic_net_cd(d.X.data(), d.n, d.p, d.Y.data(), d.K, en, o, p);
  cl::GlmFit exact = cl::elastic_net_cd(d.X.data(), d.n, d.p, d.Y.data(), d.K, en, exact_moments(), p);
  for (int64_t k = 0; k < d.K; ++k) CHECK_NEAR(fit.objective[k], exact.objective[k], 1e-6 * exact.objective[k]);
}

// Nearly collinear features (correlation 0.9975) and a light penalty: the
// 12-bit moments' rounding, amplified by the support's conditioning, moves
// the minimum by more than auto accepts (8e-7 of the objective), which the
// exact pass sees.
TEST(auto_moments_refit_on_fp32_when_the_exact_pass_finds_rounding_moved_the_minimum) {
  if (!cl::int16_gram_available()) return;
  const int64_t n = 3000, p = 24, K = 3;
  std::vector<float> shared = check::randn(n, 31), noise = check::randn(n * p, 32), yn = check::randn(n * K, 33);
  Data d{n, p, K, std::vector<float>(n * p), std::vector<float>(n * K)};
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < p; ++j) d.X[i * p + j] = shared[i] + 0.05f * noise[i * p + j];
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < K; ++k) d.Y[i * K + k] = d.X[i * p + k] - d.X[i * p + k + 5] + 0.5f * d.X[i * p + 2 * k + 9] + 0.1f * yn[i * K + k];
  cl::Progress prog;
  const cl::ElasticNet en{1e-4, 0.5};
  cl::CdOptions rounded;
  rounded.moments = cl::MomentArithmetic::Int16;
  const cl::GlmFit r = cl::elastic_net_cd(d.X.data(), n, p, d.Y.data(), K, en, rounded, prog);
  const cl::GlmFit a = cl::elastic_net_cd(d.X.data(), n, p, d.Y.data(), K, en, {}, prog);
  const cl::GlmFit e = cl::elastic_net_cd(d.X.data(), n, p, d.Y.data(), K, en, exact_moments(), prog);
  CHECK(std::string(r.moments_by) == "int16");  // asked for: kept, refined on its support
  CHECK(std::string(a.moments_by) == "fp32");   // auto: refitted
  double worst = 0;
  for (int64_t k = 0; k < K; ++k) {
    CHECK(a.objective[k] == e.objective[k]);
    worst = std::max(worst, (r.objective[k] - e.objective[k]) / e.objective[k]);
  }
  CHECK(worst <= cl::kInt16MaxGap);  // the step on the support took int16's own fit back within it
}

TEST(int16_moments_refuse_a_column_fp32_scales_cannot_hold_and_auto_keeps_fp32) {
  if (!cl::int16_gram_available()) return;  // the refusal without VNNI is tested above
  Data d = make_data(300, 6, 2, 24);
  for (int64_t i = 0; i < d.n; ++i) d.X[i * d.p + 3] *= 1e-36f;  // a step of 1e-39: below fp32's normal range
  cl::Progress p;
  cl::CdOptions o;
  o.moments = cl::MomentArithmetic::Int16;
  CHECK_THROWS_WITH(cl::elastic_net_cd(d.X.data(), d.n, d.p, d.Y.data(), d.K, {}, o, p), "'int16' cannot round X column 3");
  CHECK_THROWS_WITH(cl::elastic_net_cd(d.X.data(), d.n, d.p, d.Y.data(), d.K, {}, o, p), "e-36 of their mean, beyond what fp32 scales");
  CHECK(std::string(cl::elastic_net_cd(d.X.data(), d.n, d.p, d.Y.data(), d.K, {}, {}, p).moments_by) == "fp32");
}

TEST(auto_moments_keep_fp32_for_a_column_with_outliers) {
  Data d = make_data(400, 30, 2, 22);
  d.X[17 * d.p + 5] = 40.0f;  // one sample 40 standard deviations out: 12-bit steps would be coarse
  cl::Progress p;
  cl::GlmFit fit = cl::elastic_net_cd(d.X.data(), d.n, d.p, d.Y.data(), d.K, {}, {}, p);
  CHECK(std::string(fit.moments_by) == "fp32");
  d.X[17 * d.p + 5] = 0.0f;
  d.Y[3 * d.K + 1] = -40.0f;  // in a target, too
  CHECK(std::string(cl::elastic_net_cd(d.X.data(), d.n, d.p, d.Y.data(), d.K, {}, {}, p).moments_by) == "fp32");
}

TEST(saga_converges_to_the_reference_minimum_with_enough_epochs) {
  Data d = make_data(300, 30, 4, 4);
  cl::Progress p;
  cl::ElasticNet en;
  cl::SagaOptions opt;
  opt.batch = 16;
  opt.step = 0.01;
  opt.max_epochs = 4000;
  opt.lookbehind = 4000;
  opt.tol_per_target = 0;
  cl::GlmFit fit = cl::elastic_net_saga(d.X.data(), d.n, d.p, d.Y.data(), d.K, en, opt, p);
  expect_reference_objective(d, fit, en, 1e-6);
}

TEST(saga_early_stopping_ends_near_the_minimum) {
  Data d = make_data(2000, 30, 4, 5);
  cl::Progress p;
  cl::ElasticNet en;
  cl::SagaOptions opt;
  opt.batch = 64;
  opt.step = 0.005;
  cl::GlmFit fit = cl::elastic_net_saga(d.X.data(), d.n, d.p, d.Y.data(), d.K, en, opt, p);
  CHECK(fit.iterations < 500);
  expect_reference_objective(d, fit, en, 1e-2);
}

TEST(saga_is_reproducible_for_a_seed) {
  Data d = make_data(300, 20, 2, 6);
  cl::Progress p;
  cl::SagaOptions opt;
  opt.batch = 64;
  opt.max_epochs = 20;
  auto a = cl::elastic_net_saga(d.X.data(), d.n, d.p, d.Y.data(), d.K, {}, opt, p);
  auto b = cl::elastic_net_saga(d.X.data(), d.n, d.p, d.Y.data(), d.K, {}, opt, p);
  CHECK(std::equal(a.weights.begin(), a.weights.end(), b.weights.begin(), b.weights.end()) && a.bias == b.bias);
}

TEST(bad_input_is_named) {
  Data d = make_data(50, 5, 1, 7);
  cl::Progress p;
  d.X[7] = std::nanf("");
  CHECK_THROWS_WITH(cl::elastic_net_cd(d.X.data(), d.n, d.p, d.Y.data(), d.K, {}, {}, p), "X");
  CHECK_THROWS_WITH(cl::elastic_net_cd(d.X.data(), 1, d.p, d.Y.data(), d.K, {}, {}, p), "at least 2 samples");
  d.X[7] = 0;
  CHECK_THROWS_WITH(cl::elastic_net_cd(d.X.data(), d.n, d.p, d.Y.data(), d.K, {-1.0, 0.5}, {}, p), "lambda");
}

TEST(cancel_flag_stops_both_solvers) {
  Data d = make_data(100, 5, 3, 8);
  std::atomic<int32_t> flag{1};
  cl::Progress p(nullptr, &flag);
  bool cd = false, saga = false;
  try { cl::elastic_net_cd(d.X.data(), d.n, d.p, d.Y.data(), d.K, {}, {}, p); } catch (const cl::Cancelled&) { cd = true; }
  try { cl::elastic_net_saga(d.X.data(), d.n, d.p, d.Y.data(), d.K, {}, {}, p); } catch (const cl::Cancelled&) { saga = true; }
  CHECK(cd && saga);
}
