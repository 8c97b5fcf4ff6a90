// Exact top-k against a float64 brute force, written from the definition.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../core/blas.h"
#include "../core/fp16.h"
#include "../core/topk.h"
#include "../core/topk_prepared.h"
#include "../core/topk_screen.h"
#include "check.h"

namespace {

using check::randn;

// Brute force in double: ids and scores of the k best per query.
void brute(const std::vector<float>& q, const std::vector<float>& v, int64_t nq, int64_t n, int64_t d, int k,
           bool cosine, std::vector<int64_t>& ids, std::vector<double>& scores) {
  ids.assign(nq * k, -1);
  scores.assign(nq * k, 0);
  std::vector<double> s(n);
  for (int64_t i = 0; i < nq; ++i) {
    double qn = 0;
    for (int64_t c = 0; c < d; ++c) qn += double(q[i * d + c]) * q[i * d + c];
    for (int64_t j = 0; j < n; ++j) {
      double dot = 0, vn = 0;
      for (int64_t c = 0; c < d; ++c) {
        dot += double(q[i * d + c]) * v[j * d + c];
        vn += double(v[j * d + c]) * v[j * d + c];
      }
      s[j] = cosine ? dot / std::sqrt(qn * vn) : dot;
    }
    std::vector<int64_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int64_t a, int64_t b) { return s[a] > s[b] || (s[a] == s[b] && a < b); });
    for (int r = 0; r < k; ++r) {
      ids[i * k + r] = order[r];
      scores[i * k + r] = s[order[r]];
    }
  }
}

struct Run {
  std::vector<float> scores;
  std::vector<int64_t> ids;
};

// Both scan kernels where the CPU has them: each must equal brute force.
std::vector<cl::ScanKernel> kernels() {
  std::vector<cl::ScanKernel> k = {cl::ScanKernel::Sgemm};
  if (cl::screening_available(cl::ScreenFormat::Bf16)) k.push_back(cl::ScanKernel::Bf16);
  if (cl::screening_available(cl::ScreenFormat::Int8)) k.push_back(cl::ScanKernel::Int8);
  return k;
}

// v scanned in shards of shard_rows, each handed to add(acc, shard, its first row).
template <class Add>
Run scan_shards(const std::vector<float>& q, const cl::MatrixView& v, int64_t nq, const cl::TopKOptions& opt,
                int64_t shard_rows, Add add) {
  cl::TopKAccumulator acc(q.data(), nq, v.cols, opt);
  for (int64_t r0 = 0; r0 < v.rows; r0 += shard_rows) {
    cl::MatrixView s = v;
    s.rows = std::min(shard_rows, v.rows - r0);
    s.data = static_cast<const char*>(v.data) + r0 * v.cols * v.element_size();
    add(acc, s, r0);
  }
  Run r{std::vector<float>(nq * opt.k), std::vector<int64_t>(nq * opt.k)};
  acc.result(r.scores.data(), r.ids.data());
  return r;
}

Run run(const std::vector<float>& q, const cl::MatrixView& v, int64_t nq, int k, cl::Metric metric,
        int64_t shard_rows, float T = 0, cl::ScanKernel kernel = cl::ScanKernel::Auto) {
  cl::TopKOptions opt;
  opt.k = k;
  opt.metric = metric;
  opt.softmax_temperature = T;
  opt.kernel = kernel;
  return scan_shards(q, v, nq, opt, shard_rows, [](cl::TopKAccumulator& acc, const cl::MatrixView& s, int64_t r0) {
    cl::Progress p;
    acc.add(s, r0, nullptr, p);
    acc.end_chunk();
  });
}

// Same ids except where brute-force scores tie within tol; scores to tol.
void expect_match(const Run& r, const std::vector<int64_t>& ids, const std::vector<double>& s, double tol) {
  for (size_t i = 0; i < ids.size(); ++i) {
    CHECK_NEAR(r.scores[i], s[i], tol);
    if (r.ids[i] != ids[i]) CHECK(std::fabs(r.scores[i] - s[i]) <= tol);
  }
}

TEST(exact_ip_matches_brute_force_across_k_and_shards) {
  const int64_t n = 3000, d = 40, nq = 37;
  auto v = randn(n * d, 1), q = randn(nq * d, 2, 3.0f);  // queries not normalised
  for (int k : {1, 7, 100, 1000}) {
    std::vector<int64_t> ids;
    std::vector<double> s;
    brute(q, v, nq, n, d, k, false, ids, s);
    for (int64_t shard : {n, int64_t(777), int64_t(100)})
      for (auto kern : kernels()) {
        Run r = run(q, cl::MatrixView{v.data(), cl::DType::F32, n, d}, nq, k, cl::Metric::InnerProduct, shard, 0, kern);
        expect_match(r, ids, s, 1e-4);
      }
  }
}

TEST(exact_cosine_with_unnormalised_vectors) {
  const int64_t n = 2500, d = 64, nq = 300;
  auto v = randn(n * d, 3), q = randn(nq * d, 4, 5.0f);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t c = 0; c < d; ++c) v[j * d + c] *= 1.0f + (j % 7);
  std::vector<int64_t> ids;
  std::vector<double> s;
  brute(q, v, nq, n, d, 10, true, ids, s);
  for (auto kern : kernels()) {
    Run r = run(q, cl::MatrixView{v.data(), cl::DType::F32, n, d}, nq, 10, cl::Metric::Cosine, 1000, 0, kern);
    expect_match(r, ids, s, 1e-5);
  }
}

TEST(fp16_storage_matches_brute_force_on_rounded_values) {
  const int64_t n = 2000, d = 48, nq = 20;
  auto v = randn(n * d, 5), q = randn(nq * d, 6);
  std::vector<uint16_t> h(n * d);
  cl::floats_to_halves(v.data(), h.data(), n * d);
  std::vector<float> vr(n * d);
  cl::halves_to_floats(h.data(), vr.data(), n * d);
  std::vector<int64_t> ids;
  std::vector<double> s;
  brute(q, vr, nq, n, d, 50, false, ids, s);
  for (auto kern : kernels()) {
    Run r = run(q, cl::MatrixView{h.data(), cl::DType::F16, n, d}, nq, 50, cl::Metric::InnerProduct, 600, 0, kern);
    expect_match(r, ids, s, 1e-4);
  }
}

TEST(ties_resolve_to_the_lower_id) {
  const int64_t d = 4, n = 1500;
  std::vector<float> v(n * d, 1.0f), q(d, 1.0f);
  for (auto kern : kernels()) {
    Run r = run(q, cl::MatrixView{v.data(), cl::DType::F32, n, d}, 1, 5, cl::Metric::InnerProduct, 300, 0, kern);
    for (int i = 0; i < 5; ++i) CHECK(r.ids[i] == i);
  }
}

