// Design: the iterations use the dictionary C (c×d) directly, two GEMMs per
// step (U = Z − Y·C, S = U·Cᵀ), rather than the Gram CCᵀ (c×c): at d = 512,
// c = 10,000 that is 4·n·c·d flops per step instead of 2·n·c² (~10× fewer) and
// 40 MB of device memory instead of 800 MB (float64). Everything iterative is
// float64, as on the CPU: fp32 gradients stall the duality gap near 1e-5.
// Samples run in batches that fit a device-memory budget; within a batch the
// GEMMs and updates touch only the rows still active (an index list), and a
// certificate every 10 iterations retires the converged ones.
#include "splice_cuda.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "../core/blas.h"
#include "../core/error.h"
#include "cuda_util.cuh"
#include "../core/threads.h"
#include "cuda_device.h"

namespace cl {
namespace {

constexpr int kTile = 64, kTileK = 16, kThreads = 256;
constexpr int kCertifyEvery = 10;
constexpr int64_t kBatchBytes = int64_t(4) << 30;  // device memory for one batch of samples

// out[r, col] = (Z[r, col] −) Σ_k A(r, k)·B(k, col) for r = rows[0..m), col < n.
// A: row-major, lda; rounded to fp32 when kRoundA (the weights as returned).
// B(k, col) = B[k·ldb + col], or B[col·ldb + k] when kTransB. 64×64 tiles,
// 16×16 threads with 4×4 outputs each, strided by 16 to spread shared banks.
template <bool kTransB, bool kRoundA, bool kSubtract>
__global__ void gemm_rows(const int32_t* rows, int m, int n, int K, const double* A, int64_t lda,
                          const double* B, int64_t ldb, const double* Z, double* out, int64_t ldo) {
  __shared__ double As[kTileK][kTile + 1], Bs[kTileK][kTile + 1];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int r0 = blockIdx.y * kTile, c0 = blockIdx.x * kTile;
  double acc[4][4] = {};
  for (int k0 = 0; k0 < K; k0 += kTileK) {
    for (int q = tid; q < kTile * kTileK; q += kThreads) {
      const int r = q / kTileK, kk = q % kTileK, k = k0 + kk;
      double a = 0;
      if (r0 + r < m && k < K) {
        a = A[int64_t(rows[r0 + r]) * lda + k];
        if (kRoundA) a = double(float(a));
      }
      As[kk][r] = a;
      const int cc = kTransB ? q / kTileK : q % kTile, kb = kTransB ? q % kTileK : q / kTile;
      const int col = c0 + cc, kg = k0 + kb;
      Bs[kb][cc] = col < n && kg < K ? (kTransB ? B[int64_t(col) * ldb + kg] : B[int64_t(kg) * ldb + col]) : 0.0;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTileK; ++kk) {
      double a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i], b[i] = Bs[kk][tx + 16 * i];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
  for (int i = 0; i < 4; ++i) {
    const int r = r0 + ty + 16 * i;
    if (r >= m) continue;
    const int64_t row = rows[r];
    for (int j = 0; j < 4; ++j) {
      const int col = c0 + tx + 16 * j;
      if (col >= n) continue;
      out[row * ldo + col] = kSubtract ? Z[row * ldo + col] - acc[i][j] : acc[i][j];
    }
  }
}

// Sum (or max) of one value per thread over the block; every thread gets it.
template <bool kMax>
__device__ double block_reduce(double v) {
  __shared__ double part[kThreads / 32];
  __shared__ double total;
  for (int off = 16; off > 0; off /= 2) {
    const double o = __shfl_down_sync(0xffffffffu, v, off);
    v = kMax ? fmax(v, o) : v + o;
  }
  if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    double s = part[0];
    for (int w = 1; w < kThreads / 32; ++w) s = kMax ? fmax(s, part[w]) : s + part[w];
    total = s;
  }
  __syncthreads();
  return total;
}

// One FISTA step for row rows[blockIdx.x], with S = C(z − Cᵀy): proximal
// gradient x⁺ = max(0, y + (2S − λ)/L), then momentum, reset to 0 (and t to 1)
// when (y − x⁺)·(x⁺ − x) > 0 (O'Donoghue & Candès' gradient restart).
__global__ void fista_step(const int32_t* rows, int64_t c, double l1, double inv_L, const double* S, double* X,
                           double* Y, double* P, double* t) {
  const int64_t i = rows[blockIdx.x];
  const double* s = S + i * c;
  double *x = X + i * c, *y = Y + i * c, *p = P + i * c;
  double restart = 0;
  for (int64_t j = threadIdx.x; j < c; j += kThreads) {
    const double xn = fmax(0.0, y[j] + (2 * s[j] - l1) * inv_L);
    restart += (y[j] - xn) * (xn - x[j]);
    p[j] = x[j], x[j] = xn;
  }
  restart = block_reduce<false>(restart);
  const double ti = t[i], tn = restart > 0 ? 1.0 : (1 + sqrt(1 + 4 * ti * ti)) / 2;
  const double mom = restart > 0 ? 0.0 : (ti - 1) / tn;
  for (int64_t j = threadIdx.x; j < c; j += kThreads) y[j] = x[j] + mom * (x[j] - p[j]);
  __syncthreads();  // every thread has read t[i]
  if (threadIdx.x == 0) t[i] = tn;
}

// Objective and duality gap of row rows[blockIdx.x], from the residual
// U = z − Cᵀw and S = C·U of its fp32-rounded weights, as the CPU certificate:
// the dual point 2r is scaled into {ν : Cν ≤ λ}, then to its best multiple.
__global__ void certify(const int32_t* rows, int64_t c, int64_t d, double l1, const double* X, const double* U,
                        const double* Zb, const double* S, double* objective, double* gap) {
  const int64_t i = rows[blockIdx.x];
  double rr = 0, rz = 0, l1w = 0, smax = -INFINITY;
  for (int64_t t = threadIdx.x; t < d; t += kThreads) {
    const double u = U[i * d + t];
    rr += u * u, rz += u * Zb[i * d + t];
  }
  for (int64_t j = threadIdx.x; j < c; j += kThreads) {
    l1w += double(float(X[i * c + j]));
    smax = fmax(smax, S[i * c + j]);
  }
  rr = block_reduce<false>(rr);
  rz = block_reduce<false>(rz);
  l1w = block_reduce<false>(l1w);
  smax = block_reduce<true>(smax);
  if (threadIdx.x != 0) return;
  const double xi = 2 * smax;
  double scale = rr > 0 ? fmax(0.0, rz / rr) : 0.0;
  if (xi > 0) scale = fmin(scale, l1 / xi);
  const double primal = rr + l1 * l1w, dual = 2 * scale * rz - scale * scale * rr;
  objective[i] = primal, gap[i] = fmax(0.0, primal - dual);
}

__global__ void to_float(const double* x, float* y, int64_t n) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n; k += int64_t(gridDim.x) * blockDim.x)
    y[k] = float(x[k]);
}

