#include "sae_cuda.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "../core/error.h"
#include "cuda_util.cuh"
#include "cuda_device.h"

namespace cl {
namespace {

// ---- kernels -------------------------------------------------------------

constexpr int kTile = 64, kTileK = 16, kGemmThreads = 256, kRowThreads = 256, kColThreads = 128;

// C (M × N, row-major) = op(A) op(B), added to C when accumulate. op(A)(i, k)
// is A[k·lda + i] when TA else A[i·lda + k]; op(B)(k, j) is B[j·ldb + k] when
// TB else B[k·ldb + j]. 64 × 64 tiles, 16-deep k slices in shared memory,
// 4 × 4 outputs per thread strided by 16 so shared reads are conflict-free;
// fp32 accumulation in k order.
template <bool TA, bool TB>
__global__ void __launch_bounds__(kGemmThreads)
    gemm(int M, int N, int K, const float* __restrict__ A, int lda, const float* __restrict__ B, int ldb,
         float* __restrict__ C, int ldc, bool accumulate) {
  __shared__ float As[kTileK][kTile + 4], Bs[kTileK][kTile + 4];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int i0 = blockIdx.y * kTile, j0 = blockIdx.x * kTile;
  float acc[4][4] = {};
  for (int k0 = 0; k0 < K; k0 += kTileK) {
#pragma unroll
    for (int l = 0; l < kTile * kTileK / kGemmThreads; ++l) {
      const int q = tid + l * kGemmThreads;
      // Consecutive threads read consecutive addresses of the source layout.
      const int ai = TA ? q % kTile : q / kTileK, ak = TA ? q / kTile : q % kTileK;
      const int gi = i0 + ai, gak = k0 + ak;
      As[ak][ai] = gi < M && gak < K ? (TA ? A[int64_t(gak) * lda + gi] : A[int64_t(gi) * lda + gak]) : 0.0f;
      const int bj = TB ? q / kTileK : q % kTile, bk = TB ? q % kTileK : q / kTile;
      const int gj = j0 + bj, gbk = k0 + bk;
      Bs[bk][bj] = gj < N && gbk < K ? (TB ? B[int64_t(gj) * ldb + gbk] : B[int64_t(gbk) * ldb + gj]) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kTileK; ++k) {
      float a[4], b[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        a[r] = As[k][ty + 16 * r];
        b[r] = Bs[k][tx + 16 * r];
      }
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) acc[r][c] = fmaf(a[r], b[c], acc[r][c]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int r = 0; r < 4; ++r)
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int i = i0 + ty + 16 * r, j = j0 + tx + 16 * c;
      if (i < M && j < N) {
        float* p = C + int64_t(i) * ldc + j;
        *p = accumulate ? acc[r][c] + *p : acc[r][c];
      }
    }
}

// The block's sum, returned to every thread; the partials are added in a
// fixed order, so results do not depend on scheduling.
template <class T>
__device__ T block_sum(T v) {
  __shared__ T part[32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
  __syncthreads();
  T s = 0;
  for (int w = 0; w < int(blockDim.x >> 5); ++w) s += part[w];
  __syncthreads();
  return s;
}

// x̄ = x − b; the residual starts as b (x̂ = b + f D, then − x).
__global__ void centre(int64_t n, int d, const float* __restrict__ x, const float* __restrict__ b,
                       float* __restrict__ xc, float* __restrict__ r) {
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < n * d; q += int64_t(gridDim.x) * blockDim.x) {
    const float bc = b[q % d];
    xc[q] = x[q] - bc;
    r[q] = bc;
  }
}

// Every row of out (rows × cols) becomes v.
__global__ void broadcast_rows(int64_t rows, int cols, const float* __restrict__ v, float* __restrict__ out) {
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < rows * cols; q += int64_t(gridDim.x) * blockDim.x)
    out[q] = v[q % cols];
}

// Block i: f = ReLU(pre) in place (NaN → 0, like the CPU threshold), with the
// row's Σf and active count.
__global__ void relu_rows(int m, float* __restrict__ F, double* __restrict__ l1, int* __restrict__ active) {
  float* row = F + int64_t(blockIdx.x) * m;
  double s = 0;
  int a = 0;
  for (int j = threadIdx.x; j < m; j += blockDim.x) {
    const float v = row[j] > 0 ? row[j] : 0.0f;
    row[j] = v;
    s += v;
    a += v > 0;
  }
  s = block_sum(s);
  a = block_sum(a);
  if (threadIdx.x == 0) {
    l1[blockIdx.x] = s;
    active[blockIdx.x] = a;
  }
}

// Block i: r = x̂ − x, sq = ‖r‖² (double), then r becomes g = gscale · r.
__global__ void residual_rows(int d, const float* __restrict__ x, float* __restrict__ r, float gscale,
                              double* __restrict__ sq) {
  const int64_t o = int64_t(blockIdx.x) * d;
  double s = 0;
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    const float rc = r[o + c] - x[o + c];
    s += double(rc) * rc;
    r[o + c] = rc * gscale;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) sq[blockIdx.x] = s;
}

