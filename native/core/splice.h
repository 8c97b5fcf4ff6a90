// SpLiCE's sparse non-negative decomposition, batched over samples:
//   w* = argmin_{w ≥ 0} ‖Cᵀw − z‖² + λ‖w‖₁   (C: c×d dictionary rows, z: d)
// Three solvers share one certificate (objective and duality gap on the full
// dictionary): FISTA with adaptive restart, the reference's ADMM (ρ = 5), and
// the default "ws": screening from Cz, working sets solved exactly by an
// active-set QP on their Gram, grown by KKT violators until the relative
// duality gap is below tol. Its checks of the full dictionary are batched
// GEMMs, or, once a sample's residual has moved little since its last GEMM,
// exact dot products with the few atoms that row leaves in doubt.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "matrix.h"
#include "progress.h"

namespace cl {

enum class SpliceSolver { Auto, Fista, Admm, WorkingSet };

// "auto" | "fista" | "admm" | "ws"; throws naming the argument otherwise.
SpliceSolver parse_splice_solver(const std::string& name);

struct SpliceOptions {
  SpliceSolver solver = SpliceSolver::Auto;
  double l1 = 0.25;   // λ
  double tol = 1e-6;  // relative duality gap (fista, ws); residual bound (admm, as the reference)
  int max_iter = 0;   // 0: per-solver default (fista 20000 iterations, admm 2000, ws 200 rounds)
  double rho = 5;     // ADMM penalty
};

// Throws naming the first option out of range (λ, tol, ρ, maxIter); every solve checks them first.
void check_splice_options(const SpliceOptions& opt);

// Per-sample outputs; weights is n×c row-major.
struct SpliceOutput {
  float* weights = nullptr;
  double* objective = nullptr;
  double* gap = nullptr;
  int32_t* iterations = nullptr;  // iterations (fista, admm) or working-set rounds (ws)
};

// dictionary: c×d fp32 or fp16; samples: n×d. warm (n×c, nullable) seeds the solvers.
void splice_solve(const MatrixView& dictionary, const MatrixView& samples, const SpliceOptions& opt,
                  const float* warm, const SpliceOutput& out, Progress& progress);

// Smallest λ for which w* = 0 for every sample: max over samples of 2·max_j (Cz)_j.
double splice_l1_max(const MatrixView& dictionary, const MatrixView& samples);

struct SplicePathPoint {
  double l1, mean_l0, mean_objective;
};

struct SplicePathOptions {
  double target_l0 = 10;
  double l0_tol = 0.5;  // stop when |mean l0 − target| ≤ l0_tol
  int max_steps = 40;
};

// Bisection on log λ between λ_max·1e-4 and λ_max, each solve warm-started from
// the previous one. Leaves the last solution in out and returns every point
// tried; the chosen λ is the last point's.
std::vector<SplicePathPoint> splice_path(const MatrixView& dictionary, const MatrixView& samples,
                                         const SpliceOptions& opt, const SplicePathOptions& path,
                                         const SpliceOutput& out, Progress& progress);

// Largest eigenvalue of a PSD d×d matrix by power iteration, rounded up 1%
// so that 1/(2λ_max) is a safe gradient step (shared with the CUDA solver).
double top_eigenvalue(const std::vector<double>& M, int64_t d);

}  // namespace cl
