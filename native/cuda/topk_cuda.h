// Exact top-k on the GPU, the counterpart of cl::TopKAccumulator (topk.h):
// queries stay on the device, vocabulary shards stream from host memory in
// chunks (two staging buffers, upload overlapping compute), and each chunk is
// scanned by a tiled fp32 GEMM fused with per-block top-k selection whose
// candidates are merged into a running per-query top-k.
// Plain C++ (no CUDA types): built only when CMake finds nvcc
// (CONCEPTLENS_CUDA is then defined); needs the core's header-only parts.
#pragma once
#include <cstdint>
#include <memory>

#include "../core/matrix.h"
#include "../core/progress.h"
#include "../core/topk.h"

namespace cl {

class CudaTopK {
 public:
  static constexpr int kMaxK = 1024;

  // queries: nq × d fp32 (copied; normalised under cosine). chunk_rows: rows
  // uploaded per step; 0 picks it from the device-memory budget.
  CudaTopK(const float* queries, int64_t nq, int64_t d, int k, Metric metric, int64_t chunk_rows = 0);
  ~CudaTopK();
  CudaTopK(const CudaTopK&) = delete;
  CudaTopK& operator=(const CudaTopK&) = delete;

  // Scans host rows (fp32 or fp16, row-major, shard.cols == d) with ids
  // id_offset + row. Blocks until the shard is merged. Progress counts rows
  // and is checked for cancellation between chunks. After an exception the
  // accumulator refuses further use.
  void add(const MatrixView& shard, int64_t id_offset, Progress* progress = nullptr);
  void add(const uint16_t* fp16_rows, int64_t rows, int64_t cols, int64_t id_offset, Progress* progress = nullptr);
  void add(const float* rows, int64_t n, int64_t cols, int64_t id_offset, Progress* progress = nullptr);
  // nq × k, each row best first, ties to the lower id; missing: -inf / -1.
  void result(float* scores, int64_t* ids);

  int64_t queries() const;
  int64_t dim() const;
  int k() const;
  int64_t chunk_rows() const;
  int64_t rows_seen() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cl