// Per column of x (n × d): Σ_i (x_ic − mean_c)² in double, for the FVU.
__global__ void column_var(int64_t n, int d, const float* __restrict__ x, double* __restrict__ var) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= d) return;
  double mean = 0, v = 0;
  for (int64_t i = 0; i < n; ++i) mean += x[i * d + c];
  mean /= double(n);
  for (int64_t i = 0; i < n; ++i) v += (x[i * d + c] - mean) * (x[i * d + c] - mean);
  var[c] = v;
}

// ∂loss/∂pre = (f > 0) ? ∂loss/∂f + λ/n : 0, in place over n × m.
__global__ void mask_grad(int64_t count, const float* __restrict__ F, float* __restrict__ G, float lam) {
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < count; q += int64_t(gridDim.x) * blockDim.x)
    G[q] = F[q] > 0 ? G[q] + lam : 0.0f;
}

// Per latent j: ∂loss/∂b_e = Σ_i G_ij, and the items it fired on.
__global__ void latent_columns(int64_t n, int m, const float* __restrict__ F, const float* __restrict__ G,
                               float* __restrict__ gbe, int* __restrict__ fired) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= m) return;
  double s = 0;
  int f = 0;
  for (int64_t i = 0; i < n; ++i) {
    s += G[i * m + j];
    f += F[i * m + j] > 0;
  }
  gbe[j] = float(s);
  fired[j] = f;
}

// ∂loss/∂b = Σ_i g_i (direct, through x̂) − Σ_j ∂loss/∂b_e[j] · W_e[j] (through x̄).
__global__ void bias_grad(int64_t n, int d, int m, const float* __restrict__ g, const float* __restrict__ gbe,
                          const float* __restrict__ We, float* __restrict__ gb) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= d) return;
  double direct = 0, through = 0;
  for (int64_t i = 0; i < n; ++i) direct += g[i * d + c];
  for (int j = 0; j < m; ++j) through += double(gbe[j]) * We[int64_t(j) * d + c];
  gb[c] = float(direct - through);
}

// Block j: the atom's gradient loses its component along the atom.
__global__ void project_rows(int d, const float* __restrict__ D, float* __restrict__ gD) {
  const int64_t o = int64_t(blockIdx.x) * d;
  float gd = 0, dd = 0;
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    gd += gD[o + c] * D[o + c];
    dd += D[o + c] * D[o + c];
  }
  gd = block_sum(gd);
  dd = block_sum(dd);
  const float a = -gd / dd;
  for (int c = threadIdx.x; c < d; c += blockDim.x) gD[o + c] += a * D[o + c];
}

