// Exact top-k retrieval: queries against a vocabulary that arrives in shards.
// Each shard is scanned in tiles: a GEMM tile of scores that stays in cache,
// then a per-row selection against the running k-th best, so no similarity
// matrix is ever materialised. Shards merge into a running top-k.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "matrix.h"
#include "progress.h"
#include "topk_screen.h"
#include "topk_heap.h"

namespace cl {

enum class Metric { InnerProduct, Cosine };

// How scores are computed: fp32 GEMM tiles, or screening in bf16 or int8
// with a certified error bound and fp32 re-scoring (same results; two or four
// times the multiply rate; AVX512-BF16 / AVX512-VNNI). Auto takes int8, then
// bf16, where the CPU has them, except for softmax scoring, which needs every
// score.
enum class ScanKernel { Auto, Sgemm, Bf16, Int8 };

struct TopKOptions {
  int k = 10;
  Metric metric = Metric::InnerProduct;
  // > 0: FALCON's chunk-local scoring, softmax(T·score) over each chunk
  // (shard), then top-k of those probabilities across chunks.
  float softmax_temperature = 0.0f;
  ScanKernel kernel = ScanKernel::Auto;
};

class TopKAccumulator {
 public:
  // queries: nq × d fp32 (copied; normalised under cosine).
  TopKAccumulator(const float* queries, int64_t nq, int64_t d, const TopKOptions& opt);

  // Scans rows of `shard` with ids id_offset + row. inv_norms (optional,
  // cosine only) holds 1/‖row‖ for the shard's rows; otherwise computed.
  void add(const MatrixView& shard, int64_t id_offset, const float* inv_norms, Progress& progress);
  // Softmax mode: closes the current chunk. A no-op otherwise.
  void end_chunk();
  // nq × k, each row best first; missing entries are -inf / -1.
  void result(float* scores, int64_t* ids);

  int64_t queries() const { return nq_; }
  int64_t dim() const { return d_; }
  int k() const { return opt_.k; }
  int64_t rows_seen() const { return rows_seen_; }

 private:
  bool softmax() const { return opt_.softmax_temperature > 0; }
  bool screened() const { return screen_.has_value(); }
  HeapSet& target() { return softmax() ? chunk_ : final_; }

  int64_t nq_, d_;
  TopKOptions opt_;
  std::vector<float> q_;
  std::optional<ScreenFormat> screen_;  // chosen at construction; none for sgemm tiles
  ScreenQueries qs_;                    // packed at the first shard, whose sample fits the frame
  HeapSet final_, chunk_;
  // Softmax mode: running log-sum-exp of T·score per query over the chunk.
  std::vector<float> chunk_max_;
  std::vector<double> chunk_sum_;
  int64_t rows_seen_ = 0;
  bool chunk_open_ = false;
};

}  // namespace cl