// FALCON's definition in double: p_j = softmax over j's chunk of T·score
// (cosine or inner product), for one query.
std::vector<double> chunk_softmax(const float* qi, const std::vector<float>& v, int64_t n, int64_t d, int64_t chunk, double T,
                                  bool cosine) {
  std::vector<double> sc(n), p(n);
  double qn = 0;
  for (int64_t c = 0; c < d; ++c) qn += double(qi[c]) * qi[c];
  for (int64_t j = 0; j < n; ++j) {
    double dot = 0, vn = 0;
    for (int64_t c = 0; c < d; ++c) dot += double(qi[c]) * v[j * d + c], vn += double(v[j * d + c]) * v[j * d + c];
    sc[j] = cosine ? dot / std::sqrt(qn * vn) : dot;
  }
  for (int64_t c0 = 0; c0 < n; c0 += chunk) {
    const int64_t c1 = std::min(n, c0 + chunk);
    double mx = *std::max_element(sc.begin() + c0, sc.begin() + c1), z = 0;
    for (int64_t j = c0; j < c1; ++j) z += std::exp(T * (sc[j] - mx));
    for (int64_t j = c0; j < c1; ++j) p[j] = std::exp(T * (sc[j] - mx)) / z;
  }
  return p;
}

// Each returned probability is the definition's k-th best, and its id has that probability.
void expect_softmax(const Run& r, const std::vector<float>& q, const std::vector<float>& v, int64_t nq, int64_t n, int64_t d,
                    int k, int64_t chunk, double T, bool cosine, double tol) {
  for (int64_t i = 0; i < nq; ++i) {
    const std::vector<double> p = chunk_softmax(q.data() + i * d, v, n, d, chunk, T, cosine);
    std::vector<double> best = p;
    std::partial_sort(best.begin(), best.begin() + k, best.end(), std::greater<double>());
    for (int j = 0; j < k; ++j) {
      const double got = r.scores[i * k + j];
      CHECK_NEAR(got, best[j], tol * std::max(1e-3, best[j]));
      CHECK(r.ids[i * k + j] >= 0 && std::fabs(p[r.ids[i * k + j]] - got) <= tol * std::max(1e-3, got));
    }
  }
}

}  // namespace

TEST(chunk_local_softmax_matches_definition) {
  const int64_t n = 1200, d = 16, nq = 3, chunk = 500;
  const float T = 100;
  auto v = randn(n * d, 7), q = randn(nq * d, 8);
  Run r = run(q, cl::MatrixView{v.data(), cl::DType::F32, n, d}, nq, 5, cl::Metric::Cosine, chunk, T);
  expect_softmax(r, q, v, nq, n, d, 5, chunk, T, true, 1e-4);
}

// The one-pass softmax of the fp32 register tiles (running max and sum of
// exp per query lane, folded across tiles, workers and adds): odd and even
// query-block counts, a dimension that leaves a partial 16-lane chunk,
// fp32 and fp16 rows, cosine and inner product, a chunk spanning adds.
TEST(one_pass_softmax_matches_definition_across_blocks_adds_and_storage) {
  const int64_t n = 3000, d = 40, chunk = 1300, add_rows = 450;
  auto v = randn(n * d, 51, 0.2f);
  std::vector<uint16_t> h(n * d);
  cl::floats_to_halves(v.data(), h.data(), n * d);
  std::vector<float> vh(n * d);
  cl::halves_to_floats(h.data(), vh.data(), n * d);
  for (int64_t nq : {int64_t(5), int64_t(37), int64_t(131)})
    for (bool cosine : {true, false})
      for (bool half : {false, true}) {
        auto q = randn(nq * d, 52 + nq, cosine ? 2.0f : 0.3f);
        const double T = cosine ? 100 : 20;
        cl::TopKOptions opt;
        opt.k = 7;
        opt.metric = cosine ? cl::Metric::Cosine : cl::Metric::InnerProduct;
        opt.softmax_temperature = static_cast<float>(T);
        opt.kernel = cl::ScanKernel::Sgemm;
        cl::TopKAccumulator acc(q.data(), nq, d, opt);
        for (int64_t c0 = 0; c0 < n; c0 += chunk) {
          for (int64_t r0 = c0; r0 < std::min(n, c0 + chunk); r0 += add_rows) {
            const int64_t rows = std::min({add_rows, n - r0, c0 + chunk - r0});
            const void* data = half ? static_cast<const void*>(h.data() + r0 * d) : v.data() + r0 * d;
            cl::Progress p;
            acc.add(cl::MatrixView{data, half ? cl::DType::F16 : cl::DType::F32, rows, d}, r0, nullptr, p);
          }
          acc.end_chunk();
        }
        Run r{std::vector<float>(nq * 7), std::vector<int64_t>(nq * 7)};
        acc.result(r.scores.data(), r.ids.data());
        expect_softmax(r, q, half ? vh : v, nq, n, d, 7, chunk, T, cosine, 1e-4);  // fp32 scores, times T
      }
}

namespace {

// An .npy-like file: a header of `offset` bytes, then the rows.
std::string write_rows_file(const void* rows, size_t bytes, int64_t offset) {
  char path[] = "/tmp/cl_test_rows_XXXXXX";
  const int fd = mkstemp(path);
  std::vector<char> head(static_cast<size_t>(offset), 'h');
  CHECK(write(fd, head.data(), head.size()) == static_cast<ssize_t>(head.size()));
  CHECK(write(fd, rows, bytes) == static_cast<ssize_t>(bytes));
  close(fd);
  return path;
}

}  // namespace

