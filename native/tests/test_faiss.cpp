// FaissIndex against a float64 brute force written from the definitions, and
// recall bounds of the approximate kinds on clustered data.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "../core/faiss_index.h"
#include "../core/fp16.h"
#include "check.h"

namespace {

using cl::FaissIndex;

// n points around `centers` Gaussian cluster centres (unit scale), d dims.
std::vector<float> clustered(int64_t n, int64_t d, int centers, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> c(static_cast<size_t>(centers * d));
  for (auto& x : c) x = nd(g);
  std::vector<float> v(static_cast<size_t>(n * d));
  for (int64_t i = 0; i < n; ++i) {
    int ci = static_cast<int>(g() % centers);
    for (int64_t j = 0; j < d; ++j) v[i * d + j] = c[ci * d + j] + 0.35f * nd(g);
  }
  return v;
}

cl::MatrixView view(const std::vector<float>& v, int64_t d) {
  return cl::MatrixView{v.data(), cl::DType::F32, static_cast<int64_t>(v.size()) / d, d};
}

enum class Score { IP, L2, Cosine };

// Ids of the k best rows per query, in double precision.
std::vector<int64_t> brute(const std::vector<float>& q, const std::vector<float>& v, int64_t d, int64_t k, Score s,
                           std::vector<double>* scores = nullptr) {
  int64_t nq = q.size() / d, n = v.size() / d;
  std::vector<int64_t> ids;
  std::vector<double> sc(n);
  for (int64_t i = 0; i < nq; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double dot = 0, l2 = 0, qq = 0, vv = 0;
      for (int64_t c = 0; c < d; ++c) {
        double a = q[i * d + c], b = v[j * d + c];
        dot += a * b, l2 += (a - b) * (a - b), qq += a * a, vv += b * b;
      }
      sc[j] = s == Score::IP ? dot : s == Score::L2 ? -l2 : dot / std::sqrt(qq * vv);
    }
    std::vector<int64_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t b) { return sc[a] > sc[b]; });
    for (int64_t r = 0; r < k; ++r) {
      ids.push_back(order[r]);
      if (scores) scores->push_back(s == Score::L2 ? -sc[order[r]] : sc[order[r]]);
    }
  }
  return ids;
}

struct Result {
  std::vector<float> scores;
  std::vector<int64_t> ids;
};

Result search(const FaissIndex& idx, const std::vector<float>& q, int64_t k, cl::FaissSearchParams sp = {}) {
  cl::Progress p;
  Result r;
  int64_t nq = q.size() / idx.dim();
  r.scores.resize(nq * k);
  r.ids.resize(nq * k);
  idx.search(view(q, idx.dim()), k, sp, r.scores.data(), r.ids.data(), p);
  return r;
}

void build(FaissIndex& idx, const std::vector<float>& v) {
  cl::Progress p;
  idx.train(view(v, idx.dim()), p);
  idx.add(view(v, idx.dim()), p);
}

double recall(const std::vector<int64_t>& approx, const std::vector<int64_t>& exact, int64_t k) {
  int64_t hits = 0, nq = exact.size() / k;
  for (int64_t i = 0; i < nq; ++i) {
    std::set<int64_t> truth(exact.begin() + i * k, exact.begin() + (i + 1) * k);
    for (int64_t r = 0; r < k; ++r) hits += truth.count(approx[i * k + r]);
  }
  return double(hits) / double(nq * k);
}

cl::FaissBuildOptions opts(cl::AnnMetric m = cl::AnnMetric::InnerProduct, bool normalize = false) {
  cl::FaissBuildOptions o;
  o.metric = m;
  o.normalize = normalize;
  return o;
}

constexpr int64_t D = 32, N = 4000, NQ = 50, K = 10;
const std::vector<float> kData = clustered(N, D, 40, 1);
const std::vector<float> kQueries = clustered(NQ, D, 40, 2);

void check_exact(FaissIndex& idx, Score s) {
  build(idx, kData);
  std::vector<double> want_scores;
  std::vector<int64_t> want = brute(kQueries, kData, D, K, s, &want_scores);
  Result got = search(idx, kQueries, K);
  CHECK(got.ids == want);
  for (size_t i = 0; i < want.size(); ++i) CHECK_NEAR(got.scores[i], want_scores[i], 1e-3 * (1 + std::fabs(want_scores[i])));
}

TEST(flat_inner_product_is_exact) {
  FaissIndex idx(D, "Flat", opts());
  check_exact(idx, Score::IP);
}

TEST(flat_l2_is_exact) {
  FaissIndex idx(D, "Flat", opts(cl::AnnMetric::L2));
  check_exact(idx, Score::L2);
}

TEST(flat_cosine_normalises_rows_and_queries) {
  FaissIndex idx(D, "Flat", opts(cl::AnnMetric::InnerProduct, true));
  check_exact(idx, Score::Cosine);
}

TEST(fp16_rows_match_their_fp32_values) {
  std::vector<uint16_t> h(kData.size());
  std::vector<float> back(kData.size());
  cl::floats_to_halves(kData.data(), h.data(), h.size());
  cl::halves_to_floats(h.data(), back.data(), h.size());
  FaissIndex a(D, "Flat", opts()), b(D, "Flat", opts());
  cl::Progress p;
  a.add(cl::MatrixView{h.data(), cl::DType::F16, N, D}, p);
  b.add(view(back, D), p);
  CHECK(search(a, kQueries, K).ids == search(b, kQueries, K).ids);
}

