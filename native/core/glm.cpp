#include "glm.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>

#include "blas.h"
#include "error.h"
#include "matrix.h"
#include "threads.h"

namespace cl {

namespace {

void validate(const float* X, int64_t n, int64_t p, const float* Y, int64_t K, const ElasticNet& en) {
  require(n >= 2, "X: expected at least 2 samples, got " + std::to_string(n));
  require(p >= 1, "X: expected at least 1 feature, got " + std::to_string(p));
  require(K >= 1, "Y: expected at least 1 target, got " + std::to_string(K));
  require(en.lambda > 0 && std::isfinite(en.lambda), "lambda: expected a positive number, got " + std::to_string(en.lambda));
  require(en.alpha >= 0 && en.alpha <= 1, "alpha: expected a number in [0, 1], got " + std::to_string(en.alpha));
  require_finite(MatrixView{X, DType::F32, n, p}, "X");
  require_finite(MatrixView{Y, DType::F32, n, K}, "Y");
}

double soft(double z, double t) { return z > t ? z - t : z < -t ? z + t : 0.0; }

double penalty(const float* w, int64_t p, const ElasticNet& en) {
  double l1 = 0, l2 = 0;
  for (int64_t j = 0; j < p; ++j) l1 += std::fabs(double(w[j])), l2 += double(w[j]) * w[j];
  return en.lambda * (en.alpha * l1 + 0.5 * (1 - en.alpha) * l2);
}

std::vector<double> column_means(const float* A, int64_t n, int64_t c) {
  std::vector<double> mu(c, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < c; ++j) mu[j] += A[i * c + j];
  for (auto& m : mu) m /= double(n);
  return mu;
}

// The shared statistics of the covariance-update solver: G = XcᵀXc/n and
// C = XcᵀY/n for column-centred Xc (centring first keeps fp32 GEMMs accurate
// for any column offset), computed once for all targets by wide BLAS.
struct Moments {
  std::vector<double> G, C, mu_x, mu_y;
};

Moments moments(const float* X, int64_t n, int64_t p, const float* Y, int64_t K) {
  Moments m;
  m.mu_x = column_means(X, n, p);
  m.mu_y = column_means(Y, n, K);
  std::vector<float> Xc(size_t(n) * p);
  parallel_for(n, [&](int64_t i, int) {
    for (int64_t j = 0; j < p; ++j) Xc[i * p + j] = float(X[i * p + j] - m.mu_x[j]);
  });
  std::vector<float> Gf(size_t(p) * p), Cf(size_t(p) * K);
  {
    WideBlas guard(compute_threads());
    sgemm(true, false, p, p, n, 1.0f / float(n), Xc.data(), p, Xc.data(), p, 0.0f, Gf.data(), p);
    sgemm(true, false, p, K, n, 1.0f / float(n), Xc.data(), p, Y, K, 0.0f, Cf.data(), K);
  }
  m.G.assign(Gf.begin(), Gf.end());
  m.C.assign(Cf.begin(), Cf.end());
  return m;
}

// Per-worker scratch of one coordinate-descent solve.
struct CdScratch {
  std::vector<double> c, w, q, GA, qA, wA;
  std::vector<int64_t> A;
  std::vector<char> in_A;
};

// Cycles the active set A to convergence on the dense block G[A,A]; returns passes.
int64_t cycle_active(const Moments& m, int64_t p, double l1, double l2, const CdOptions& opt, CdScratch& s) {
  const size_t a = s.A.size();
  s.GA.resize(a * a);
  s.qA.resize(a);
  s.wA.resize(a);
  for (size_t t = 0; t < a; ++t) {
    for (size_t u = 0; u < a; ++u) s.GA[t * a + u] = m.G[s.A[t] * p + s.A[u]];
    s.wA[t] = s.w[s.A[t]];
  }
  for (size_t t = 0; t < a; ++t) {
    double q = s.c[s.A[t]];
    for (size_t u = 0; u < a; ++u) q -= s.GA[t * a + u] * s.wA[u];
    s.qA[t] = q;
  }
  int64_t passes = 0;
  for (double maxd = 1; maxd >= opt.tol && passes < opt.max_passes; ++passes) {
    maxd = 0;
    for (size_t t = 0; t < a; ++t) {
      const double gjj = s.GA[t * a + t];
      const double wn = soft(s.qA[t] + gjj * s.wA[t], l1) / (gjj + l2);
      const double d = wn - s.wA[t];
      if (d == 0) continue;
      const double* row = &s.GA[t * a];
      for (size_t u = 0; u < a; ++u) s.qA[u] -= d * row[u];
      s.wA[t] = wn;
      maxd = std::max(maxd, std::fabs(d) * std::sqrt(gjj));
    }
  }
  for (size_t t = 0; t < a; ++t) s.w[s.A[t]] = s.wA[t];
  return passes;
}

// Adds every inactive feature that violates the KKT condition |q_j| <= λα at
// w_j = 0 (q = c − Gw is the negative gradient of the smooth part); returns how many.
int64_t add_kkt_violators(const Moments& m, int64_t p, double l1, CdScratch& s) {
  s.q = s.c;
  for (int64_t j : s.A) {
    if (s.w[j] == 0) continue;
    const double* row = &m.G[j * p];
    for (int64_t i = 0; i < p; ++i) s.q[i] -= s.w[j] * row[i];
  }
  int64_t added = 0;
  for (int64_t j = 0; j < p; ++j)
    if (!s.in_A[j] && std::fabs(s.q[j]) > l1 * (1 + 1e-12)) s.A.push_back(j), s.in_A[j] = 1, ++added;
  std::sort(s.A.begin(), s.A.end());
  return added;
}

// One target: strong-rule screening from w = 0, then active-set cycling
// until no excluded feature violates KKT. Returns the passes taken.
int64_t solve_target(const Moments& m, int64_t p, const ElasticNet& en, const CdOptions& opt, CdScratch& s) {
  const double l1 = en.lambda * en.alpha, l2 = en.lambda * (1 - en.alpha);
  s.w.assign(p, 0.0);
  s.in_A.assign(p, 0);
  s.A.clear();
  double cmax = 0;
  for (int64_t j = 0; j < p; ++j) cmax = std::max(cmax, std::fabs(s.c[j]));
  // Sequential strong rule from λ_max (where w = 0) to λ, on the |∇| scale.
  const double strong = 2 * l1 - cmax;
  for (int64_t j = 0; j < p; ++j)
    if (std::fabs(s.c[j]) >= strong) s.A.push_back(j), s.in_A[j] = 1;
  int64_t passes = 0;
  do passes += cycle_active(m, p, l1, l2, opt, s);
  while (add_kkt_violators(m, p, l1, s) > 0 && passes < opt.max_passes);
  return passes;
}

}  // namespace

std::vector<double> elastic_net_objective(const float* X, int64_t n, int64_t p, const float* Y, int64_t K,
                                          const float* W, const float* b, const ElasticNet& en) {
  std::vector<double> obj(K);
  parallel_for(K, [&](int64_t k, int) {
    const float* w = W + k * p;
    std::vector<int64_t> nz;
    for (int64_t j = 0; j < p; ++j)
      if (w[j] != 0) nz.push_back(j);
    double rss = 0;
    for (int64_t i = 0; i < n; ++i) {
      double r = double(Y[i * K + k]) - b[k];
      for (int64_t j : nz) r -= double(X[i * p + j]) * w[j];
      rss += r * r;
    }
    obj[k] = 0.5 * rss / double(n) + penalty(w, p, en);
  });
  return obj;
}

GlmFit elastic_net_cd(const float* X, int64_t n, int64_t p, const float* Y, int64_t K, const ElasticNet& en,
                      const CdOptions& opt, Progress& progress) {
  validate(X, n, p, Y, K, en);
  progress.set_total(K);
  const Moments m = moments(X, n, p, Y, K);
  GlmFit fit;
  fit.weights.assign(size_t(K) * p, 0.0f);
  fit.bias.assign(K, 0.0f);
  std::vector<CdScratch> scratch(parallel_workers(K));
  std::vector<int64_t> passes(K);
  parallel_for(K, [&](int64_t k, int worker) {
    progress.check();
    CdScratch& s = scratch[worker];
    s.c.resize(p);
    for (int64_t j = 0; j < p; ++j) s.c[j] = m.C[j * K + k];
    passes[k] = solve_target(m, p, en, opt, s);
    double b = m.mu_y[k];
    for (int64_t j = 0; j < p; ++j) fit.weights[k * p + j] = float(s.w[j]), b -= m.mu_x[j] * s.w[j];
    fit.bias[k] = float(b);
    progress.advance(1);
  });
  fit.iterations = *std::max_element(passes.begin(), passes.end());
  fit.objective = elastic_net_objective(X, n, p, Y, K, fit.weights.data(), fit.bias.data(), en);
  return fit;
}

namespace {

// The state of minibatch SAGA over all targets: the table of each sample's
// last residuals and the running averages of the gradients they imply.
// Targets are independent given the minibatch, so each step runs as blocks of
// targets on the pool, each block doing its own single-threaded GEMMs and
// proximal update while the data is in cache.
struct Saga {
  static constexpr int64_t kBlock = 32;
  int64_t n, p, K;
  std::vector<float> W, b, table, wavg, bavg;
  std::vector<float> Xb, out, D, gd;
  Saga(int64_t n_, int64_t p_, int64_t K_, int64_t B)
      : n(n_), p(p_), K(K_), W(K_ * p_, 0.0f), b(K_, 0.0f), table(n_ * K_, 0.0f), wavg(K_ * p_, 0.0f),
        bavg(K_, 0.0f), Xb(B * p_), out(B * K_), D(B * K_), gd(K_ * p_) {}