// Rows the scan reads from a file itself (a sub-range, after a header) give
// what the same rows give from memory, for every kernel and both storages.
TEST(add_file_equals_add_in_memory) {
  const int64_t n = 2600, d = 40, nq = 21, first = 300, rows = 2000, offset = 128;
  auto v = randn(n * d, 61), q = randn(nq * d, 62);
  std::vector<uint16_t> h(n * d);
  cl::floats_to_halves(v.data(), h.data(), n * d);
  for (bool half : {false, true}) {
    const void* base = half ? static_cast<const void*>(h.data()) : v.data();
    const size_t elem = half ? 2 : 4;
    const std::string path = write_rows_file(base, n * d * elem, offset);
    for (auto kern : kernels())
      for (float T : {0.0f, 50.0f}) {
        if (T > 0 && kern != cl::ScanKernel::Sgemm) continue;
        cl::TopKOptions opt;
        opt.k = 9;
        opt.metric = cl::Metric::Cosine;
        opt.softmax_temperature = T;
        opt.kernel = kern;
        cl::TopKAccumulator from_file(q.data(), nq, d, opt), from_memory(q.data(), nq, d, opt);
        cl::Progress p1, p2;
        from_file.add_file(cl::FileRows{path, offset, half ? cl::DType::F16 : cl::DType::F32, d, first, rows}, 7, p1);
        from_memory.add(cl::MatrixView{static_cast<const char*>(base) + first * d * elem, half ? cl::DType::F16 : cl::DType::F32, rows, d},
                        7, nullptr, p2);
        Run a{std::vector<float>(nq * 9), std::vector<int64_t>(nq * 9)}, b = a;
        from_file.result(a.scores.data(), a.ids.data());
        from_memory.result(b.scores.data(), b.ids.data());
        CHECK(a.ids == b.ids);
        for (size_t i = 0; i < a.scores.size(); ++i) CHECK_NEAR(a.scores[i], b.scores[i], 1e-6 * std::max(1.0f, std::fabs(b.scores[i])));
      }
    cl::TopKAccumulator acc(q.data(), nq, d, cl::TopKOptions{});
    cl::Progress p;
    CHECK_THROWS_WITH(acc.add_file(cl::FileRows{path, offset, half ? cl::DType::F16 : cl::DType::F32, d, first, n}, 0, p), "(truncated?)");
    CHECK_THROWS_WITH(acc.add_file(cl::FileRows{path + ".missing", 0, cl::DType::F32, d, 0, 1}, 0, p), ".missing: cannot open");
    std::remove(path.c_str());
  }
}

TEST(k_larger_than_vocabulary_pads_with_minus_one) {
  std::vector<float> v = randn(3 * 4, 9), q = randn(4, 10);
  Run r = run(q, cl::MatrixView{v.data(), cl::DType::F32, 3, 4}, 1, 5, cl::Metric::InnerProduct, 3);
  CHECK(r.ids[2] >= 0 && r.ids[3] == -1 && r.ids[4] == -1);
}

// 4000 rows of width 63 whose scores against any query differ by ~2e-4
// from their neighbours', far inside a bf16 or int8 rounding (~1e-1), and
// 3 queries with their brute-force top-20.
struct NearTies {
  int64_t d = 63, n = 4000;
  std::vector<float> v, q;
  std::vector<int64_t> ids;
  std::vector<double> s;
};

static NearTies near_ties() {
  NearTies t;
  auto base = randn(t.d, 31);
  t.v.resize(t.n * t.d);
  for (int64_t j = 0; j < t.n; ++j)
    for (int64_t c = 0; c < t.d; ++c) t.v[j * t.d + c] = base[c] * (1.0f + 1e-5f * float(j % 97)) + (c == j % t.d ? 1e-4f : 0.0f);
  t.q = randn(3 * t.d, 32);
  brute(t.q, t.v, 3, t.n, t.d, 20, false, t.ids, t.s);
  return t;
}

// Near-ties a bf16 or int8 rounding would reorder: the certified bound must
// send them to fp32 re-scoring so the order is exact. d = 63 leaves a
// padded step in both formats.
TEST(screening_keeps_near_ties_exact) {
  const NearTies t = near_ties();
  for (auto kern : kernels()) {
    Run r = run(t.q, cl::MatrixView{t.v.data(), cl::DType::F32, t.n, t.d}, 3, 20, cl::Metric::InnerProduct, t.n, 0, kern);
    // Neighbouring scores differ by ~2e-4, the rounding by ~1e-1: only exact re-scoring orders them.
    expect_match(r, t.ids, t.s, 2e-5);
  }
}

// One dimension a thousand times the others: int8 rounds the rest of each
// vector to zero, the bound grows accordingly, and the answer stays exact.
TEST(screening_is_exact_when_one_dimension_dominates) {
  const int64_t d = 33, n = 3000, nq = 50;
  auto v = randn(n * d, 33), q = randn(nq * d, 34);
  for (int64_t j = 0; j < n; ++j) v[j * d] = 1000.0f;
  std::vector<int64_t> ids;
  std::vector<double> s;
  brute(q, v, nq, n, d, 10, false, ids, s);
  for (auto kern : kernels()) {
    Run r = run(q, cl::MatrixView{v.data(), cl::DType::F32, n, d}, nq, 10, cl::Metric::InnerProduct, 1000, 0, kern);
    expect_match(r, ids, s, 2e-3);  // scores ~1e3: fp32 carries ~1e-4
  }
}

// Queries of small integers round exactly in both formats, so only the rows'
// rounding separates screened scores from exact ones: the bound's row term
// alone must keep every top-k row.
TEST(screening_bound_covers_the_rows_rounding) {
  const int64_t d = 64, n = 20000, nq = 8;
  // Near-copies of five rows: scores within 1e-3·‖q‖ of each other, rounding errors near 1e-2·‖q‖.
  auto v = randn(n * d, 44), base = randn(5 * d, 46), g = randn(nq * d, 45);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t c = 0; c < d; ++c) v[j * d + c] = base[(j % 5) * d + c] + 1e-3f * v[j * d + c];
  std::vector<float> q(nq * d);
  for (int64_t i = 0; i < nq * d; ++i) q[i] = std::round(std::clamp(g[i] * 20.0f, -60.0f, 60.0f));
  for (int64_t i = 0; i < nq; ++i) q[i * d] = 63;  // the int8 scale is then exactly 1
  std::vector<int64_t> ids;
  std::vector<double> s;
  brute(q, v, nq, n, d, 10, false, ids, s);
  for (auto kern : kernels()) {
    Run r = run(q, cl::MatrixView{v.data(), cl::DType::F32, n, d}, nq, 10, cl::Metric::InnerProduct, n, 0, kern);
    expect_match(r, ids, s, 1e-3);
  }
}

// Rows or queries so small that fp32 squares of their rounding errors
// underflow (and VDPBF16PS flushes their products) are screened as zero with
// their norm as the error: every kernel still equals brute force, ip and
// cosine. Measured before: int8 lost ~80% of the ids at rows of 1e-37.
TEST(screening_is_exact_for_vectors_too_small_to_round) {
  const int64_t d = 64, n = 3000, nq = 40;
  for (double rows : {1.0, 1e-20, 1e-37, 1e-38})
    for (double queries : {1.0, 1e-30}) {
      if (rows * queries < 1e-38) continue;  // scores below fp32's normal range
      auto v = randn(n * d, 71), q = randn(nq * d, 72);
      for (auto& x : v) x = float(x * rows);
      for (auto& x : q) x = float(x * queries);
      for (bool cosine : {false, true}) {
        if (cosine && rows * rows < 1e-36) continue;  // a row's fp32 squared norm underflows: cosine refuses it
        std::vector<int64_t> ids;
        std::vector<double> s;
        brute(q, v, nq, n, d, 10, cosine, ids, s);
        const double tol = 1e-5 * std::fabs(s[0]);
        for (auto kern : kernels())
          expect_match(run(q, cl::MatrixView{v.data(), cl::DType::F32, n, d}, nq, 10,
                           cosine ? cl::Metric::Cosine : cl::Metric::InnerProduct, n, 0, kern),
                       ids, s, tol);
      }
    }
}

