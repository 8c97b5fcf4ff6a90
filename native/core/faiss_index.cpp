#include "faiss_index.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/impl/FaissException.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>
#include <faiss/utils/distances.h>
#include <faiss/utils/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "blas.h"
#include "threads.h"

namespace cl {

namespace {

constexpr int64_t kAddChunk = 16384;
constexpr int64_t kSearchChunk = 4096;

// FAISS prefixes messages with "Error in <function> at <file>:<line>: "; the
// user needs only what failed.
std::string faiss_reason(const faiss::FaissException& e) {
  const std::string& m = e.msg;
  size_t at = m.find(": Error: ");
  if (at != std::string::npos) return m.substr(at + 9);
  at = m.rfind(".cpp:");
  if (at != std::string::npos && (at = m.find(": ", at)) != std::string::npos) return m.substr(at + 2);
  return m;
}

// Runs a FAISS call with BLAS and OpenMP widened; FAISS errors name `what`.
template <class F>
void faiss_call(const std::string& what, F&& f) {
  WideBlas guard(compute_threads());
  try {
    f();
  } catch (const faiss::FaissException& e) {
    fail(what + ": " + faiss_reason(e));
  }
}

// The factory string that would rebuild this index's structure.
std::string describe(const faiss::Index* index) {
  if (auto* pq = dynamic_cast<const faiss::IndexIVFPQ*>(index))
    return "IVF" + std::to_string(pq->nlist) + ",PQ" + std::to_string(pq->pq.M) + "x" + std::to_string(pq->pq.nbits);
  if (auto* ivf = dynamic_cast<const faiss::IndexIVFFlat*>(index)) return "IVF" + std::to_string(ivf->nlist) + ",Flat";
  if (auto* h = dynamic_cast<const faiss::IndexHNSW*>(index))
    return "HNSW" + std::to_string(h->hnsw.nb_neighbors(1));
  if (dynamic_cast<const faiss::IndexFlat*>(index)) return "Flat";
  return "faiss index";
}

// Sorted uniform sample of n row indices from [0, rows) (selection sampling:
// row i is kept with probability still-needed / still-left).
std::vector<int64_t> sample_rows(int64_t rows, int64_t n, uint32_t seed) {
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(n));
  std::mt19937_64 g(seed);
  for (int64_t i = 0; i < rows && static_cast<int64_t>(out.size()) < n; ++i)
    if (std::uniform_int_distribution<int64_t>(0, rows - i - 1)(g) < n - static_cast<int64_t>(out.size()))
      out.push_back(i);
  return out;
}

}  // namespace

FaissIndex::FaissIndex(int64_t dim, const std::string& factory, const FaissBuildOptions& opt)
    : factory_(factory), dim_(dim), normalize_(opt.normalize), seed_(opt.seed) {
  require(dim >= 1, "dim: expected >= 1, got " + std::to_string(dim));
  faiss::MetricType metric = opt.metric == AnnMetric::L2 ? faiss::METRIC_L2 : faiss::METRIC_INNER_PRODUCT;
  try {
    index_.reset(faiss::index_factory(static_cast<int>(dim), factory.c_str(), metric));
  } catch (const faiss::FaissException& e) {
    fail("factory '" + factory + "' (dim " + std::to_string(dim) + "): " + faiss_reason(e));
  }
  if (auto* ivf = dynamic_cast<faiss::IndexIVF*>(index_.get())) ivf->cp.seed = static_cast<int>(opt.seed);
  if (auto* pq = dynamic_cast<faiss::IndexIVFPQ*>(index_.get())) {
    pq->pq.cp.seed = static_cast<int>(opt.seed);
    // FAISS warns on stderr once per sub-quantizer (128 lines at d = 512) when
    // rows < 39 per centroid; buildIndex says it once, as a process warning.
    pq->pq.cp.min_points_per_centroid = 1;
    // Polysemous codes serve Hamming-filtered L2 search we never use, and
    // their simulated-annealing training takes minutes.
    pq->do_polysemous_training = false;
  }
  if (auto* h = dynamic_cast<faiss::IndexHNSW*>(index_.get())) {
    h->hnsw.rng = faiss::RandomGenerator(opt.seed);
    if (opt.ef_construction > 0) h->hnsw.efConstruction = opt.ef_construction;
  }
  trained_ = index_->is_trained;
}

FaissIndex::FaissIndex(std::unique_ptr<faiss::Index> index, const std::string& factory, bool normalize)
    : index_(std::move(index)), factory_(factory), dim_(index_->d), normalize_(normalize) {
  size_ = index_->ntotal;
  trained_ = index_->is_trained;
}

FaissIndex::~FaissIndex() = default;

std::unique_ptr<FaissIndex> FaissIndex::load(const std::string& path, bool normalize) {
  std::unique_ptr<faiss::Index> index;
  faiss_call("load '" + path + "'", [&] { index.reset(faiss::read_index(path.c_str())); });
  std::string name = describe(index.get());
  return std::unique_ptr<FaissIndex>(new FaissIndex(std::move(index), name, normalize));
}

AnnMetric FaissIndex::metric() const {
  return index_->metric_type == faiss::METRIC_L2 ? AnnMetric::L2 : AnnMetric::InnerProduct;
}