__global__ void adam(int64_t count, float* __restrict__ p, const float* __restrict__ g, float b1, float b2,
                     float step, float inv_sqrt_bc2, float eps) {
  float* m1 = p + count;
  float* m2 = p + 2 * count;
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < count; q += int64_t(gridDim.x) * blockDim.x) {
    const float gq = g[q];
    m1[q] = b1 * m1[q] + (1 - b1) * gq;
    m2[q] = b2 * m2[q] + (1 - b2) * gq * gq;
    p[q] -= step * m1[q] / (sqrtf(m2[q]) * inv_sqrt_bc2 + eps);
  }
}

// Block j: atom j back to unit norm.
__global__ void renormalise_rows(int d, float* __restrict__ D) {
  float* a = D + int64_t(blockIdx.x) * d;
  float s = 0;
  for (int c = threadIdx.x; c < d; c += blockDim.x) s += a[c] * a[c];
  s = 1.0f / sqrtf(block_sum(s));
  for (int c = threadIdx.x; c < d; c += blockDim.x) a[c] *= s;
}

// ---- host helpers --------------------------------------------------------

void launched(const char* kernel) { check(cudaGetLastError(), kernel); }

template <class T>
void to_host(std::vector<T>& dst, const DeviceBuffer<T>& src, int64_t n, const char* what) {
  dst.resize(n);
  download(dst.data(), src.get(), n, what);
}

int grid_for(int64_t count, int threads) { return int(std::min<int64_t>((count + threads - 1) / threads, 65535)); }

template <bool TA, bool TB>
void run_gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
              int64_t ldc, bool accumulate) {
  const dim3 grid(unsigned((N + kTile - 1) / kTile), unsigned((M + kTile - 1) / kTile));
  gemm<TA, TB><<<grid, kGemmThreads>>>(int(M), int(N), int(K), A, int(lda), B, int(ldb), C, int(ldc), accumulate);
  launched("gemm kernel");
}

}  // namespace

struct CudaSaeStep::Impl {
  SaeConfig cfg;
  SaeLayout lay;
  int64_t t;
  std::vector<int64_t> fired;
  DeviceBuffer<float> p, grad;  // parameters + moments (3P), gradients (P)
  // Per-batch buffers for up to `cap` items.
  int64_t cap = 0;
  DeviceBuffer<float> x, xc, r, F, G;
  DeviceBuffer<double> l1, sq, var;
  DeviceBuffer<int> active, count;
  std::vector<float> staging;

  Impl(const SaeConfig& c, int64_t steps) : cfg(c), lay(c.d, c.m), t(steps), fired(c.m, 0) {}

  void reserve(int64_t n) {
    if (n <= cap) return;
    const int64_t d = cfg.d, m = cfg.m;
    x = device_alloc<float>(n * d, "cudaMalloc (batch)");
    xc = device_alloc<float>(n * d, "cudaMalloc (centred batch)");
    r = device_alloc<float>(n * d, "cudaMalloc (residual)");
    F = device_alloc<float>(n * m, "cudaMalloc (codes)");
    G = device_alloc<float>(n * m, "cudaMalloc (code gradients)");
    l1 = device_alloc<double>(n, "cudaMalloc (row sums)");
    sq = device_alloc<double>(n, "cudaMalloc (row errors)");
    active = device_alloc<int>(n, "cudaMalloc (row counts)");
    cap = n;
  }

  void upload_batch(const MatrixView& xv, int64_t r0, int64_t n) {
    const int64_t d = cfg.d;
    staging.resize(n * d);
    rows_to_f32(xv, r0, n, staging.data());
    for (int64_t q = 0; q < n * d; ++q)
      if (!std::isfinite(staging[q]))
        fail("sae step " + std::to_string(t + 1) + ": feature item " + std::to_string(r0 + q / d) + " column " +
             std::to_string(q % d) + " is " + (std::isnan(staging[q]) ? "NaN" : "Inf"));
    cl::upload(x.get(), staging.data(), n * d, "upload of the batch");
  }

