// Elastic-net linear models for many targets (neurons) at once, as Linear
// Explanations ranks concepts. Per target k the objective is
//   (1/2n)‖y_k − X w_k − β₀k‖² + λ(α‖w_k‖₁ + ½(1−α)‖w_k‖²),
// with an unpenalised intercept. Two solvers:
//  - elastic_net_cd: exact coordinate descent with covariance updates on one
//    Gram XᵀX shared by all targets (float64 solves), each target on a small
//    working set regrown from its KKT violators (the default; fast). The
//    moments XᵀX and XᵀY come from fp32 GEMMs, or from columns rounded to
//    12-bit integers (gram_int16.h, twice the rate), the fit then checked by
//    its exact pass over the data (see MomentArithmetic); on LE's problem
//    (bench glm) rounding moves the minimum by 6e-9 of the objective,
//  - elastic_net_saga: minibatch SAGA with a proximal step, loss summed over
//    targets and early stopping on the epoch objective, as GLM-SAGA does it
//    (for parity with the published method).
#pragma once
#include <cstdint>
#include <vector>

#include "progress.h"
#include "scratch.h"

namespace cl {

struct ElasticNet {
  double lambda = 0.05 / 0.99;
  double alpha = 0.99;
};

// What computes XᵀX and XᵀY: Auto takes Int16 where the CPU has AVX-512 VNNI
// and every column of X and Y spans at most kInt16MaxSpread standard
// deviations from its mean (so rounding moves it by at most 2e-3 of one).
// A fit on rounded moments is then checked by one exact pass over the data:
// with each target's support and signs held, the objective is quadratic, and
// the exact gradient there gives how far the minimum lies. Targets more than
// 1e-8 of their objective away take that step (still exact to the rounding
// of the Hessian); if any lay more than kInt16MaxGap away, Auto fits again on
// fp32 moments (an ill-conditioned problem: rounding moves its support too).
enum class MomentArithmetic { Auto, Fp32, Int16 };
constexpr double kInt16MaxSpread = 8;
constexpr double kInt16MaxGap = 1e-7;

struct CdOptions {
  // Converged when no coordinate would move by tol or more (in units of the
  // feature's standard deviation): a pass over the working set moves none,
  // and no feature outside it would leave zero by that much.
  double tol = 1e-9;
  int64_t max_passes = 100000;
  MomentArithmetic moments = MomentArithmetic::Auto;
};

struct SagaOptions {
  int64_t batch = 512;
  double step = 5e-4;
  int64_t max_epochs = 500;
  // Stop after this many epochs whose objective is not below the best by tol_per_target·K.
  int64_t lookbehind = 5;
  double tol_per_target = 1e-5;
  uint64_t seed = 0;
};

// Weights are K×p row-major (one row per target), as a linear layer stores them.
struct GlmFit {
  Scratch<float> weights;  // a pool array: a fit's K×p weights are megabytes
  std::vector<float> bias;
  std::vector<double> objective;  // exact float64 objective per target
  int64_t iterations = 0;         // CD: most passes of any target; SAGA: epochs
  const char* moments_by = "";    // CD: "fp32" or "int16", what computed the moments
};

// X is n×p and Y is n×K, both row-major fp32; neither is modified.
GlmFit elastic_net_cd(const float* X, int64_t n, int64_t p, const float* Y, int64_t K, const ElasticNet& en,
                      const CdOptions& opt, Progress& progress);
GlmFit elastic_net_saga(const float* X, int64_t n, int64_t p, const float* Y, int64_t K, const ElasticNet& en,
                        const SagaOptions& opt, Progress& progress);

// The objective above per target, in float64, for weights W (K×p) and bias b (K).
std::vector<double> elastic_net_objective(const float* X, int64_t n, int64_t p, const float* Y, int64_t K,
                                          const float* W, const float* b, const ElasticNet& en);

}  // namespace cl