void validate(const MatrixView& dict, const MatrixView& samples, const SpliceOptions& opt) {
  require(opt.solver == SpliceSolver::Auto || opt.solver == SpliceSolver::Fista,
          "solver: expected 'auto' or 'fista' on device 'cuda' (the GPU solver is FISTA)");
  require(dict.rows >= 1 && dict.cols >= 1, "dictionary: expected at least 1 concept of dimension ≥ 1, got " +
                                                std::to_string(dict.rows) + "×" + std::to_string(dict.cols));
  require(dict.rows <= INT32_MAX && samples.rows <= INT32_MAX,
          "dictionary/samples: expected fewer than 2^31 rows on device 'cuda', got " + std::to_string(dict.rows) +
              " and " + std::to_string(samples.rows));
  require(samples.cols == dict.cols, "samples: expected dimension d = " + std::to_string(dict.cols) +
                                         " (the dictionary's), got " + std::to_string(samples.cols));
  check_splice_options(opt);
  require_finite(dict, "dictionary");
  require_finite(samples, "samples");
  require(cuda_available(), "device: 'cuda' requested but no CUDA device is available");
}

// Lipschitz constant of the gradient, 2·λ_max(CᵀC): the d×d Gram on the host
// (one fp32 GEMM), then the CPU solver's power iteration (rounded up 1%).
double lipschitz(const std::vector<float>& C, int64_t c, int64_t d) {
  std::vector<float> G(d * d);
  {
    WideBlas guard(compute_threads());
    sgemm(true, false, d, d, c, 1.0f, C.data(), d, C.data(), d, 0.0f, G.data(), d);
  }
  return 2 * top_eigenvalue(std::vector<double>(G.begin(), G.end()), d);
}

