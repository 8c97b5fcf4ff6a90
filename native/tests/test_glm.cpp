// Both elastic-net solvers against a plain float64 coordinate descent written
// from the objective (naive residual updates, intercept re-centred each pass).
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "../core/glm.h"
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

// Minimum of (1/2n)‖y − Xw − b‖² + λ(α‖w‖₁ + ½(1−α)‖w‖²) for target k, in float64.
double reference_objective(const Data& d, int64_t k, double lam, double alpha) {
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
  return 0.5 * rss / n + lam * (alpha * l1 + 0.5 * (1 - alpha) * l2);
}

void expect_reference_objective(const Data& d, const cl::GlmFit& fit, const cl::ElasticNet& en, double rel) {
  for (int64_t k = 0; k < d.K; ++k) {
    double ref = reference_objective(d, k, en.lambda, en.alpha);
    CHECK_NEAR(fit.objective[k], ref, rel * ref);
    CHECK(fit.objective[k] >= ref * (1 - 1e-9));  // nobody beats the minimum
  }
}

}  // namespace

TEST(cd_reaches_the_reference_minimum) {
  Data d = make_data(400, 60, 6, 1);
  cl::Progress p;
  for (double lam : {0.05 / 0.99, 0.2, 0.01}) {
    cl::ElasticNet en{lam, 0.99};
    cl::GlmFit fit = cl::elastic_net_cd(d.X.data(), d.n, d.p, d.Y.data(), d.K, en, {}, p);
    expect_reference_objective(d, fit, en, 1e-6);
  }
}

TEST(cd_with_ridge_heavy_mix_and_uncentred_features) {
  Data d = make_data(300, 40, 3, 2);
  for (auto& x : d.X) x = x * 3.0f + 5.0f;  // the solver must centre internally
  cl::Progress p;
  cl::ElasticNet en{0.1, 0.3};
  cl::GlmFit fit = cl::elastic_net_cd(d.X.data(), d.n, d.p, d.Y.data(), d.K, en, {}, p);
  expect_reference_objective(d, fit, en, 1e-6);
}

TEST(cd_above_lambda_max_gives_zero_weights_and_mean_bias) {
  Data d = make_data(200, 10, 2, 3);
  cl::Progress p;
  cl::GlmFit fit = cl::elastic_net_cd(d.X.data(), d.n, d.p, d.Y.data(), d.K, {100.0, 0.99}, {}, p);
  for (float w : fit.weights) CHECK(w == 0.0f);
  for (int64_t k = 0; k < d.K; ++k) CHECK_NEAR(fit.bias[k], 0.0, 1e-6);  // targets are centred
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
  CHECK(a.weights == b.weights && a.bias == b.bias);
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
