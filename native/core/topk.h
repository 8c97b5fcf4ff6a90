// Exact top-k retrieval: queries against a vocabulary that arrives in shards.
// Each shard is scanned in tiles that stay in cache: fp32 scores held in
// registers (topk_dense.h) or screened in int8/bf16 (topk_screen.h), each
// offered to its query's running k-th best as it is computed, so no
// similarity matrix is ever materialised. Shards merge into a running top-k.
#pragma once
#include <cstdint>
#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "matrix.h"
#include "progress.h"
#include "topk_dense.h"
#include "topk_heap.h"
#include "topk_screen.h"

namespace cl {

struct PreparedVocab;  // topk_prepared.h

enum class Metric { InnerProduct, Cosine };

// How scores are computed: fp32 tiles, or screening in bf16 or int8
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

// Rows of a row-major array in a file (an .npy's data) that the scan reads
// itself, a tile at a time into buffers that stay in cache: the rows never
// make a trip through a large block in memory.
struct FileRows {
  std::string path;
  int64_t data_offset = 0;  // byte offset of row 0
  DType dtype = DType::F32;
  int64_t cols = 0;
  int64_t first = 0, rows = 0;  // the rows to scan: [first, first + rows)
};

class TopKAccumulator {
 public:
  // queries: nq × d fp32 (copied; normalised under cosine).
  TopKAccumulator(const float* queries, int64_t nq, int64_t d, const TopKOptions& opt);

  // Scans rows of `shard` with ids id_offset + row. inv_norms (optional,
  // cosine only) holds 1/‖row‖ for the shard's rows; otherwise computed.
  void add(const MatrixView& shard, int64_t id_offset, const float* inv_norms, Progress& progress);
  // The same for rows read from a file, with ids id_offset + (row - first).
  void add_file(const FileRows& f, int64_t id_offset, Progress& progress);
  // Scans rows [first, first + rows.rows) of a prepared vocabulary, whose
  // exact rows there are `rows` (read only to re-score candidates); ids
  // id_offset + row. Rounds nothing; the same results as add(rows). Where
  // this scan does not screen in p's format it is add(rows) with p's norms.
  void add_prepared(const PreparedVocab& p, const MatrixView& rows, int64_t first, int64_t id_offset, Progress& progress);
  // Softmax mode: closes the current chunk. A no-op otherwise.
  void end_chunk();
  // nq × k, each row best first; missing entries are -inf / -1.
  void result(float* scores, int64_t* ids);

  int64_t queries() const { return nq_; }
  int64_t dim() const { return d_; }
  int k() const { return opt_.k; }
  int64_t rows_seen() const { return rows_seen_; }
  // What computes every candidate's score: "int8" or "bf16" (a screen, then
  // fp32 re-scoring of what it cannot rule out), or "fp32" (tiles).
  const char* arithmetic() const;

 private:
  struct Scratch;  // per worker
  bool softmax() const { return opt_.softmax_temperature > 0; }
  int64_t tile_rows() const;
  // Scores rows [r0, r0 + n) of src (ids from id0; inv: their 1/‖row‖ or null) into s.
  void scan_tile(const MatrixView& src, int64_t r0, int64_t n, int64_t id0, const float* inv, Scratch& s, Bytes next);
  // Runs tile(t, r0, n, next_r0, s) over the tiles of `rows` rows in tasks of consecutive tiles, then folds
  // the workers' heaps and the tasks' softmax sums (in task order, so the sums never depend on which worker
  // took which task) into the running top-k.
  void scan_rows(int64_t rows, Progress& progress,
                 const std::function<void(int64_t r0, int64_t n, int64_t next_r0, Scratch& s)>& tile);
  bool screened() const { return screen_.has_value(); }
  // Per query, the k-th best score merged so far: rows below it cannot rank, so the screen starts from it.
  void take_floor();
  HeapSet& target() { return softmax() ? chunk_ : final_; }

  int64_t nq_, d_;
  TopKOptions opt_;
  std::vector<float> q_;
  std::optional<ScreenFormat> screen_;  // chosen at construction; none for fp32 tiles
  ScreenQueries qs_;                    // packed at the first shard, whose sample fits the frame
  std::unique_ptr<ScreenFloor> floor_;  // the add in progress: take_floor(), raised by the workers
  DenseQueries dq_;                     // fp32 tiles on AVX-512 CPUs
  HeapSet final_, chunk_;
  RunningLse chunk_lse_;                // softmax mode: per query, over the chunk
  int64_t rows_seen_ = 0;
  bool chunk_open_ = false;
};

// Rows [r0, r0 + n) of m as fp32 (fp16 decoded into dst, fp32 read in place)
// and, when inv is given, 1/‖row‖ of each as the scan computes them (a zero
// row is an error, or 0 when lenient). Shared with prepare_vocab.
const float* tile_rows_f32(const MatrixView& m, int64_t r0, int64_t n, float* dst, float* inv, int64_t id0, bool lenient = false);

}  // namespace cl