// The mirror case, scanned directly in the identity frame: rows of small
// integers (each with a 63, so int8 keeps them exactly), each one unit
// away from one of five random rows in one coordinate; only the queries'
// rounding moves screened scores, by more than the gaps.
TEST(screening_bound_covers_the_queries_rounding) {
  const int64_t d = 64, n = 20000, nq = 8;
  const int k = 10;
  auto g = randn(5 * d, 47), q = randn(nq * d, 48);
  std::vector<float> v(n * d);
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t c = 0; c < d; ++c) v[j * d + c] = std::round(std::clamp(g[(j % 5) * d + c] * 20.0f, -60.0f, 60.0f));
    v[j * d] = 63;
    v[j * d + 1 + (j / 5) % (d - 1)] += float(j % 3) - 1.0f;
  }
  std::vector<int64_t> ids;
  std::vector<double> s;
  brute(q, v, nq, n, d, k, false, ids, s);
  for (auto f : {cl::ScreenFormat::Bf16, cl::ScreenFormat::Int8}) {
    if (!cl::screening_available(f)) continue;
    const cl::ScreenQueries packed = cl::pack_screen_queries(f, cl::ScreenFrame{}, q.data(), nq, d);
    cl::HeapSet heaps(nq, k);
    cl::ScreenScratch scratch;
    for (int64_t r0 = 0; r0 < n; r0 += 512)
      cl::scan_tile_screened(packed, cl::ScreenTile{v.data() + r0 * d, std::min<int64_t>(512, n - r0), nullptr, r0}, heaps, scratch);
    Run r{std::vector<float>(nq * k), std::vector<int64_t>(nq * k)};
    for (int64_t i = 0; i < nq; ++i) heaps.at(i).write_sorted(r.scores.data() + i * k, r.ids.data() + i * k);
    expect_match(r, ids, s, 1e-3);
  }
}

// CLIP-like rows: a large shared mean and a few wide dimensions. The frame
// fitted to them is not the identity (so the shifted, scaled rounding runs)
// and both formats still equal brute force, ip and cosine; isotropic rows
// keep the identity.
TEST(screening_frame_fits_shifted_anisotropic_rows_and_stays_exact) {
  const int64_t d = 48, n = 5000, nq = 40;
  auto v = randn(n * d, 41), q = randn(nq * d, 42);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t c = 0; c < d; ++c) v[j * d + c] = 0.05f * v[j * d + c] * (c < 3 ? 20.0f : 1.0f) + (c % 5 == 0 ? 2.0f : 0.1f);
  CHECK(!cl::fit_screen_frame(cl::MatrixView{v.data(), cl::DType::F32, n, d}).identity());
  auto iso = randn(n * d, 43);
  CHECK(cl::fit_screen_frame(cl::MatrixView{iso.data(), cl::DType::F32, n, d}).identity());
  for (bool cosine : {false, true}) {
    std::vector<int64_t> ids;
    std::vector<double> s;
    brute(q, v, nq, n, d, 10, cosine, ids, s);
    for (auto kern : kernels()) {
      Run r = run(q, cl::MatrixView{v.data(), cl::DType::F32, n, d}, nq, 10, cosine ? cl::Metric::Cosine : cl::Metric::InnerProduct,
                  1700, 0, kern);
      expect_match(r, ids, s, 1e-4);
    }
  }
}

// The int8 value of dimension c in the group layout: per 12 dimensions an
// A, a B and a P word; byte k of A and B from the pair (2k, 2k + 1) of the
// first 8 (queries keep the even value in A, rows the odd one; A bytes hold
// value + 64), P's bytes the last 4 (rows' hold value + 64).
int int8_value(const uint8_t* h8, int64_t c, bool row) {
  const int64_t g = c / 12 * 12, s = c % 12;
  if (s >= 8) return row ? int(h8[g + s]) - 64 : int(int8_t(h8[g + s]));
  const bool in_a = (s % 2 == 1) == row;
  return in_a ? int(h8[g + s / 2]) - 64 : int(int8_t(h8[g + 4 + s / 2]));
}

// The values a rounded vector holds in the format: bf16 to nearest even
// (checked independently), int16 and int8 as packed with their scale.
std::vector<double> held(cl::ScreenFormat f, const float* x, const uint32_t* packed, float scale, int64_t d, bool row) {
  std::vector<double> v(static_cast<size_t>(d));
  const auto* h16 = reinterpret_cast<const int16_t*>(packed);
  const auto* h8 = reinterpret_cast<const uint8_t*>(packed);
  for (int64_t c = 0; c < d; ++c)
    v[c] = f == cl::ScreenFormat::Bf16   ? double(check::round_bf16(x[c]))
           : f == cl::ScreenFormat::Int16 ? double(h16[c]) * scale
                                          : double(int8_value(h8, c, row)) * scale;
  return v;
}

// Query j's packed values, gathered from its register blocks.
std::vector<uint32_t> query_words(const cl::ScreenQueries& q, int64_t j) {
  std::vector<uint32_t> one(static_cast<size_t>(q.steps));
  for (int64_t p = 0; p < q.steps; ++p) one[p] = q.packed[((j / 16) * q.steps + p) * 16 + j % 16];
  return one;
}

// int16 rounding: every value within half a step of x, no |value| past
// 32,767, the values' norm at most 46,340 (so d products sum exactly in
// int32), and the step no coarser than those two caps need.
void check_int16_rounding(const float* x, const uint32_t* packed, float scale, int64_t d) {
  const auto* h = reinterpret_cast<const int16_t*>(packed);
  double norm = 0, mx = 0, ss = 0;
  for (int64_t c = 0; c < d; ++c) {
    CHECK(std::fabs(double(h[c]) * scale - x[c]) <= 0.51 * scale);  // half a step, and scale·(1/scale) ≠ 1 in fp32
    CHECK(h[c] >= -32767);
    norm += double(h[c]) * h[c];
    mx = std::max(mx, std::fabs(double(x[c])));
    ss += double(x[c]) * x[c];
  }
  CHECK(std::sqrt(norm) <= 46340);
  CHECK(scale <= 1.001 * std::max(mx / 32767, std::sqrt(ss) / (46340 - 0.5 * std::sqrt(double(d)))));
}

