// Exact top-k screening with bf16 arithmetic (AVX512-BF16), twice the
// multiply rate of fp32 GEMM. Each score is first computed from bf16-rounded
// vectors; a rigorous bound on the rounding error,
//   |s − s̃| ≤ c·‖q‖·‖v‖,  c = 2u + u² + (d + 2)·2⁻²³  (u = 2⁻⁸),
// decides which rows could enter the top-k, and only those are re-scored in
// fp32 and offered to the heap. The result is the same as the fp32 path.
#pragma once
#include <cstdint>
#include <vector>

#include "topk_heap.h"

namespace cl {

bool bf16_screening_available();

// Queries rounded to bf16 pairs, in blocks of 16 that fill one register
// (block b, pair p, lane l = query 16b + l), with their fp32 originals and
// norms (zero for the padding lanes).
struct Bf16Queries {
  int64_t nq = 0, d = 0, pairs = 0, blocks = 0;
  std::vector<uint32_t> packed;  // blocks × pairs × 16
  std::vector<float> f32;        // nq × d (the exact queries, for re-scoring)
  std::vector<float> norms;      // blocks × 16, ‖q‖ rounded up
};

Bf16Queries pack_bf16_queries(const float* q, int64_t nq, int64_t d);

// Per-thread scratch for scan_tile_bf16.
struct Bf16Scratch {
  std::vector<uint32_t> rows;  // the tile in bf16 pairs, rows × pairs
  std::vector<float> norms;    // ‖v‖ of the tile's rows (times inv when cosine)
  std::vector<float> thr;      // per query: the heap's current threshold
};

// Offers every row of the fp32 tile v (nb × d, ids id0 + row) that could
// rank in a query's top-k to `heaps`, with its exact fp32 score (times
// inv[row] when inv is given, i.e. cosine with normalised queries).
void scan_tile_bf16(const Bf16Queries& q, const float* v, int64_t nb, const float* inv, int64_t id0, HeapSet& heaps,
                    Bf16Scratch& s);

}  // namespace cl