  // pre = x̄ W_eᵀ + b_e → f; x̂ − x → g; then the statistics (host, double).
  SaeStats forward(int64_t n) {
    const int64_t d = cfg.d, m = cfg.m;
    centre<<<grid_for(n * d, 256), 256>>>(n, int(d), x.get(), p.get() + lay.b, xc.get(), r.get());
    launched("centre kernel");
    broadcast_rows<<<grid_for(n * m, 256), 256>>>(n, int(m), p.get() + lay.be, F.get());
    launched("broadcast_rows kernel");
    run_gemm<false, true>(n, m, d, xc.get(), d, p.get() + lay.we, d, F.get(), m, true);
    relu_rows<<<unsigned(n), kRowThreads>>>(int(m), F.get(), l1.get(), active.get());
    launched("relu_rows kernel");
    run_gemm<false, false>(n, d, m, F.get(), m, p.get() + lay.dec, d, r.get(), d, true);
    residual_rows<<<unsigned(n), kRowThreads>>>(int(d), x.get(), r.get(), 2.0f / float(n * d), sq.get());
    launched("residual_rows kernel");
    column_var<<<grid_for(d, kColThreads), kColThreads>>>(n, int(d), x.get(), var.get());
    launched("column_var kernel");
    return statistics(n);
  }

  SaeStats statistics(int64_t n) {
    const int64_t d = cfg.d;
    std::vector<double> hl1, hsq, hvar;
    std::vector<int> hactive;
    to_host(hl1, l1, n, "download of row sums");
    to_host(hsq, sq, n, "download of row errors");
    to_host(hactive, active, n, "download of row counts");
    to_host(hvar, var, d, "download of column variances");
    double sse = 0, l1sum = 0, v = 0;
    int64_t nnz = 0;
    for (int64_t i = 0; i < n; ++i) {
      sse += hsq[i];
      l1sum += hl1[i];
      nnz += hactive[i];
    }
    for (double vc : hvar) v += vc;
    SaeStats st;
    st.mse = sse / double(n * d);
    st.l0 = double(nnz) / double(n);
    st.fvu = v > 0 ? sse / v : 0;
    st.loss = st.mse + cfg.l1 * l1sum / double(n);
    return st;
  }

  // Gradients of every parameter, the decoder's projected onto the tangent space.
  void backward(int64_t n) {
    const int64_t d = cfg.d, m = cfg.m;
    float* g = grad.get();
    run_gemm<true, false>(m, d, n, F.get(), m, r.get(), d, g + lay.dec, d, false);
    run_gemm<false, true>(n, m, d, r.get(), d, p.get() + lay.dec, d, G.get(), m, false);
    mask_grad<<<grid_for(n * m, 256), 256>>>(n * m, F.get(), G.get(), cfg.l1 / float(n));
    launched("mask_grad kernel");
    run_gemm<true, false>(m, d, n, G.get(), m, xc.get(), d, g + lay.we, d, false);
    latent_columns<<<grid_for(m, kColThreads), kColThreads>>>(n, int(m), F.get(), G.get(), g + lay.be, count.get());
    launched("latent_columns kernel");
    bias_grad<<<grid_for(d, kColThreads), kColThreads>>>(n, int(d), int(m), r.get(), g + lay.be, p.get() + lay.we,
                                                         g + lay.b);
    launched("bias_grad kernel");
    project_rows<<<unsigned(m), kRowThreads>>>(int(d), p.get() + lay.dec, g + lay.dec);
    launched("project_rows kernel");
  }