// int8 rounding: every value within half a step of x and at most 63 in
// size (so a query's and a row's values sum within a byte in the pair
// kernel), the step max|x|/63; padding values (up to the whole group of 12)
// are zeros.
void check_int8_rounding(const float* x, const uint32_t* packed, float scale, int64_t d, bool row) {
  const auto* h8 = reinterpret_cast<const uint8_t*>(packed);
  double mx = 0;
  for (int64_t c = 0; c < d; ++c) {
    const int v = int8_value(h8, c, row);
    CHECK(std::abs(v) <= 63 && std::fabs(double(v) * scale - x[c]) <= 0.51 * scale);
    mx = std::max(mx, std::fabs(double(x[c])));
  }
  CHECK_NEAR(scale, mx / 63, 1e-6 * mx);
  for (int64_t c = d; c < (d + 11) / 12 * 12; ++c) CHECK(int8_value(h8, c, row) == 0);
}

// screen_products: per row and query, the sum of the products of the
// rounded values, plus the query's addend: within fp32 summation for bf16,
// within three roundings for the integer formats (their sums are exact); at
// d = 40, 41 and 47 (steps at run time; 40 and 41 end in padding values
// of a group's pairs, 47 in its plain third) and 512 (compiled), with 37
// queries, so the last block is partial and nothing past
// query 37 of a row is written. Packed block by block, the queries equal
// pack_screen_queries'; a query that overflows is named by its block.
TEST(screen_products_sum_the_rounded_products) {
  for (auto f : {cl::ScreenFormat::Bf16, cl::ScreenFormat::Int16, cl::ScreenFormat::Int8}) {
    if (!cl::screening_available(f)) continue;
    for (int64_t d : {40, 41, 47, 512}) {
      const int64_t n = 13, nq = 37, ldo = nq + 5;
      auto v = randn(n * d, 50), q = randn(nq * d, 51), add = randn(nq, 52);
      cl::ScreenQueries blocks;
      blocks.packed.assign(48 * d, 0x7f7f7f7fu);  // a reused copy: its padding lanes must not keep old values
      cl::shape_screen_queries(f, cl::ScreenFrame{}, nq, d, blocks);
      for (int64_t b = 0; b < blocks.blocks; ++b) CHECK(cl::pack_screen_block(q.data(), b, blocks) == -1);
      const cl::ScreenQueries whole = cl::pack_screen_queries(f, cl::ScreenFrame{}, q.data(), nq, d);
      CHECK(blocks.packed == whole.packed && blocks.norm == whole.norm && blocks.slack == whole.slack &&
            blocks.rescore == whole.rescore && blocks.f32.empty());
      cl::ScreenRows rows;
      rows.resize(n, cl::screen_steps(f, d));
      cl::round_screen_rows(f, cl::ScreenFrame{}, v.data(), n, d, 0, rows, 0);
      std::vector<float> out(n * ldo, 7.0f);
      cl::screen_products(blocks, rows, 0, n, out.data(), ldo, add.data());
      std::vector<std::vector<double>> qh(nq);
      for (int64_t j = 0; j < nq; ++j) {
        const std::vector<uint32_t> one = query_words(blocks, j);
        qh[j] = held(f, q.data() + j * d, one.data(), blocks.scale[j], d, false);
        if (f == cl::ScreenFormat::Int16) check_int16_rounding(q.data() + j * d, one.data(), blocks.scale[j], d);
        if (f == cl::ScreenFormat::Int8) check_int8_rounding(q.data() + j * d, one.data(), blocks.scale[j], d, false);
      }
      for (int64_t i = 0; i < n; ++i) {
        const uint32_t* packed = rows.packed.data() + i * rows.steps;
        const std::vector<double> vh = held(f, v.data() + i * d, packed, rows.scale[i], d, true);
        if (f == cl::ScreenFormat::Int16) check_int16_rounding(v.data() + i * d, packed, rows.scale[i], d);
        if (f == cl::ScreenFormat::Int8) check_int8_rounding(v.data() + i * d, packed, rows.scale[i], d, true);
        for (int64_t j = 0; j < nq; ++j) {
          double prod = 0, size = 0;
          for (int64_t c = 0; c < d; ++c) prod += vh[c] * qh[j][c], size += std::fabs(vh[c] * qh[j][c]);
          const double ref = prod + add[j];
          const double tol = f == cl::ScreenFormat::Bf16 ? double(d + 2) * 0x1p-24 * (size + std::fabs(add[j]))
                                                         : 0x1p-22 * (std::fabs(prod) + std::fabs(ref));
          CHECK_NEAR(out[i * ldo + j], ref, tol);
        }
        for (int64_t j = nq; j < ldo; ++j) CHECK(out[i * ldo + j] == 7.0f);
      }
    }
    auto q = randn(40 * 8, 53);
    q[21 * 8 + 3] = 1e30f;  // its squared norm overflows
    cl::ScreenQueries blocks;
    cl::shape_screen_queries(f, cl::ScreenFrame{}, 40, 8, blocks);
    CHECK(cl::pack_screen_block(q.data(), 0, blocks) == -1 && cl::pack_screen_block(q.data(), 1, blocks) == 21);
  }
}

// Int16 products at the int32 accumulator's edge: vectors of equal values
// (the norm cap binds: values near 46,340/√d) and of one spike (the range
// cap binds), at d = 4,096, where a per-value cap alone would let the sums
// overflow, and at d = 63², where equal values sit at 735.06 and would round
// up past the cap (736·63 > 46,340) without its √d/2 allowance; every
// product must equal the float64 one.
TEST(int16_products_never_overflow) {
  const auto f = cl::ScreenFormat::Int16;
  if (!cl::screening_available(f)) return;
  for (int64_t d : {4096, 3969}) {
    const int64_t n = 3, nq = 3;
    std::vector<float> v(n * d, 1.0f), q(nq * d, -2.5f);
    v[2 * d + 7] = 1e4f;  // a spike
    for (int64_t c = 0; c < d; ++c) q[d + c] = c % 2 ? 3.0f : -3.0f;  // alternating signs
    q[2 * d + 7] = -1e4f;
    const cl::ScreenQueries pq = cl::pack_screen_queries(f, cl::ScreenFrame{}, q.data(), nq, d);
    cl::ScreenRows rows;
    rows.resize(n, cl::screen_steps(f, d));
    cl::round_screen_rows(f, cl::ScreenFrame{}, v.data(), n, d, 0, rows, 0);
    std::vector<float> out(n * nq), zero(nq, 0.0f);
    cl::screen_products(pq, rows, 0, n, out.data(), nq, zero.data());
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < nq; ++j) {
        double ref = 0, size = 0;
        for (int64_t c = 0; c < d; ++c) ref += double(v[i * d + c]) * q[j * d + c], size += std::fabs(double(v[i * d + c]) * q[j * d + c]);
        double norm_v = 0, norm_q = 0;
        for (int64_t c = 0; c < d; ++c) norm_v += double(v[i * d + c]) * v[i * d + c], norm_q += double(q[j * d + c]) * q[j * d + c];
        // The rounding moves each side by at most half a step per value: ‖v‖·‖q‖·√d/46,000 each way.
        CHECK_NEAR(out[i * nq + j], ref, 2 * std::sqrt(norm_v * norm_q) * std::sqrt(double(d)) / 46000 + 1e-6 * size);
      }
  }
}

