// Exact fp32 scoring of vocabulary tiles in registers (AVX-512F). Queries sit
// one per lane, 16 to a register; a tile's rows (fp32, decoded from fp16 by
// the caller into a tile that stays in L2) are broadcast value by value, and
// R rows × QB query blocks of scores build up in registers over one walk of
// the dimension. No score is ever stored: each is offered to its query's
// top-k and, for FALCON's chunk-local softmax, folded into the query's
// running max and sum of exp(T·(score − max)) in the same pass, so there is
// no score matrix and no second pass over the scores.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "topk_heap.h"

namespace cl {

bool dense_available();

// Queries for the kernel: block b, dimension j, lane l holds query 16b + l
// (zero in the padding lanes).
struct DenseQueries {
  int64_t nq = 0, d = 0, blocks = 0;
  std::vector<float> packed;  // blocks × d × 16
};

DenseQueries pack_dense_queries(const float* q, int64_t nq, int64_t d);

// Per query: the log-sum-exp of T·score over the scores seen, kept as the
// largest score and Σ exp(T·(score − largest)).
struct RunningLse {
  std::vector<float> max;   // -inf before any score
  std::vector<double> sum;  // 0 before any score

  void reset(int64_t n);
  // Folds in another running pair of query q.
  void merge(int64_t q, float omax, double osum, float T);
  double lse(int64_t q, float T) const;
};

// One vocabulary tile to score.
struct DenseTile {
  const float* v;    // rows × d, fp32
  int64_t rows;
  const float* inv;  // cosine with normalised queries: 1/‖row‖ per row; else null
  int64_t id0;       // id of row 0
};

// A byte range (the source of the tile a worker will likely scan next).
struct Bytes {
  const void* data = nullptr;
  size_t size = 0;
};

// Offers every score of the tile (times inv[row] under cosine) that beats
// its query's heap threshold to `heaps` and, when T > 0, folds T·score into
// the query's entry of `lse` (one entry per lane, padding lanes included:
// blocks × 16). `thr` is scratch. Meanwhile prefetches `next` into L2, so the
// next tile's decode does not wait on DRAM. Fails naming the row when a
// score is NaN or infinite.
void scan_tile_dense(const DenseQueries& q, const DenseTile& t, HeapSet& heaps, std::vector<float>& thr, float T,
                     RunningLse& lse, Bytes next);

}  // namespace cl
