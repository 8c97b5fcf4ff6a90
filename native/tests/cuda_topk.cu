// CudaTopK against the CPU engine (cl::TopKAccumulator) on random data, and a
// timing of the benchmark shape. Needs a GPU; without one it skips.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "../core/fp16.h"
#include "../core/topk.h"
#include "../cuda/cuda_device.h"
#include "../cuda/topk_cuda.h"
#include "check.h"

namespace {

using check::randn;

// A vocabulary held in both storages; fp16 is the rounding of fp32.
struct Vocab {
  int64_t rows, d;
  std::vector<float> f32;
  std::vector<uint16_t> f16;
  Vocab(int64_t rows, int64_t d, uint32_t seed) : rows(rows), d(d), f32(randn(rows * d, seed)), f16(rows * d) {
    cl::floats_to_halves(f32.data(), f16.data(), rows * d);
  }
  cl::MatrixView view(bool half, int64_t r0, int64_t n) const {
    return half ? cl::MatrixView{f16.data() + r0 * d, cl::DType::F16, n, d}
                : cl::MatrixView{f32.data() + r0 * d, cl::DType::F32, n, d};
  }
};

struct Shard {
  int64_t r0, n;
};

struct Result {
  std::vector<float> s;
  std::vector<int64_t> id;
};

Result cpu_topk(const std::vector<float>& q, int64_t nq, const Vocab& v, bool half, int k, cl::Metric m,
                const std::vector<Shard>& shards) {
  cl::TopKOptions opt;
  opt.k = k;
  opt.metric = m;
  cl::TopKAccumulator acc(q.data(), nq, v.d, opt);
  for (const Shard& s : shards) {
    cl::Progress p;
    acc.add(v.view(half, s.r0, s.n), s.r0, nullptr, p);
  }
  Result r{std::vector<float>(nq * k), std::vector<int64_t>(nq * k)};
  acc.result(r.s.data(), r.id.data());
  return r;
}

Result gpu_topk(const std::vector<float>& q, int64_t nq, const Vocab& v, bool half, int k, cl::Metric m,
                const std::vector<Shard>& shards, int64_t chunk_rows) {
  cl::CudaTopK acc(q.data(), nq, v.d, k, m, chunk_rows);
  for (const Shard& s : shards) acc.add(v.view(half, s.r0, s.n), s.r0);
  Result r{std::vector<float>(nq * k), std::vector<int64_t>(nq * k)};
  acc.result(r.s.data(), r.id.data());
  return r;
}

// GPU rows (k wide) against the first k columns of CPU rows (kc wide): same
// ids except near-ties, scores to 1e-4 relative, the same padding.
void expect_same(const Result& g, const Result& c, int64_t nq, int k, int kc, const std::string& what) {
  try {
    for (int64_t i = 0; i < nq; ++i)
      for (int r = 0; r < k; ++r) {
        const float gs = g.s[i * k + r], cs = c.s[i * kc + r];
        const int64_t gi = g.id[i * k + r], ci = c.id[i * kc + r];
        if (ci < 0) {
          CHECK(gi == -1 && std::isinf(gs) && gs < 0);
          continue;
        }
        const double tol = 1e-4 * std::max(1.0, std::fabs(double(cs)));
        CHECK_NEAR(gs, cs, tol);
        if (gi != ci) CHECK(std::fabs(double(gs) - cs) <= tol);
      }
  } catch (const std::exception& e) {
    throw std::runtime_error(what + ": " + e.what());
  }
}

const char* name(cl::Metric m) { return m == cl::Metric::Cosine ? "cosine" : "ip"; }

}  // namespace

// Runs first: without a GPU the whole file is skipped (ctest reports a skip).
TEST(gpu_is_present) {
  if (!cl::cuda_available()) {
    std::printf("SKIP every case: no GPU (cuda_available() is false)\n");
    std::exit(check::kSkipCode);
  }
}