// The bound where it is tightest: a row along the query's rounding residual
// a − â (the product's error is then about ‖a − â‖‖b‖, the query's slack
// term), and a query along a row's residual b − b̂ (about ‖a‖‖b − b̂‖, the
// row's err term). In each format the error of the rounded product must stay
// within the bound's terms and reach at least half the term it aims at; and
// each term must hold its float64 definition (‖a − â‖, ‖b − b̂‖, ‖a‖, ‖b̂‖),
// rounded up by little, so a term computed too small fails here.
TEST(screening_bound_covers_aligned_rounding_errors) {
  const int64_t d = 512;
  for (auto f : {cl::ScreenFormat::Bf16, cl::ScreenFormat::Int16, cl::ScreenFormat::Int8}) {
    if (!cl::screening_available(f)) continue;
    auto round_row = [&](const std::vector<float>& v, cl::ScreenRows& rows) {
      rows.resize(1, cl::screen_steps(f, d));
      cl::round_screen_rows(f, cl::ScreenFrame{}, v.data(), 1, d, 0, rows, 0);
      return held(f, v.data(), rows.packed.data(), rows.scale[0], d, true);
    };
    auto along = [&](const std::vector<float>& x, const std::vector<double>& xh) {  // x − x̂, scaled to ‖x‖
      double ne = 0, nx = 0;
      for (int64_t c = 0; c < d; ++c) ne += (x[c] - xh[c]) * (x[c] - xh[c]), nx += double(x[c]) * x[c];
      std::vector<float> out(d);
      for (int64_t c = 0; c < d; ++c) out[c] = static_cast<float>((x[c] - xh[c]) * std::sqrt(nx / ne));
      return out;
    };
    // Error of the rounded product, and the bound's screening terms.
    auto check_pair = [&](const std::vector<float>& q, const std::vector<float>& v, bool aim_at_slack) {
      const cl::ScreenQueries pq = cl::pack_screen_queries(f, cl::ScreenFrame{}, q.data(), 1, d);
      cl::ScreenRows rows;
      const std::vector<double> vh = round_row(v, rows);
      const std::vector<uint32_t> words = query_words(pq, 0);
      const std::vector<double> qh = held(f, q.data(), words.data(), pq.scale[0], d, false);
      double rounded = 0, exact = 0, ea = 0, eb = 0, na = 0, nbh = 0;
      for (int64_t c = 0; c < d; ++c) {
        rounded += qh[c] * vh[c], exact += double(q[c]) * v[c];
        ea += (q[c] - qh[c]) * (q[c] - qh[c]), eb += (v[c] - vh[c]) * (v[c] - vh[c]);
        na += double(q[c]) * q[c], nbh += vh[c] * vh[c];
      }
      ea = std::sqrt(ea), eb = std::sqrt(eb), na = std::sqrt(na), nbh = std::sqrt(nbh);
      CHECK(pq.slack[0] >= ea && pq.slack[0] <= 1.001 * ea + 1e-4 * na);  // + t·‖â‖
      CHECK(rows.err[0] >= eb && rows.err[0] <= 1.001 * eb + 1e-6 * nbh);
      CHECK(pq.norm[0] >= na && pq.norm[0] <= (1 + 1e-4) * na && rows.norm[0] >= nbh);
      const double slack_term = double(rows.norm[0]) * pq.slack[0], err_term = double(rows.err[0]) * pq.norm[0];
      CHECK(std::fabs(rounded - exact) <= slack_term + err_term);
      CHECK(std::fabs(rounded - exact) >= 0.5 * (aim_at_slack ? slack_term : err_term));
    };
    const auto q = randn(d, 70), v = randn(d, 71);
    const cl::ScreenQueries pq = cl::pack_screen_queries(f, cl::ScreenFrame{}, q.data(), 1, d);
    const std::vector<uint32_t> words = query_words(pq, 0);
    check_pair(q, along(q, held(f, q.data(), words.data(), pq.scale[0], d, false)), true);
    cl::ScreenRows rows;
    check_pair(along(v, round_row(v, rows)), v, false);
  }
}

// Int8 products reach 63²·d, past int32 beyond d = 541,064: there 'auto'
// and prepared copies screen in another format and still equal brute force,
// and an explicit 'int8' kernel is refused, naming the limit.
TEST(int8_screening_stops_where_its_sums_would_overflow) {
  CHECK(cl::kInt8MaxDim == 541064);  // 63²·541,064 < 2³¹ ≤ 63²·541,065
  CHECK(cl::screen_fits(cl::ScreenFormat::Int8, 541064) && !cl::screen_fits(cl::ScreenFormat::Int8, 541065));
  CHECK(cl::screen_fits(cl::ScreenFormat::Int16, 1 << 24) && cl::screen_fits(cl::ScreenFormat::Bf16, 1 << 24));
  const int64_t n = 6, d = 541100, nq = 2;
  auto v = randn(n * d, 60, 0.01f, 1.0f), q = randn(nq * d, 61, 0.01f, 1.0f);  // near-equal values: large sums
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < d; ++c) v[i * d + c] *= 1.0f + 0.1f * float(i);
  std::vector<int64_t> ids;
  std::vector<double> s;
  brute(q, v, nq, n, d, 3, false, ids, s);
  const cl::MatrixView vm{v.data(), cl::DType::F32, n, d};
  expect_match(run(q, vm, nq, 3, cl::Metric::InnerProduct, n), ids, s, 1e-3 * std::fabs(s[0]));
  cl::Progress p;
  CHECK(cl::prepare_vocab(vm, nullptr, p).format != cl::ScreenFormat::Int8);
  if (cl::screening_available(cl::ScreenFormat::Int8))
    CHECK_THROWS_WITH(run(q, vm, nq, 3, cl::Metric::InnerProduct, n, 0, cl::ScanKernel::Int8), "screens dimensions up to 541064");
  // The scan reports what it screened in: below the limit 'auto' takes int8, above it bf16.
  const auto took = [&](int64_t dim) { return std::string(cl::TopKAccumulator(q.data(), 1, dim, cl::TopKOptions{}).arithmetic()); };
  const bool int8 = cl::screening_available(cl::ScreenFormat::Int8), bf16 = cl::screening_available(cl::ScreenFormat::Bf16);
  CHECK(took(cl::kInt8MaxDim) == (int8 ? "int8" : bf16 ? "bf16" : "fp32"));
  CHECK(took(d) == (bf16 ? "bf16" : "fp32"));
}