int64_t FaissIndex::max_train_rows() const {
  int64_t cap = 0;
  if (auto* ivf = dynamic_cast<const faiss::IndexIVF*>(index_.get()))
    cap = static_cast<int64_t>(ivf->nlist) * ivf->cp.max_points_per_centroid;
  if (auto* pq = dynamic_cast<const faiss::IndexIVFPQ*>(index_.get()))
    cap = std::max(cap, static_cast<int64_t>(pq->pq.ksub) * pq->pq.cp.max_points_per_centroid);
  return cap > 0 ? cap : std::numeric_limits<int64_t>::max();
}

void FaissIndex::require_dim(const MatrixView& m, const char* what) const {
  require(m.cols == dim_, std::string(what) + ": expected rows of dim " + std::to_string(dim_) + ", got " +
                              std::to_string(m.cols));
}

void FaissIndex::prepare_rows(const MatrixView& m, int64_t r0, int64_t n, float* dst) const {
  rows_to_f32(m, r0, n, dst);
  if (normalize_) faiss::fvec_renorm_L2(static_cast<size_t>(dim_), static_cast<size_t>(n), dst);
}

template <class F>
void FaissIndex::for_chunks(const MatrixView& m, int64_t chunk, Progress& p, F&& f) const {
  p.set_total(m.rows);
  std::vector<float> buf(static_cast<size_t>(std::min(m.rows, chunk) * dim_));
  for (int64_t r = 0; r < m.rows; r += chunk) {
    p.check();
    const int64_t n = std::min(chunk, m.rows - r);
    prepare_rows(m, r, n, buf.data());
    f(r, n, buf.data());
    p.advance(n);
  }
}

void FaissIndex::train(const MatrixView& x, Progress& p) {
  std::lock_guard<std::mutex> lock(mu_);
  require_dim(x, "train vectors");
  p.set_total(1);
  if (index_->is_trained) return p.advance(1);
  p.check();
  int64_t n = std::min(x.rows, max_train_rows());
  std::vector<float> buf(static_cast<size_t>(n * dim_));
  if (n == x.rows) {
    prepare_rows(x, 0, n, buf.data());
  } else {
    std::vector<int64_t> rows = sample_rows(x.rows, n, seed_);
    for (int64_t i = 0; i < n; ++i) prepare_rows(x, rows[i], 1, buf.data() + i * dim_);
  }
  faiss_call("train " + factory_ + " on " + std::to_string(n) + " vectors",
             [&] { index_->train(n, buf.data()); });
  trained_ = true;
  p.advance(1);
}

void FaissIndex::add(const MatrixView& x, Progress& p) {
  std::lock_guard<std::mutex> lock(mu_);
  require_dim(x, "add vectors");
  require(index_->is_trained, "add: index " + factory_ + " is not trained; train it first");
  for_chunks(x, kAddChunk, p, [&](int64_t, int64_t n, const float* rows) {
    faiss_call("add to " + factory_, [&] { index_->add(n, rows); });
    size_ = index_->ntotal;
  });
}

void FaissIndex::search(const MatrixView& q, int64_t k, const FaissSearchParams& sp, float* scores, int64_t* ids,
                        Progress& p) const {
  std::lock_guard<std::mutex> lock(mu_);
  require_dim(q, "search queries");
  require(k >= 1 && k <= index_->ntotal, "k: expected 1..index size (" + std::to_string(index_->ntotal) +
                                             "), got " + std::to_string(k));
  faiss::SearchParametersIVF ivf_params;
  const faiss::SearchParameters* params = nullptr;
  if (auto* ivf = dynamic_cast<const faiss::IndexIVF*>(index_.get()); ivf && sp.nprobe > 0) {
    ivf_params.nprobe = std::min<size_t>(static_cast<size_t>(sp.nprobe), ivf->nlist);
    params = &ivf_params;
  }
  // FAISS 1.7.3's HNSW beam search reads hnsw.efSearch, not SearchParametersHNSW:
  // set it for this call (mu_ makes that safe) and restore it after.
  auto* hnsw = dynamic_cast<faiss::IndexHNSW*>(index_.get());
  int saved_ef = hnsw ? hnsw->hnsw.efSearch : 0;
  struct RestoreEf {
    faiss::IndexHNSW* h;
    int ef;
    ~RestoreEf() {
      if (h) h->hnsw.efSearch = ef;
    }
  } restore{hnsw, saved_ef};
  if (hnsw && sp.ef_search > 0) hnsw->hnsw.efSearch = static_cast<int>(sp.ef_search);
  for_chunks(q, kSearchChunk, p, [&](int64_t r, int64_t n, const float* rows) {
    faiss_call("search " + factory_,
               [&] { index_->search(n, rows, k, scores + r * k, reinterpret_cast<faiss::Index::idx_t*>(ids + r * k), params); });
  });
  // FAISS marks unfilled slots with ±FLT_MAX; infinities say "no result" plainly.
  float none = metric() == AnnMetric::L2 ? std::numeric_limits<float>::infinity()
                                         : -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < q.rows * k; ++i)
    if (ids[i] < 0) scores[i] = none;
}

void FaissIndex::save(const std::string& path) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string tmp = path + ".tmp" + std::to_string(::getpid());
  faiss_call("save '" + path + "'", [&] { faiss::write_index(index_.get(), tmp.c_str()); });
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string reason = std::strerror(errno);
    std::remove(tmp.c_str());
    fail("save '" + path + "': cannot rename the temporary file into place (" + reason + ")");
  }
}

}  // namespace cl