  // One minibatch (rows idx[0..m)): returns ½Σ residual², then takes the proximal SAGA step.
  double step(const float* X, const float* Y, const int64_t* idx, int64_t m, const ElasticNet& en, double lr) {
    for (int64_t r = 0; r < m; ++r) std::copy_n(X + idx[r] * p, p, &Xb[r * p]);
    const int64_t blocks = (K + kBlock - 1) / kBlock;
    std::vector<double> loss(blocks, 0.0);
    parallel_for(blocks, [&](int64_t blk, int) {
      const int64_t k0 = blk * kBlock, kb = std::min(kBlock, K - k0);
      loss[blk] = step_block(Y, idx, m, k0, kb, en, lr);
    });
    return std::accumulate(loss.begin(), loss.end(), 0.0);
  }

  double step_block(const float* Y, const int64_t* idx, int64_t m, int64_t k0, int64_t kb, const ElasticNet& en,
                    double lr) {
    sgemm(false, true, m, kb, p, 1.0f, Xb.data(), p, &W[k0 * p], p, 0.0f, &out[k0], K);
    double loss = 0;
    std::vector<double> bd(kb, 0.0);
    for (int64_t r = 0; r < m; ++r) {
      float* prev = &table[idx[r] * K];
      for (int64_t k = k0; k < k0 + kb; ++k) {
        const float a = out[r * K + k] + b[k] - Y[idx[r] * K + k];
        loss += 0.5 * double(a) * a;
        D[r * K + k] = a - prev[k];
        bd[k - k0] += D[r * K + k];
        prev[k] = a;
      }
    }
    sgemm(true, false, kb, p, m, 1.0f / float(m), &D[k0], K, Xb.data(), p, 0.0f, &gd[k0 * p], p);
    const double t1 = lr * en.lambda * en.alpha, shrink = 1 + lr * en.lambda * (1 - en.alpha);
    const float frac = float(m) / float(n);
    for (int64_t k = k0; k < k0 + kb; ++k) {
      for (int64_t j = k * p; j < (k + 1) * p; ++j) {
        W[j] = float(soft(W[j] - lr * (double(gd[j]) + wavg[j]), t1) / shrink);
        wavg[j] += gd[j] * frac;
      }
      const double g = bd[k - k0] / double(m);
      b[k] = float(b[k] - lr * (g + bavg[k]));
      bavg[k] += float(g) * frac;
    }
    return loss;
  }