TEST(matches_cpu_engine_across_shapes_storage_metric_and_k) {
  // 2999 rows in three shards added out of id order; 500-row chunks, so tiles
  // and chunks both end mid-way.
  const std::vector<Shard> shards = {{2200, 799}, {0, 1200}, {1200, 1000}};
  for (int64_t d : {64, 512}) {
    const Vocab v(2999, d, 1 + uint32_t(d));
    for (int64_t nq : {1, 37, 1000}) {
      const auto q = randn(nq * d, 7 + uint32_t(nq), 3.0f);  // not normalised
      for (bool half : {false, true})
        for (cl::Metric m : {cl::Metric::InnerProduct, cl::Metric::Cosine}) {
          // The CPU top-1000 holds every smaller k's answer as its prefix.
          const Result c = cpu_topk(q, nq, v, half, 1000, m, shards);
          for (int k : {1, 10, 100, 1000}) {
            const Result g = gpu_topk(q, nq, v, half, k, m, shards, 500);
            expect_same(g, c, nq, k, 1000,
                        "d=" + std::to_string(d) + " nq=" + std::to_string(nq) + " k=" + std::to_string(k) +
                            (half ? " fp16 " : " fp32 ") + name(m));
          }
        }
    }
  }
}

TEST(default_chunking_matches_cpu_engine) {
  const Vocab v(20000, 96, 3);
  const int64_t nq = 300;
  const auto q = randn(nq * 96, 4);
  const std::vector<Shard> shards = {{0, 20000}};
  const Result c = cpu_topk(q, nq, v, true, 50, cl::Metric::Cosine, shards);
  const Result g = gpu_topk(q, nq, v, true, 50, cl::Metric::Cosine, shards, 0);
  expect_same(g, c, nq, 50, 50, "default chunks");
}

TEST(odd_dimension_uses_the_unaligned_path) {
  const Vocab v(1000, 37, 5);
  const auto q = randn(5 * 37, 6);
  const std::vector<Shard> shards = {{0, 1000}};
  for (bool half : {false, true}) {
    const Result c = cpu_topk(q, 5, v, half, 20, cl::Metric::InnerProduct, shards);
    const Result g = gpu_topk(q, 5, v, half, 20, cl::Metric::InnerProduct, shards, 256);
    expect_same(g, c, 5, 20, 20, half ? "d=37 fp16" : "d=37 fp32");
  }
}

TEST(k_larger_than_vocabulary_pads_with_minus_one) {
  const Vocab v(50, 16, 7);
  const auto q = randn(3 * 16, 8);
  const std::vector<Shard> shards = {{0, 30}, {30, 20}};
  const Result c = cpu_topk(q, 3, v, false, 100, cl::Metric::InnerProduct, shards);
  const Result g = gpu_topk(q, 3, v, false, 100, cl::Metric::InnerProduct, shards, 0);
  expect_same(g, c, 3, 100, 100, "k > rows");
  CHECK(g.id[49] >= 0 && g.id[50] == -1 && g.id[299] == -1);
}

TEST(ties_resolve_to_the_lower_id_whatever_the_shard_order) {
  const int64_t d = 4, n = 1500;
  std::vector<float> v(n * d, 1.0f), q(d, 1.0f);
  for (int k : {5, 200}) {
    cl::CudaTopK acc(q.data(), 1, d, k, cl::Metric::InnerProduct, 300);
    acc.add(v.data() + 700 * d, n - 700, d, 700);  // higher ids first
    acc.add(v.data(), 700, d, 0);
    std::vector<float> s(k);
    std::vector<int64_t> id(k);
    acc.result(s.data(), id.data());
    for (int i = 0; i < k; ++i) CHECK(id[i] == i && s[i] == 4.0f);
  }
}

