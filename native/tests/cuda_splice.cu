// The GPU SpLiCE solver (FISTA) against the CPU working-set solver on planted
// random data and a correlated, CLIP-like dictionary, its input errors, and a
// timing of the benchmark shape. Needs a GPU; without one it skips.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "../core/fp16.h"
#include "../core/splice.h"
#include "../cuda/splice_cuda.h"
#include "../cuda/cuda_device.h"
#include "check.h"
#include "splice_data.h"

namespace {

using check::randn;

using splice_data::Data;
using splice_data::normalise;
using splice_data::plant;
using splice_data::random_dictionary;

// CLIP-like: every concept shares a common direction and a rank-8 subspace
// (cosines ~0.5 between unrelated concepts), then SpLiCE's centring: subtract
// the mean concept and renormalise.
Data clip_like_dictionary(int64_t c, int64_t d, uint32_t seed) {
  const auto common = randn(d, seed), basis = randn(8 * d, seed + 1), coef = randn(c * 8, seed + 2);
  Data data = random_dictionary(c, d, seed + 3);
  std::vector<double> mean(d, 0.0);
  for (int64_t j = 0; j < c; ++j) {
    float* cj = data.C.data() + j * d;
    for (int64_t t = 0; t < d; ++t) {
      double v = 0.6 * cj[t] + 0.08 * common[t];
      for (int b = 0; b < 8; ++b) v += 0.05 * coef[j * 8 + b] * basis[b * d + t];
      cj[t] = float(v);
    }
    normalise(cj, d);
    for (int64_t t = 0; t < d; ++t) mean[t] += cj[t] / double(c);
  }
  for (int64_t j = 0; j < c; ++j) {
    for (int64_t t = 0; t < d; ++t) data.C[j * d + t] -= float(mean[t]);
    normalise(data.C.data() + j * d, d);
  }
  return data;
}


// ‖Cᵀw − z‖² + λ‖w‖₁ in float64, from the definition.
double objective(const Data& data, int64_t i, const float* w, double l1) {
  std::vector<double> r(data.Z.begin() + i * data.d, data.Z.begin() + (i + 1) * data.d);
  double sum = 0;
  for (int64_t j = 0; j < data.c; ++j) {
    if (w[j] == 0) continue;
    sum += w[j];
    for (int64_t t = 0; t < data.d; ++t) r[t] -= double(w[j]) * data.C[j * data.d + t];
  }
  double rr = 0;
  for (double x : r) rr += x * x;
  return rr + l1 * sum;
}

struct Solved {
  std::vector<float> w;
  std::vector<double> objective, gap;
  std::vector<int32_t> iterations;
  double seconds = 0;
};

Solved solve(const Data& data, bool gpu, double l1, double tol, bool half = false, const float* warm = nullptr) {
  Solved s{std::vector<float>(data.n * data.c), std::vector<double>(data.n), std::vector<double>(data.n),
           std::vector<int32_t>(data.n)};
  cl::SpliceOptions opt;
  opt.solver = gpu ? cl::SpliceSolver::Fista : cl::SpliceSolver::WorkingSet;
  opt.l1 = l1, opt.tol = tol;
  std::vector<uint16_t> h;
  cl::MatrixView dict = data.dict();
  if (half) {
    h.resize(data.C.size());
    cl::floats_to_halves(data.C.data(), h.data(), int64_t(h.size()));
    dict = {h.data(), cl::DType::F16, data.c, data.d};
  }
  cl::Progress p;
  const cl::SpliceOutput out{s.w.data(), s.objective.data(), s.gap.data(), s.iterations.data()};
  const auto t0 = std::chrono::steady_clock::now();
  if (gpu)
    cl::cuda_splice_solve(dict, data.samples(), opt, warm, out, p);
  else
    cl::splice_solve(dict, data.samples(), opt, warm, out, p);
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s;
}

// The GPU (tol 1e-7) against the CPU ws solver (tol 1e-6): each objective within
// 1e-6 relative, the GPU's reported objective is the true one of its weights and
// its gap certifies it, and the supports agree (weights above 1e-4 on either
// side are non-zero on the other).
void expect_parity(const Data& data, double l1, bool half = false) {
  const Solved cpu = solve(data, false, l1, 1e-6, half), gpu = solve(data, true, l1, 1e-7, half);
  int mismatch = 0;
  double worst = 0;
  for (int64_t i = 0; i < data.n; ++i) {
    const float *w = gpu.w.data() + i * data.c, *ref = cpu.w.data() + i * data.c;
    if (!half) CHECK_NEAR(gpu.objective[i], objective(data, i, w, l1), 1e-9 * gpu.objective[i]);
    CHECK(gpu.gap[i] >= 0 && gpu.gap[i] <= 1e-7 * gpu.objective[i]);
    CHECK(*std::min_element(w, w + data.c) >= 0);
    CHECK_NEAR(gpu.objective[i], cpu.objective[i], 1e-6 * cpu.objective[i]);
    worst = std::max(worst, std::fabs(gpu.objective[i] - cpu.objective[i]) / cpu.objective[i]);
    for (int64_t j = 0; j < data.c; ++j) mismatch += (w[j] > 1e-4 && ref[j] == 0) || (ref[j] > 1e-4 && w[j] == 0);
  }
  std::printf("     c=%lld d=%lld n=%lld λ=%.3g%s: worst rel. objective difference %.1e, %d iterations max\n",
              (long long)data.c, (long long)data.d, (long long)data.n, l1, half ? " fp16" : "", worst,
              *std::max_element(gpu.iterations.begin(), gpu.iterations.end()));
  CHECK(mismatch == 0);
}

}  // namespace