// The workers' shared floor: after two threads offer rows at once, each
// query's floor is the k-th best of every score offered (or what was known
// before, when higher), as a sort of all of them says; -inf until k rows.
TEST(screen_floor_is_the_kth_best_of_every_row_offered) {
  const int k = 5, nq = 3, per = 20000;
  cl::ScreenFloor floor(nq, k);
  const float known[nq] = {-INFINITY, 0.5f, 3.0f};
  for (int q = 0; q < nq; ++q) floor.reset(q, known[q]);
  std::vector<std::vector<float>> scores(2, std::vector<float>(per * nq));
  for (int w = 0; w < 2; ++w) {
    std::mt19937 g(90 + w);
    std::normal_distribution<float> n;
    for (float& x : scores[w]) x = n(g);
  }
  std::vector<std::thread> workers;
  for (int w = 0; w < 2; ++w)
    workers.emplace_back([&, w] {
      for (int i = 0; i < per; ++i)
        for (int q = 0; q < nq; ++q) floor.offer(q, scores[w][i * nq + q], int64_t(w) * per + i);
    });
  for (auto& t : workers) t.join();
  for (int q = 0; q < nq; ++q) {
    std::vector<float> all;
    for (int w = 0; w < 2; ++w)
      for (int i = 0; i < per; ++i) all.push_back(scores[w][i * nq + q]);
    std::sort(all.rbegin(), all.rend());
    CHECK(floor.at(q) == std::max(known[q], all[k - 1]));
  }
  cl::ScreenFloor fresh(1, k);
  for (int i = 0; i < k - 1; ++i) fresh.offer(0, float(i), i);
  CHECK(fresh.at(0) == -INFINITY);
  fresh.offer(0, 7.0f, 9);
  CHECK(fresh.at(0) == 0.0f);
}

TEST(bad_input_is_named) {
  std::vector<float> q(8, 1.0f), v(12, 1.0f);
  cl::TopKOptions opt;
  cl::TopKAccumulator acc(q.data(), 2, 4, opt);
  cl::Progress p;
  CHECK_THROWS_WITH(acc.add(cl::MatrixView{v.data(), cl::DType::F32, 4, 3}, 0, nullptr, p), "expected dimension 4");
  std::vector<float> qn = q;
  qn[5] = NAN;
  CHECK_THROWS_WITH(cl::TopKAccumulator(qn.data(), 2, 4, opt), "queries: expected finite values");
  v.assign(40, 1.0f);
  v[22] = INFINITY;
  CHECK_THROWS_WITH(acc.add(cl::MatrixView{v.data(), cl::DType::F32, 10, 4}, 100, nullptr, p), "row 105");
  opt.metric = cl::Metric::Cosine;
  cl::TopKAccumulator cos(q.data(), 2, 4, opt);
  std::vector<float> z(8, 0.0f);
  z[0] = 1;
  CHECK_THROWS_WITH(cos.add(cl::MatrixView{z.data(), cl::DType::F32, 2, 4}, 0, nullptr, p), "row 1 has zero norm");
  z[5] = NAN;  // a NaN is named as such, not as a zero norm, with ERR_NAN
  CHECK_THROWS_WITH(cos.add(cl::MatrixView{z.data(), cl::DType::F32, 2, 4}, 0, nullptr, p), "row 1 holds a NaN or infinite value");
  try {
    cos.add(cl::MatrixView{z.data(), cl::DType::F32, 2, 4}, 0, nullptr, p);
  } catch (const cl::Error& e) {
    CHECK(e.code == cl::ErrorCode::NaN);
  }
  std::vector<float> qz(8, 0.0f);
  CHECK_THROWS_WITH(cl::TopKAccumulator(qz.data(), 2, 4, opt), "zero norm");
  // A finite row whose squares overflow float32 is named as such, with its largest value.
  std::vector<float> big(8, 1.0f);
  big[6] = -3e19f;
  CHECK_THROWS_WITH(cos.add(cl::MatrixView{big.data(), cl::DType::F32, 2, 4}, 0, nullptr, p),
                    "row 1: expected a sum of squares within float32's range (a norm up to 1.8e19), got values up to -3e+19 (column 2)");
}

TEST(cancel_flag_stops_the_scan) {
  auto v = randn(5000 * 8, 11), q = randn(8, 12);
  cl::TopKAccumulator acc(q.data(), 1, 8, cl::TopKOptions{});
  std::atomic<int32_t> flag{1};
  cl::Progress p(nullptr, &flag);
  bool cancelled = false;
  try {
    acc.add(cl::MatrixView{v.data(), cl::DType::F32, 5000, 8}, 0, nullptr, p);
  } catch (const cl::Cancelled&) {
    cancelled = true;
  }
  CHECK(cancelled);
}

namespace {

// The vocabulary prepared once, then scanned in shards through add_prepared.
Run run_prepared(const cl::PreparedVocab& pv, const std::vector<float>& q, const cl::MatrixView& v, int64_t nq, int k,
                 cl::Metric metric, int64_t shard_rows, cl::ScanKernel kernel = cl::ScanKernel::Auto) {
  cl::TopKOptions opt;
  opt.k = k;
  opt.metric = metric;
  opt.kernel = kernel;
  return scan_shards(q, v, nq, opt, shard_rows, [&pv](cl::TopKAccumulator& acc, const cl::MatrixView& s, int64_t r0) {
    cl::Progress p;
    acc.add_prepared(pv, s, r0, r0, p);
  });
}

cl::PreparedVocab prepare(const cl::MatrixView& v) {
  cl::Progress p;
  return cl::prepare_vocab(v, nullptr, p);
}

// Bitwise the same ids and scores.
void expect_same(const Run& a, const Run& b) {
  CHECK(a.ids == b.ids);
  CHECK(a.scores == b.scores);
}

std::vector<cl::ScanKernel> screened_kernels() {
  std::vector<cl::ScanKernel> k = {cl::ScanKernel::Auto};
  for (auto kern : kernels())
    if (kern != cl::ScanKernel::Sgemm) k.push_back(kern);
  return k;
}

}  // namespace