  double penalties(const ElasticNet& en) const {
    double s = 0;
    for (int64_t k = 0; k < K; ++k) s += penalty(&W[k * p], p, en);
    return s;
  }
};

}  // namespace

GlmFit elastic_net_saga(const float* X, int64_t n, int64_t p, const float* Y, int64_t K, const ElasticNet& en,
                        const SagaOptions& opt, Progress& progress) {
  validate(X, n, p, Y, K, en);
  require(opt.batch >= 1, "batch: expected >= 1, got " + std::to_string(opt.batch));
  require(opt.step > 0, "step: expected a positive number, got " + std::to_string(opt.step));
  progress.set_total(opt.max_epochs);
  const int64_t B = std::min(opt.batch, n);
  Saga s(n, p, K, B);
  std::vector<int64_t> perm(n);
  std::iota(perm.begin(), perm.end(), 0);
  std::mt19937_64 rng(opt.seed);
  const double tol = opt.tol_per_target * double(K);
  double best = std::numeric_limits<double>::infinity();
  int64_t stale = 0, epoch = 0;
  while (epoch < opt.max_epochs && stale < opt.lookbehind) {
    progress.check();
    std::shuffle(perm.begin(), perm.end(), rng);
    double loss = 0;
    for (int64_t r0 = 0; r0 < n; r0 += B) loss += s.step(X, Y, &perm[r0], std::min(B, n - r0), en, opt.step);
    // GLM-SAGA's stopping objective: the loss seen during the epoch plus the penalty at its end.
    const double obj = loss / double(n) + s.penalties(en);
    if (obj + tol < best) best = obj, stale = 0;
    else ++stale;
    ++epoch;
    progress.advance(1);
  }
  GlmFit fit;
  fit.weights = std::move(s.W);
  fit.bias = std::move(s.b);
  fit.iterations = epoch;
  fit.objective = elastic_net_objective(X, n, p, Y, K, fit.weights.data(), fit.bias.data(), en);
  return fit;
}

}  // namespace cl
