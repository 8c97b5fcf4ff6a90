// Approximate (and exact) nearest-neighbour search through FAISS: one class
// around any faiss::Index built by faiss::index_factory ("Flat",
// "IVF{nlist},Flat", "IVF{nlist},PQ{m}", "HNSW{M}", ...). Ids are the
// insertion order across add() calls. FAISS errors become cl::Error.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "matrix.h"
#include "progress.h"

namespace faiss {
struct Index;
}

namespace cl {

enum class AnnMetric { InnerProduct, L2 };

struct FaissBuildOptions {
  AnnMetric metric = AnnMetric::InnerProduct;
  // Cosine: rows and queries are L2-normalised (on a copy) before FAISS sees them.
  bool normalize = false;
  uint32_t seed = 1234;
  // HNSW graph construction breadth; 0 keeps FAISS's default.
  int ef_construction = 0;
};

// 0 keeps the value stored in the index (FAISS's defaults: nprobe 1, efSearch 16).
struct FaissSearchParams {
  int64_t nprobe = 0;
  int64_t ef_search = 0;
};

class FaissIndex {
 public:
  FaissIndex(int64_t dim, const std::string& factory, const FaissBuildOptions& opt);
  ~FaissIndex();
  FaissIndex(const FaissIndex&) = delete;
  FaissIndex& operator=(const FaissIndex&) = delete;

  // Reads a file written by save(); `normalize` restores cosine behaviour.
  static std::unique_ptr<FaissIndex> load(const std::string& path, bool normalize);

  int64_t dim() const { return dim_; }
  int64_t size() const { return size_.load(); }
  bool is_trained() const { return trained_.load(); }
  bool normalized() const { return normalize_; }
  AnnMetric metric() const;
  const std::string& factory() const { return factory_; }

  // Trains on at most max_train_rows() rows drawn at random (seeded); a no-op
  // for indexes that need no training.
  void train(const MatrixView& x, Progress& p);
  // Appends rows (ids size() .. size()+rows-1) in chunks: progress and cancellation between chunks.
  void add(const MatrixView& x, Progress& p);
  // scores/ids: q.rows × k, best first (largest inner product / smallest L2).
  // Slots a partial probe could not fill get id -1.
  void search(const MatrixView& q, int64_t k, const FaissSearchParams& sp, float* scores, int64_t* ids,
              Progress& p) const;
  // Writes atomically (a temp file beside `path`, then rename).
  void save(const std::string& path) const;

  // Training sample cap: enough for k-means of the coarse quantizer and PQ codebooks.
  int64_t max_train_rows() const;

 private:
  FaissIndex(std::unique_ptr<faiss::Index> index, const std::string& factory, bool normalize);
  // Rows [r0, r0+n) of m as fp32, normalised when the index is cosine.
  void prepare_rows(const MatrixView& m, int64_t r0, int64_t n, float* dst) const;
  // Calls f(r0, n, rows) for consecutive chunks of m prepared as fp32, with progress and cancellation.
  template <class F>
  void for_chunks(const MatrixView& m, int64_t chunk, Progress& p, F&& f) const;
  void require_dim(const MatrixView& m, const char* what) const;

  std::unique_ptr<faiss::Index> index_;
  std::string factory_;
  int64_t dim_;
  bool normalize_;
  uint32_t seed_ = 1234;
  std::atomic<int64_t> size_{0};
  std::atomic<bool> trained_{false};
  // FAISS indexes are not safe for concurrent mutation: one operation at a time.
  mutable std::mutex mu_;
};

}  // namespace cl