TEST(bad_input_is_named) {
  std::vector<float> q(8, 1.0f), v(40, 1.0f);
  CHECK_THROWS_WITH(cl::CudaTopK(q.data(), 2, 4, 0, cl::Metric::InnerProduct), "k: expected 1 <= k <= 1024");
  CHECK_THROWS_WITH(cl::CudaTopK(q.data(), 2, 4, 1025, cl::Metric::InnerProduct), "got 1025");
  std::vector<float> qn = q;
  qn[5] = NAN;
  CHECK_THROWS_WITH(cl::CudaTopK(qn.data(), 2, 4, 1, cl::Metric::InnerProduct), "queries: expected finite values");
  std::vector<float> qz(8, 0.0f);
  CHECK_THROWS_WITH(cl::CudaTopK(qz.data(), 2, 4, 1, cl::Metric::Cosine), "queries: row 0 has zero norm");

  cl::CudaTopK ip(q.data(), 2, 4, 3, cl::Metric::InnerProduct);
  CHECK_THROWS_WITH(ip.add(v.data(), 4, 3, 0), "expected dimension 4 (the queries'), got 3");
  v[22] = INFINITY;
  CHECK_THROWS_WITH(ip.add(v.data(), 10, 4, 100), "row 105 gives a non-finite score");
  float s[6];
  int64_t id[6];
  CHECK_THROWS_WITH(ip.result(s, id), "create a new accumulator");

  std::vector<uint16_t> h(40, 0x3c00);  // 1.0
  h[13] = 0x7e00;                       // NaN
  cl::CudaTopK ip16(q.data(), 2, 4, 3, cl::Metric::InnerProduct);
  CHECK_THROWS_WITH(ip16.add(h.data(), 10, 4, 0), "row 3 gives a non-finite score");

  cl::CudaTopK cos(q.data(), 2, 4, 3, cl::Metric::Cosine);
  std::vector<float> z(8, 0.0f);
  z[0] = 1;
  CHECK_THROWS_WITH(cos.add(z.data(), 2, 4, 10), "row 11 has zero norm");
}

TEST(cancel_flag_stops_the_scan) {
  auto v = randn(5000 * 8, 11), q = randn(8, 12);
  cl::CudaTopK acc(q.data(), 1, 8, 10, cl::Metric::InnerProduct, 1000);
  std::atomic<int32_t> flag{1};
  cl::Progress p(nullptr, &flag);
  bool cancelled = false;
  try {
    acc.add(v.data(), 5000, 8, 0, &p);
  } catch (const cl::Cancelled&) {
    cancelled = true;
  }
  CHECK(cancelled);
}

// Not a pass/fail criterion: prints the time of the benchmark shape
// (1,000,000 × 512 vocabulary, 1,000 queries, k = 10), median of 3 runs, and
// checks a few queries against the CPU engine.
TEST(timing_1m_x_512_1000_queries_k10) {
  const int64_t n = 1000000, d = 512, nq = 1000, check_nq = 4;
  const int k = 10;
  std::vector<float> f32(n * d);
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (auto& e : f32) {  // xorshift: uniform in [-1, 1), fast enough for 512M values
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    e = float(int32_t(x >> 32)) * (1.0f / 2147483648.0f);
  }
  std::vector<uint16_t> f16(n * d);
  cl::floats_to_halves(f32.data(), f16.data(), n * d);
  const auto q = randn(nq * d, 13);
  for (bool half : {true, false}) {
    const cl::MatrixView view = half ? cl::MatrixView{f16.data(), cl::DType::F16, n, d}
                                     : cl::MatrixView{f32.data(), cl::DType::F32, n, d};
    std::vector<double> secs;
    Result g{std::vector<float>(nq * k), std::vector<int64_t>(nq * k)};
    for (int run = 0; run < 3; ++run) {
      const auto t0 = std::chrono::steady_clock::now();
      cl::CudaTopK acc(q.data(), nq, d, k, cl::Metric::InnerProduct);
      acc.add(view, 0);
      acc.result(g.s.data(), g.id.data());
      secs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(secs.begin(), secs.end());
    std::printf("     timing %s: %lld x %lld vocabulary, %lld queries, k=%d: median %.4f s (runs %.4f %.4f %.4f), "
                "%.1f effective TFLOP/s\n",
                half ? "fp16" : "fp32", (long long)n, (long long)d, (long long)nq, k, secs[1], secs[0], secs[1],
                secs[2], 2.0 * n * d * nq / secs[1] * 1e-12);
    cl::TopKOptions opt;
    opt.k = k;
    cl::TopKAccumulator cpu(q.data(), check_nq, d, opt);
    cl::Progress p;
    cpu.add(view, 0, nullptr, p);
    Result c{std::vector<float>(check_nq * k), std::vector<int64_t>(check_nq * k)};
    cpu.result(c.s.data(), c.id.data());
    expect_same(g, c, check_nq, k, k, half ? "1M fp16" : "1M fp32");
  }
}
