// Exact top-k through low-precision screening. Every score is first computed
// from rounded vectors, bf16 pairs (AVX512-BF16, twice the multiply rate of
// fp32) or int8 quads (AVX512-VNNI, four times); a rigorous bound on its
// distance to the fp32 score then decides which rows could enter a query's
// top-k. Only those are re-scored in fp32 and offered to the heap, so the
// result is the fp32 scan's.
//
// Rows are rounded in a frame fitted to the vocabulary: b = (v − μ)/c with a
// per-dimension power-of-two scale c, and queries a = q∘c, so that
// q·v = q·μ + a·b exactly. CLIP-like embeddings share a large mean and a few
// outlier dimensions, which would otherwise set every row's int8 step. With
// â, b̂ the rounded vectors,
//   |q·v − q·μ − â·b̂| ≤ ‖a‖·‖b − b̂‖ + ‖a − â‖·‖b̂‖,
// the norms measured per vector, plus t·(‖â‖‖b̂‖ + ‖q‖‖v‖ + ‖q‖‖μ‖),
// t = (d + 2)·2⁻²³ + 2⁻²⁰, for fp32 accumulation here and in the re-score.
#pragma once
#include <cstdint>
#include <vector>

#include "matrix.h"
#include "topk_heap.h"

namespace cl {

enum class ScreenFormat { Bf16, Int8 };

bool screening_available(ScreenFormat f);
const char* screen_format_name(ScreenFormat f);

// The shift μ and power-of-two scales c rows are rounded in; empty for the
// identity (μ = 0, c = 1).
struct ScreenFrame {
  std::vector<float> mu, inv_c;  // d each
  bool identity() const { return mu.empty(); }
};

// μ the mean, c ≈ the spread of each dimension, over a strided sample of up
// to 1024 finite rows of `rows`; the identity where that would not shrink the
// rounding step. Any frame gives exact results; a good one keeps the bound
// tight.
ScreenFrame fit_screen_frame(const MatrixView& rows);

// Queries rounded to the format, in blocks of 16 that fill one register
// (block b, step p, lane l = query 16b + l; a step is one 32-bit lane: two
// bf16 or four int8 values), with their fp32 originals. Per-lane terms are
// zero for the padding lanes.
struct ScreenQueries {
  ScreenFormat format = ScreenFormat::Bf16;
  int64_t nq = 0, d = 0, steps = 0, blocks = 0;
  ScreenFrame frame;
  std::vector<uint32_t> packed;  // blocks × steps × 16
  std::vector<float> f32;        // nq × d, the exact queries for re-scoring
  std::vector<float> scale;      // â = scale·(rounded values)
  std::vector<int32_t> offset;   // int8: 128·Σ(rounded values), what unsigned row bytes add
  std::vector<float> base;       // q·μ plus its slack, rounded up
  std::vector<float> norm;       // ‖a‖, rounded up
  std::vector<float> slack;      // ‖a − â‖ + t·‖â‖, rounded up
  std::vector<float> rescore;    // t·‖q‖, rounded up
};

ScreenQueries pack_screen_queries(ScreenFormat f, ScreenFrame frame, const float* q, int64_t nq, int64_t d);

// Per-thread scratch for scan_tile_screened.
struct ScreenScratch {
  std::vector<uint32_t> rows;  // the tile rounded, rows × steps
  std::vector<float> scale;    // per row: b̂ = scale·(rounded values)
  std::vector<float> err;      // per row: ‖b − b̂‖ rounded up
  std::vector<float> norm;     // per row: ‖b̂‖ rounded up
  std::vector<float> vnorm;    // per row: ‖v‖ rounded up
  std::vector<float> thr;      // per query: the heap's threshold, lowered by its rounding
};

// One vocabulary tile to scan.
struct ScreenTile {
  const float* v;    // rows × d, fp32
  int64_t rows;
  const float* inv;  // cosine with normalised queries: 1/‖row‖ per row; else null
  int64_t id0;       // id of row 0
};

// Offers every row of the tile that could rank in a query's top-k to
// `heaps`, with its exact fp32 score (times inv[row] under cosine).
void scan_tile_screened(const ScreenQueries& q, const ScreenTile& t, HeapSet& heaps, ScreenScratch& s);

}  // namespace cl