// Rows rounded once give what rows rounded per tile give: the brute force's
// answer, and bitwise the unprepared scan's (ip and cosine, fp32 and fp16,
// one shard or several, k up to the rows).
TEST(prepared_scan_matches_brute_force_and_the_unprepared_scan) {
  const int64_t n = 3000, d = 40, nq = 37;
  auto v = randn(n * d, 61, 1.0f, 0.3f), q = randn(nq * d, 62, 3.0f);
  for (int64_t j = 0; j < n; ++j) v[j * d + 3] *= 8.0f;  // an outlier dimension, so the frame is not the identity
  std::vector<uint16_t> h(n * d);
  cl::floats_to_halves(v.data(), h.data(), n * d);
  std::vector<float> vr(n * d);
  cl::halves_to_floats(h.data(), vr.data(), n * d);
  for (bool half : {false, true}) {
    const cl::MatrixView m = half ? cl::MatrixView{h.data(), cl::DType::F16, n, d} : cl::MatrixView{v.data(), cl::DType::F32, n, d};
    const cl::PreparedVocab pv = prepare(m);
    CHECK(pv.format.has_value() == (cl::screening_available(cl::ScreenFormat::Bf16) || cl::screening_available(cl::ScreenFormat::Int8)));
    CHECK(!pv.format || !pv.frame.identity());
    for (auto metric : {cl::Metric::InnerProduct, cl::Metric::Cosine})
      for (int k : {1, 10, 100, int(n)}) {
        std::vector<int64_t> ids;
        std::vector<double> s;
        brute(q, half ? vr : v, nq, n, d, k, metric == cl::Metric::Cosine, ids, s);
        for (int64_t shard : {n, int64_t(777)})
          for (auto kern : screened_kernels()) {
            Run r = run_prepared(pv, q, m, nq, k, metric, shard, kern);
            expect_match(r, ids, s, 1e-3);
            expect_same(r, run(q, m, nq, k, metric, shard, 0, kern));
          }
      }
  }
}

TEST(prepared_scan_keeps_near_ties_and_ties_exact) {
  const NearTies t = near_ties();
  const cl::MatrixView m{t.v.data(), cl::DType::F32, t.n, t.d};
  const cl::PreparedVocab pv = prepare(m);
  for (auto kern : screened_kernels()) {
    Run r = run_prepared(pv, t.q, m, 3, 20, cl::Metric::InnerProduct, 1000, kern);
    expect_match(r, t.ids, t.s, 2e-5);
    expect_same(r, run(t.q, m, 3, 20, cl::Metric::InnerProduct, 1000, 0, kern));
  }
  std::vector<float> same(1500 * 4, 1.0f), q1(4, 1.0f);
  const cl::MatrixView ones{same.data(), cl::DType::F32, 1500, 4};
  Run r = run_prepared(prepare(ones), q1, ones, 1, 5, cl::Metric::InnerProduct, 300);
  for (int i = 0; i < 5; ++i) CHECK(r.ids[i] == i);
}

TEST(prepared_k_larger_than_vocabulary_pads_with_minus_one) {
  std::vector<float> v = randn(3 * 4, 9), q = randn(4, 10);
  const cl::MatrixView m{v.data(), cl::DType::F32, 3, 4};
  Run r = run_prepared(prepare(m), q, m, 1, 5, cl::Metric::InnerProduct, 3);
  CHECK(r.ids[2] >= 0 && r.ids[3] == -1 && r.ids[4] == -1);
  expect_same(r, run(q, m, 1, 5, cl::Metric::InnerProduct, 3));
}

// A copy rebuilt from its arrays (as a store reloads it) scans the same;
// arrays that do not fit together are refused.
TEST(prepared_copy_from_its_arrays_and_damage_refused) {
  const int64_t n = 1200, d = 24, nq = 5;
  auto v = randn(n * d, 71, 1.0f, 2.0f), q = randn(nq * d, 72);
  const cl::MatrixView m{v.data(), cl::DType::F32, n, d};
  const cl::PreparedVocab pv = prepare(m);
  cl::PreparedVocab copy;
  copy.format = pv.format;
  copy.rows = pv.rows;
  copy.d = pv.d;
  copy.frame = pv.frame;
  copy.screen = pv.screen;
  copy.inv = pv.inv;
  cl::check_prepared(copy);
  expect_same(run_prepared(copy, q, m, nq, 7, cl::Metric::Cosine, n), run(q, m, nq, 7, cl::Metric::Cosine, n));
  if (!copy.format) return;
  cl::PreparedVocab bad = copy;
  bad.screen.err[17] = -1;
  CHECK_THROWS_WITH(cl::check_prepared(bad), "finite terms");
  bad = copy;
  bad.screen.packed.pop_back();
  CHECK_THROWS_WITH(cl::check_prepared(bad), "packed steps");
  if (copy.frame.identity()) return;
  bad = copy;
  bad.frame.inv_c[2] = 0.3f;
  CHECK_THROWS_WITH(cl::check_prepared(bad), "power of two");
}

TEST(prepared_zero_row_serves_ip_and_is_named_under_cosine) {
  std::vector<float> v = randn(50 * 8, 81), q = randn(8, 82);
  std::fill(v.begin() + 20 * 8, v.begin() + 21 * 8, 0.0f);
  const cl::MatrixView m{v.data(), cl::DType::F32, 50, 8};
  const cl::PreparedVocab pv = prepare(m);
  CHECK(pv.inv[20] == 0.0f);
  expect_same(run_prepared(pv, q, m, 1, 4, cl::Metric::InnerProduct, 50), run(q, m, 1, 4, cl::Metric::InnerProduct, 50));
  CHECK_THROWS_WITH(run_prepared(pv, q, m, 1, 4, cl::Metric::Cosine, 50), "row 20 has zero norm");
}

TEST(prepare_is_cancelled_by_the_flag) {
  auto v = randn(5000 * 8, 11);
  std::atomic<int32_t> flag{1};
  cl::Progress p(nullptr, &flag);
  bool cancelled = false;
  try {
    cl::prepare_vocab(cl::MatrixView{v.data(), cl::DType::F32, 5000, 8}, nullptr, p);
  } catch (const cl::Cancelled&) {
    cancelled = true;
  }
  CHECK(cancelled);
}

// d = 512 runs the kernels compiled for its step count (int8 and bf16).
TEST(clip_width_scans_match_brute_force_prepared_or_not) {
  const int64_t n = 2500, d = 512, nq = 20;
  auto v = randn(n * d, 91, 1.0f, 0.5f), q = randn(nq * d, 92);
  const cl::MatrixView m{v.data(), cl::DType::F32, n, d};
  const cl::PreparedVocab pv = prepare(m);
  for (auto metric : {cl::Metric::InnerProduct, cl::Metric::Cosine}) {
    std::vector<int64_t> ids;
    std::vector<double> s;
    brute(q, v, nq, n, d, 10, metric == cl::Metric::Cosine, ids, s);
    for (auto kern : screened_kernels()) {
      Run r = run(q, m, nq, 10, metric, 1000, 0, kern);
      expect_match(r, ids, s, 1e-3);
      expect_same(run_prepared(pv, q, m, nq, 10, metric, 1000, kern), r);
    }
  }
}
