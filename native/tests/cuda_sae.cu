// CudaSaeStep against the CPU trainer (cl::Sae, dense ReLU-L1 path) from the
// same initial parameters, and a timing at d=512, m=4096, batch 4096. Needs a
// GPU; without one it skips.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "../core/sae.h"
#include "../cuda/sae_cuda.h"
#include "../cuda/cuda_device.h"
#include "check.h"

namespace {

using check::randn;

constexpr double kTol = 1e-5;

cl::SaeConfig config(int64_t d, int64_t m) {
  cl::SaeConfig c;
  c.d = d;
  c.m = m;
  c.l1 = 1e-3f;
  c.lr = 1e-3f;
  c.sparse_below = 0;  // the CPU always takes the dense path the GPU mirrors
  c.seed = 11;
  return c;
}

// GPU block against CPU block, element-wise to kTol relative to the larger of
// the element and the block's RMS (elements near zero carry the rounding of
// sums whose terms are of RMS size). Prints the worst ratio on failure.
void expect_block(const float* g, const float* c, int64_t count, const std::string& what) {
  double ss = 0;
  for (int64_t q = 0; q < count; ++q) ss += double(c[q]) * c[q];
  const double rms = std::sqrt(ss / double(count));
  double worst = 0;
  int64_t at = 0;
  for (int64_t q = 0; q < count; ++q) {
    const double err = std::fabs(double(g[q]) - c[q]) / std::max({std::fabs(double(c[q])), rms, 1e-30});
    if (err > worst) worst = err, at = q;
  }
  if (!(worst <= kTol)) {
    std::printf("  %s: worst relative error %.3g at %lld (gpu %.9g, cpu %.9g)\n", what.c_str(), worst,
                static_cast<long long>(at), g[at], c[at]);
    CHECK(worst <= kTol);
  }
}

// Parameters and both Adam moments, block by block of the layout.
void expect_state(const cl::Sae& cpu, const cl::CudaSaeStep& gpu, int step) {
  const cl::SaeLayout& L = cpu.layout();
  std::vector<float> g(L.total());
  gpu.download(g.data());
  const float* c = cpu.params();
  const char* section[3] = {"params", "adam m1", "adam m2"};
  struct Block {
    const char* name;
    int64_t off, count;
  };
  const Block blocks[4] = {{"W_e", L.we, L.be - L.we}, {"b_e", L.be, L.dec - L.be}, {"D", L.dec, L.b - L.dec},
                           {"b", L.b, L.params - L.b}};
  for (int s = 0; s < 3; ++s)
    for (const Block& b : blocks) {
      const int64_t o = s * L.params + b.off;
      expect_block(g.data() + o, c + o, b.count,
                   "step " + std::to_string(step) + " " + section[s] + " " + b.name);
    }
}

void compare_three_steps(int64_t d, int64_t m, int64_t n) {
  const cl::SaeConfig cfg = config(d, m);
  cl::Sae cpu(cfg, nullptr);
  cl::CudaSaeStep gpu(cfg, cpu.params());
  const auto x = randn(n * d, 5 + uint32_t(d), 1.0f, 0.3f);
  const cl::MatrixView xv{x.data(), cl::DType::F32, n, d};
  for (int s = 1; s <= 3; ++s) {
    // Different rows each step, so b and the moments see varied batches.
    const int64_t r0 = (s - 1) * (n / 4), rows = n - r0;
    const cl::SaeStats c = cpu.step(xv, r0, rows);
    const cl::SaeStats g = gpu.step(xv, r0, rows);
    CHECK(!c.sparse);
    CHECK(g.step == s && c.step == s);
    CHECK_NEAR(g.loss, c.loss, kTol * std::fabs(c.loss));
    CHECK_NEAR(g.mse, c.mse, kTol * std::fabs(c.mse));
    CHECK_NEAR(g.fvu, c.fvu, kTol * std::fabs(c.fvu));
    CHECK_NEAR(g.l0, c.l0, 1e-9);
    CHECK(g.dead == c.dead);
    expect_state(cpu, gpu, s);
  }
  const int64_t* cf = cpu.fired();
  for (int64_t j = 0; j < m; ++j) CHECK(gpu.fired()[j] == cf[j]);
}

}  // namespace

// Runs first: without a GPU the whole file is skipped (ctest reports a skip).
TEST(gpu_is_present) {
  if (!cl::cuda_available()) {
    std::printf("SKIP every case: no GPU (cuda_available() is false)\n");
    std::exit(check::kSkipCode);
  }
}

TEST(three_steps_match_cpu_when_shapes_end_mid_tile) { compare_three_steps(40, 100, 77); }

TEST(three_steps_match_cpu_at_tile_multiples) { compare_three_steps(128, 512, 256); }

TEST(refuses_bad_input_and_kinds_before_changing_state) {
  const cl::SaeConfig cfg = config(8, 16);
  cl::Sae cpu(cfg, nullptr);
  cl::CudaSaeStep gpu(cfg, cpu.params());
  std::vector<float> x = randn(4 * 8, 3);
  x[2 * 8 + 5] = NAN;
  CHECK_THROWS_WITH(gpu.step(cl::MatrixView{x.data(), cl::DType::F32, 4, 8}, 0, 4), "item 2 column 5 is NaN");
  CHECK_THROWS_WITH(gpu.step(cl::MatrixView{x.data(), cl::DType::F32, 4, 7}, 0, 4), "expected d=8");
  CHECK(gpu.steps() == 0);
  std::vector<float> p(cpu.layout().total());
  gpu.download(p.data());
  CHECK(std::equal(p.begin(), p.end(), cpu.params()));
  cl::SaeConfig topk = cfg;
  topk.kind = cl::SaeKind::TopK;
  CHECK_THROWS_WITH(cl::CudaSaeStep(topk, cpu.params()), "kind must be relu-l1");
}

// Not an assertion: throughput at the benchmark shape (noisy; printed only).
TEST(timing_d512_m4096_batch4096) {
  const int64_t d = 512, m = 4096, n = 4096, steps = 10;
  const cl::SaeConfig cfg = config(d, m);
  cl::Sae init(cfg, nullptr);
  cl::CudaSaeStep gpu(cfg, init.params());
  const auto x = randn(n * d, 17, 1.0f, 0.3f);
  const cl::MatrixView xv{x.data(), cl::DType::F32, n, d};
  gpu.step(xv, 0, n);  // warm-up: allocation, first launches
  const auto t0 = std::chrono::steady_clock::now();
  cl::SaeStats st;
  for (int s = 0; s < steps; ++s) st = gpu.step(xv, 0, n);
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("  cuda sae step d=%lld m=%lld batch=%lld: %.2f ms/step, %.0f samples/s (loss %.5f, l0 %.1f)\n",
              static_cast<long long>(d), static_cast<long long>(m), static_cast<long long>(n), 1e3 * sec / steps,
              double(n * steps) / sec, st.loss, st.l0);
  CHECK(std::isfinite(st.loss));
}