  // Adam with the CPU step's bias-correction arithmetic, then unit atoms.
  void update() {
    ++t;
    const float b1 = cfg.beta1, b2 = cfg.beta2;
    const double bc1 = 1 - std::pow(double(b1), double(t)), bc2 = 1 - std::pow(double(b2), double(t));
    const float step = float(cfg.lr / bc1), inv_sqrt_bc2 = float(1 / std::sqrt(bc2));
    adam<<<grid_for(lay.params, 256), 256>>>(lay.params, p.get(), grad.get(), b1, b2, step, inv_sqrt_bc2, cfg.eps);
    launched("adam kernel");
    renormalise_rows<<<unsigned(cfg.m), kRowThreads>>>(int(cfg.d), p.get() + lay.dec);
    launched("renormalise_rows kernel");
  }

  void count_fired() {
    std::vector<int> c;
    to_host(c, count, cfg.m, "download of firing counts");
    for (int64_t j = 0; j < cfg.m; ++j) fired[j] += c[j];
  }
};

CudaSaeStep::CudaSaeStep(const SaeConfig& cfg, const float* storage, int64_t steps) {
  require(cfg.kind == SaeKind::ReluL1, "CUDA sae step: kind must be relu-l1 (TopK kinds run on the CPU), got kind " +
                                           std::to_string(int(cfg.kind)));
  require(cfg.d >= 1 && cfg.m >= 1, "CUDA sae step: d and m must be >= 1, got d=" + std::to_string(cfg.d) +
                                        ", m=" + std::to_string(cfg.m));
  require(steps >= 0, "CUDA sae step: steps must be >= 0, got " + std::to_string(steps));
  require(cuda_available(), "CUDA: no usable GPU (cudaGetDeviceCount found none or the driver is missing)");
  impl_.reset(new Impl(cfg, steps));
  impl_->p = device_alloc<float>(impl_->lay.total(), "cudaMalloc (parameters and moments)");
  impl_->grad = device_alloc<float>(impl_->lay.params, "cudaMalloc (gradients)");
  impl_->var = device_alloc<double>(cfg.d, "cudaMalloc (column variances)");
  impl_->count = device_alloc<int>(cfg.m, "cudaMalloc (firing counts)");
  upload(storage);
}

CudaSaeStep::~CudaSaeStep() = default;

void CudaSaeStep::upload(const float* storage) {
  cl::upload(impl_->p.get(), storage, impl_->lay.total(), "upload of parameters");
}

void CudaSaeStep::download(float* storage) const {
  cl::download(storage, impl_->p.get(), impl_->lay.total(), "download of parameters");
}

SaeStats CudaSaeStep::step(const MatrixView& x, int64_t r0, int64_t n) {
  Impl& s = *impl_;
  const int64_t d = s.cfg.d, m = s.cfg.m;
  require(x.cols == d, "CUDA sae step: features have " + std::to_string(x.cols) + " columns, expected d=" +
                           std::to_string(d));
  require(r0 >= 0 && n >= 1 && r0 + n <= x.rows, "CUDA sae step: rows [" + std::to_string(r0) + ", " +
                                                     std::to_string(r0 + n) + ") outside 0.." + std::to_string(x.rows));
  // The kernels index rows, latents and GEMM extents with int.
  require(n * std::max(d, m) < (int64_t(1) << 31) && n <= int64_t(65535) * kTile && m <= int64_t(65535) * kTile,
          "CUDA sae step: batch of " + std::to_string(n) + " items is too large for m=" + std::to_string(m));
  s.reserve(n);
  s.upload_batch(x, r0, n);
  SaeStats st = s.forward(n);
  if (!std::isfinite(st.loss))
    fail("sae step " + std::to_string(s.t + 1) + ": loss is " + std::to_string(st.loss) + " (diverged; lower --lr)");
  s.backward(n);
  s.update();
  s.count_fired();
  st.step = s.t;
  st.dead = std::count(s.fired.begin(), s.fired.end(), int64_t(0));
  return st;
}

const std::vector<int64_t>& CudaSaeStep::fired() const { return impl_->fired; }
int64_t CudaSaeStep::steps() const { return impl_->t; }

}  // namespace cl