// Runs first: without a GPU the whole file is skipped (ctest reports a skip).
TEST(gpu_is_present) {
  if (!cl::cuda_available()) {
    std::printf("SKIP every case: no GPU (cuda_available() is false)\n");
    std::exit(check::kSkipCode);
  }
}

TEST(matches_cpu_ws_on_planted_random_data) {
  // 70 samples: two 64-row tiles, the second partial; c = 400 not a tile multiple.
  Data data = random_dictionary(400, 64, 1);
  plant(data, 70, 6, 0.05, 2);
  for (double l1 : {0.05, 0.25}) expect_parity(data, l1);
  expect_parity(data, 0.25, true);
}

TEST(matches_cpu_ws_on_a_clip_like_dictionary) {
  Data data = clip_like_dictionary(3000, 128, 11);
  plant(data, 40, 5, 0.02, 12);
  expect_parity(data, 0.25);
}

TEST(warm_start_reaches_the_same_solution) {
  Data data = random_dictionary(300, 48, 4);
  plant(data, 10, 5, 0.05, 5);
  const Solved cold = solve(data, true, 0.1, 1e-7);
  const Solved warm = solve(data, true, 0.1, 1e-7, false, solve(data, true, 0.3, 1e-7).w.data());
  for (int64_t i = 0; i < data.n; ++i) CHECK_NEAR(warm.objective[i], cold.objective[i], 2e-7 * cold.objective[i]);
}

TEST(lambda_above_max_gives_zero_weights) {
  Data data = random_dictionary(200, 32, 8);
  plant(data, 5, 4, 0.05, 9);
  // Above λ_max = 2·max_j (Cz)_j the solution is w = 0 and the objective ‖z‖² = 1.
  const double l1_max = cl::splice_l1_max(data.dict(), data.samples());
  const Solved s = solve(data, true, 1.01 * l1_max, 1e-7);
  for (float w : s.w) CHECK(w == 0);
  for (double o : s.objective) CHECK_NEAR(o, 1.0, 1e-6);
}

TEST(bad_inputs_are_named) {
  Data data = random_dictionary(50, 16, 3);
  plant(data, 3, 2, 0.05, 4);
  std::vector<float> w(data.n * data.c);
  cl::Progress p;
  const cl::SpliceOutput out{w.data(), nullptr, nullptr, nullptr};
  auto run = [&](const cl::MatrixView& dict, const cl::MatrixView& samples, cl::SpliceOptions opt) {
    cl::cuda_splice_solve(dict, samples, opt, nullptr, out, p);
  };
  cl::SpliceOptions opt;
  CHECK_THROWS_WITH(run(data.dict(), cl::MatrixView{data.Z.data(), cl::DType::F32, 1, 15}, opt), "samples: expected dimension d = 16");
  opt.l1 = -1;
  CHECK_THROWS_WITH(run(data.dict(), data.samples(), opt), "l1: expected a finite λ ≥ 0");
  opt = {}, opt.tol = 0;
  CHECK_THROWS_WITH(run(data.dict(), data.samples(), opt), "tol: expected");
  opt = {}, opt.solver = cl::SpliceSolver::Admm;
  CHECK_THROWS_WITH(run(data.dict(), data.samples(), opt), "solver: expected 'auto' or 'fista'");
  opt = {}, data.Z[5] = NAN;
  CHECK_THROWS_WITH(run(data.dict(), data.samples(), opt), "samples");
}

TEST(timing_at_benchmark_shape) {
  const int64_t n = 5000, c = 10000, d = 512;
  Data data = random_dictionary(c, d, 21);
  plant(data, n, 10, 0.05, 22);
  const Solved gpu = solve(data, true, 0.25, 1e-6);
  double worst_gap = 0;
  for (int64_t i = 0; i < n; ++i) worst_gap = std::max(worst_gap, gpu.gap[i] / gpu.objective[i]);
  std::printf("     n=%lld c=%lld d=%lld λ=0.25: %.2f s, %.0f samples/s, max rel. gap %.1e, %d iterations max\n",
              (long long)n, (long long)c, (long long)d, gpu.seconds, n / gpu.seconds, worst_gap,
              *std::max_element(gpu.iterations.begin(), gpu.iterations.end()));
  CHECK(worst_gap <= 1e-6);
  // The first 50 samples against the CPU ws solver.
  Data head = data;
  head.n = 50, head.Z.resize(50 * d);
  const Solved cpu = solve(head, false, 0.25, 1e-6);
  for (int64_t i = 0; i < head.n; ++i) CHECK_NEAR(gpu.objective[i], cpu.objective[i], 2e-6 * cpu.objective[i]);
  std::printf("     CPU ws on 50 samples: %.2f s (%.0f samples/s)\n", cpu.seconds, 50 / cpu.seconds);
}