dim3 gemm_grid(int m, int64_t n) { return dim3(unsigned((n + kTile - 1) / kTile), unsigned((m + kTile - 1) / kTile)); }

// Device state for one batch of up to `cap` samples.
class Solver {
 public:
  Solver(const std::vector<float>& C, int64_t c, int64_t d, int64_t cap, const SpliceOptions& opt)
      : c_(c), d_(d), opt_(opt), inv_L_(1 / lipschitz(C, c, d)),
        C_(device_alloc<double>(c * d, "cudaMalloc (dictionary)")),
        Z_(device_alloc<double>(cap * d, "cudaMalloc (samples)")),
        U_(device_alloc<double>(cap * d, "cudaMalloc (residuals)")),
        X_(device_alloc<double>(cap * c, "cudaMalloc (weights)")),
        Y_(device_alloc<double>(cap * c, "cudaMalloc (extrapolation)")),
        P_(device_alloc<double>(cap * c, "cudaMalloc (previous weights)")),
        S_(device_alloc<double>(cap * c, "cudaMalloc (similarities)")),
        t_(device_alloc<double>(cap, "cudaMalloc (momentum)")),
        obj_(device_alloc<double>(cap, "cudaMalloc (objective)")),
        gap_(device_alloc<double>(cap, "cudaMalloc (gap)")),
        rows_(device_alloc<int32_t>(cap, "cudaMalloc (active rows)")) {
    std::vector<double> Cd(C.begin(), C.end());
    upload(C_.get(), Cd.data(), c * d, "upload (dictionary)");
  }

  // Samples r0.. (m rows of Zf, fp32) into out rows r0..; W0: warm rows or null.
  void run(const float* Zf, const float* W0, int64_t m, int64_t r0, const SpliceOutput& out, Progress& progress) {
    const std::vector<double> Z(Zf, Zf + m * d_);
    upload(Z_.get(), Z.data(), m * d_, "upload (samples)");
    std::vector<double> X(m * c_, 0.0);
    if (W0) std::copy(W0, W0 + m * c_, X.begin());
    upload(X_.get(), X.data(), m * c_, "upload (warm start)");
    upload(Y_.get(), X.data(), m * c_, "upload (warm start)");
    const std::vector<double> ones(m, 1.0);
    upload(t_.get(), ones.data(), m, "upload (momentum)");

    std::vector<int32_t> active(m);
    std::iota(active.begin(), active.end(), 0);
    std::vector<double> obj(m), gap(m);
    const int max_iter = opt_.max_iter > 0 ? opt_.max_iter : 20000;
    upload(rows_.get(), active.data(), m, "upload (active rows)");
    for (int it = 1; it <= max_iter && !active.empty(); ++it) {
      const int na = int(active.size());
      gradient<false>(Y_.get(), na);
      fista_step<<<na, kThreads>>>(rows_.get(), c_, opt_.l1, inv_L_, S_.get(), X_.get(), Y_.get(), P_.get(), t_.get());
      check(cudaGetLastError(), "fista_step launch");
      if (it % kCertifyEvery != 0 && it != max_iter) continue;
      gradient<true>(X_.get(), na);
      certify<<<na, kThreads>>>(rows_.get(), c_, d_, opt_.l1, X_.get(), U_.get(), Z_.get(), S_.get(), obj_.get(),
                                gap_.get());
      check(cudaGetLastError(), "certify launch");
      download(obj.data(), obj_.get(), m, "download (objective)");
      download(gap.data(), gap_.get(), m, "download (gap)");
      std::vector<int32_t> next;
      for (int32_t i : active) {
        if (out.iterations) out.iterations[r0 + i] = it;
        if (gap[i] > opt_.tol * std::max(obj[i], 1e-30)) next.push_back(i);
      }
      progress.advance(int64_t(active.size() - next.size()));
      active.swap(next);
      if (!active.empty()) upload(rows_.get(), active.data(), int64_t(active.size()), "upload (active rows)");
      progress.check();
    }
    progress.advance(int64_t(active.size()));  // left at max_iter
    finish(m, r0, obj, gap, out);
  }