TEST(ids_continue_across_adds) {
  FaissIndex idx(D, "Flat", opts());
  std::vector<float> first(kData.begin(), kData.begin() + 1000 * D), rest(kData.begin() + 1000 * D, kData.end());
  cl::Progress p;
  idx.add(view(first, D), p);
  idx.add(view(rest, D), p);
  CHECK(idx.size() == N);
  CHECK(search(idx, kQueries, K).ids == brute(kQueries, kData, D, K, Score::IP));
}

TEST(ivf_probing_every_list_is_exact) {
  FaissIndex idx(D, "IVF32,Flat", opts());
  build(idx, kData);
  cl::FaissSearchParams sp;
  sp.nprobe = 32;
  CHECK(search(idx, kQueries, K, sp).ids == brute(kQueries, kData, D, K, Score::IP));
}

// Cosine (normalised inner product): the metric conceptlens searches with.
TEST(approximate_kinds_reach_recall_bounds) {
  std::vector<int64_t> exact = brute(kQueries, kData, D, K, Score::Cosine);
  struct Case {
    const char* factory;
    cl::FaissSearchParams sp;
    double bound;
  };
  cl::FaissSearchParams ivf, hnsw;
  ivf.nprobe = 8;
  hnsw.ef_search = 128;
  cl::FaissBuildOptions o = opts(cl::AnnMetric::InnerProduct, true);
  o.ef_construction = 200;
  for (const Case& c : {Case{"IVF32,Flat", ivf, 0.9}, Case{"IVF32,PQ16", ivf, 0.6}, Case{"HNSW16", hnsw, 0.9}}) {
    FaissIndex idx(D, c.factory, o);
    build(idx, kData);
    double r = recall(search(idx, kQueries, K, c.sp).ids, exact, K);
    std::printf("    %s recall@10 = %.3f (bound %.2f)\n", c.factory, r, c.bound);
    CHECK(r >= c.bound);
  }
}

// A narrower search must lose neighbours the widest one finds.
TEST(search_parameters_change_the_work_done) {
  std::vector<int64_t> exact = brute(kQueries, kData, D, K, Score::IP);
  cl::FaissSearchParams narrow, wide;
  FaissIndex ivf(D, "IVF32,Flat", opts());
  build(ivf, kData);
  narrow.nprobe = 1;
  wide.nprobe = 32;
  CHECK(recall(search(ivf, kQueries, K, narrow).ids, exact, K) < recall(search(ivf, kQueries, K, wide).ids, exact, K));
  FaissIndex hnsw(D, "HNSW16", opts());
  build(hnsw, kData);
  narrow.ef_search = 10;
  wide.ef_search = 400;
  CHECK(recall(search(hnsw, kQueries, K, narrow).ids, exact, K) < recall(search(hnsw, kQueries, K, wide).ids, exact, K));
}

TEST(save_and_load_give_identical_results) {
  std::string dir = "/tmp/cl_test_faiss_" + std::to_string(::getpid());
  for (const char* factory : {"Flat", "IVF32,Flat", "IVF32,PQ8x4", "HNSW16"}) {
    FaissIndex idx(D, factory, opts(cl::AnnMetric::InnerProduct, true));
    build(idx, kData);
    std::string path = dir + ".index";
    idx.save(path);
    auto back = FaissIndex::load(path, true);
    std::remove(path.c_str());
    CHECK(back->size() == N && back->dim() == D && back->is_trained());
    Result a = search(idx, kQueries, K), b = search(*back, kQueries, K);
    CHECK(a.ids == b.ids);
    CHECK(a.scores == b.scores);
  }
}

TEST(errors_name_the_argument) {
  FaissIndex idx(D, "Flat", opts());
  build(idx, kData);
  std::vector<float> q(2 * 16, 0.5f);
  cl::Progress p;
  std::vector<float> s(10);
  std::vector<int64_t> ids(10);
  CHECK_THROWS_WITH(idx.search(view(q, 16), 1, {}, s.data(), ids.data(), p), "expected rows of dim 32, got 16");
  CHECK_THROWS_WITH(search(idx, kQueries, N + 1), "k: expected 1..index size (4000), got 4001");
  CHECK_THROWS_WITH(FaissIndex(D, "NoSuchIndex", opts()), "factory 'NoSuchIndex'");
  FaissIndex ivf(D, "IVF64,Flat", opts());
  cl::Progress p2;
  CHECK_THROWS_WITH(ivf.add(view(kData, D), p2), "not trained");
  std::vector<float> few(kData.begin(), kData.begin() + 10 * D);
  CHECK_THROWS_WITH(ivf.train(view(few, D), p2), "train IVF64,Flat on 10 vectors");
  CHECK_THROWS_WITH(FaissIndex::load("/nonexistent/x.index", false), "load '/nonexistent/x.index'");
}

TEST(cancel_stops_add_between_chunks) {
  std::atomic<int32_t> flag{1};
  cl::Progress p({}, &flag);
  FaissIndex idx(D, "Flat", opts());
  bool cancelled = false;
  try {
    idx.add(view(kData, D), p);
  } catch (const cl::Cancelled&) {
    cancelled = true;
  }
  CHECK(cancelled);
  CHECK(idx.size() == 0);
}

TEST(training_samples_large_inputs) {
  // 64 lists × 256 points per centroid caps the sample below N = 20000.
  std::vector<float> big = clustered(20000, 8, 40, 3);
  FaissIndex idx(8, "IVF64,Flat", opts());
  CHECK(idx.max_train_rows() == 64 * 256);
  build(idx, big);
  CHECK(idx.size() == 20000);
}

}  // namespace