 private:
  // U = Z − A·C, then S = U·Cᵀ, for the active rows (A: Y, or X rounded to fp32).
  template <bool kRound>
  void gradient(const double* A, int na) {
    gemm_rows<false, kRound, true><<<gemm_grid(na, d_), kThreads>>>(rows_.get(), na, int(d_), int(c_), A, c_,
                                                                     C_.get(), d_, Z_.get(), U_.get(), d_);
    check(cudaGetLastError(), "residual GEMM launch");
    gemm_rows<true, false, false><<<gemm_grid(na, c_), kThreads>>>(rows_.get(), na, int(c_), int(d_), U_.get(), d_,
                                                                    C_.get(), d_, nullptr, S_.get(), c_);
    check(cudaGetLastError(), "similarity GEMM launch");
  }

  void finish(int64_t m, int64_t r0, const std::vector<double>& obj, const std::vector<double>& gap,
              const SpliceOutput& out) {
    float* Wf = reinterpret_cast<float*>(P_.get());  // P is free now and large enough
    to_float<<<1024, kThreads>>>(X_.get(), Wf, m * c_);
    check(cudaGetLastError(), "to_float launch");
    download(out.weights + r0 * c_, Wf, m * c_, "download (weights)");
    for (int64_t i = 0; i < m; ++i) {
      if (out.objective) out.objective[r0 + i] = obj[i];
      if (out.gap) out.gap[r0 + i] = gap[i];
    }
  }

  int64_t c_, d_;
  SpliceOptions opt_;
  double inv_L_;
  DeviceBuffer<double> C_, Z_, U_, X_, Y_, P_, S_, t_, obj_, gap_;
  DeviceBuffer<int32_t> rows_;
};

}  // namespace

void cuda_splice_solve(const MatrixView& dictionary, const MatrixView& samples, const SpliceOptions& opt,
                       const float* warm, const SpliceOutput& out, Progress& progress) {
  validate(dictionary, samples, opt);
  const int64_t c = dictionary.rows, d = dictionary.cols, n = samples.rows;
  progress.set_total(n);
  if (n == 0) return;
  std::vector<float> C(c * d);
  rows_to_f32(dictionary, 0, c, C.data());
  const int64_t cap = std::clamp<int64_t>(kBatchBytes / (8 * (4 * c + 2 * d + 3)), 1, n);
  Solver solver(C, c, d, cap, opt);
  std::vector<float> Z(cap * d);
  for (int64_t r0 = 0; r0 < n; r0 += cap) {
    const int64_t m = std::min(cap, n - r0);
    rows_to_f32(samples, r0, m, Z.data());
    solver.run(Z.data(), warm ? warm + r0 * c : nullptr, m, r0, out, progress);
  }
}

}  // namespace cl
