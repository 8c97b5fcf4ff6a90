// Exact top-k through low-precision screening. Every score is first computed
// from rounded vectors, bf16 pairs (AVX512-BF16, twice the multiply rate of
// fp32), int16 pairs (AVX512-VNNI, twice, with about 10× less rounding error
// than bf16 at d = 512; the SAE encoder's) or 7-bit values in int8 bytes,
// two thirds multiplied in Winograd's pairs (AVX512-VNNI: one 4-wide byte
// product covers 8 dimensions there, 4 in the plain third); a rigorous
// bound on its distance to the fp32 score then decides which rows could
// enter a query's top-k. Only those are re-scored in fp32 and offered to the
// heap, so the result is the fp32 scan's.
//
// Rows are rounded in a frame fitted to the vocabulary: b = (v − μ)/c with a
// per-dimension power-of-two scale c, and queries a = q∘c, so that
// q·v = q·μ + a·b exactly. CLIP-like embeddings share a large mean and a few
// outlier dimensions, which would otherwise set every row's int8 step. With
// â, b̂ the rounded vectors,
//   |q·v − q·μ − â·b̂| ≤ ‖a‖·‖b − b̂‖ + ‖a − â‖·‖b̂‖,
// the norms measured per vector, plus t·(‖â‖‖b̂‖ + ‖q‖‖v‖ + ‖q‖‖μ‖),
// t = (d + 2)·2⁻²³ + 2⁻²⁰, for fp32 accumulation here and in the re-score
// (in the first term 2⁻²¹ for the integer formats, which sum exactly).
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "matrix.h"
#include "topk_heap.h"

namespace cl {

enum class ScreenFormat { Bf16, Int8, Int16 };

// Version of the packed layouts, for copies kept across builds: 3 since int8
// values come 12 to a group, 8 in Winograd's pairs and 4 plain (2: all in
// pairs; 1: 8-bit quads). A copy of another layout would screen with wrong
// sums.
constexpr int kScreenLayout = 3;

bool screening_available(ScreenFormat f);
// The largest d at which int8's integer sums stay exact: its products reach
// 63²·d, within int32 only up to 541,064. bf16 and int16 fit any d.
constexpr int64_t kInt8MaxDim = ((int64_t(1) << 31) - 1) / (63 * 63);
bool screen_fits(ScreenFormat f, int64_t d);
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
// bf16 or int16 values, or four int8 of the group layout), with their fp32
// originals. Per-lane terms are zero for the padding lanes.
struct ScreenQueries {
  ScreenFormat format = ScreenFormat::Bf16;
  int64_t nq = 0, d = 0, steps = 0, blocks = 0;
  ScreenFrame frame;
  std::vector<uint32_t> packed;  // blocks × steps × 16
  std::vector<float> f32;        // nq × d, the exact queries for re-scoring
  std::vector<float> scale;      // â = scale·(rounded values)
  std::vector<int32_t> offset;   // screen_offset of each query's words
  std::vector<float> base;       // q·μ plus its slack, rounded up
  std::vector<float> norm;       // ‖a‖, rounded up
  std::vector<float> slack;      // ‖a − â‖ + t·‖â‖, rounded up
  std::vector<float> rescore;    // t·‖q‖, rounded up
};

ScreenQueries pack_screen_queries(ScreenFormat f, ScreenFrame frame, const float* q, int64_t nq, int64_t d);

// The pieces of pack_screen_queries, for callers that pack blocks in
// parallel and re-score themselves: `out` sized for nq queries (per-query
// terms and padding lanes zeroed, f32 left empty; capacity kept), then block
// b (queries 16b.. of q) rounded into it; every block must be packed.
// Returns -1, or the first query whose norm is not finite (its block is then
// incomplete).
void shape_screen_queries(ScreenFormat f, ScreenFrame frame, int64_t nq, int64_t d, ScreenQueries& out);
int64_t pack_screen_block(const float* q, int64_t b, ScreenQueries& out);

// Rows rounded to a format in a frame: everything screening reads of a row.
// Held per tile by the on-the-fly scan, or once for a whole vocabulary by a
// prepared copy (topk_prepared.h); both go through the same scan.
struct ScreenRows {
  int64_t steps = 0;
  std::vector<uint32_t> packed;  // rows × steps (padding values zero)
  std::vector<int32_t> offset;   // per row: screen_offset of its words
  std::vector<float> scale;      // per row: b̂ = scale·(rounded values)
  std::vector<float> err;        // per row: ‖b − b̂‖ rounded up
  std::vector<float> norm;       // per row: ‖b̂‖ rounded up
  std::vector<float> vnorm;      // per row: ‖v‖ rounded up

  int64_t rows() const { return static_cast<int64_t>(scale.size()); }
  // Room for n rows of `steps` 32-bit steps (zeroed: padding must be finite).
  void resize(int64_t n, int64_t steps);
};

// 32-bit steps per row of dimension d in the format.
int64_t screen_steps(ScreenFormat f, int64_t d);

// The part of the int8 kernel's sum that depends on one vector alone (a
// row's or a query's `steps` packed words; wraps like the sums); 0 in the
// other formats, whose sums are the products themselves.
int32_t screen_offset(ScreenFormat f, const uint32_t* words, int64_t steps, bool row);

// Rounds n fp32 rows v (ids from id0, for errors) in `frame` into rows
// [at, at + n) of `out`. Fails naming the row when one is not finite.
void round_screen_rows(ScreenFormat f, const ScreenFrame& frame, const float* v, int64_t n, int64_t d, int64_t id0,
                       ScreenRows& out, int64_t at);

// The rounded products â·b̂ (no frame shift, no bound) of rows [r0, r0 + n)
// of `rows` and every query, plus add[j] (nq values, added in one fp32
// rounding): out[i·ldo + j] for row r0 + i, query j < nq (nothing past it is
// written). A dense product at the format's multiply rate, for callers that
// bound the rounding themselves.
void screen_products(const ScreenQueries& q, const ScreenRows& rows, int64_t r0, int64_t n, float* out, int64_t ldo,
                     const float* add);

// Per-thread scratch of the screened scan.
struct ScreenScratch {
  ScreenRows tile;         // the on-the-fly path's rounded tile
  std::vector<float> thr;  // per query: the heap's threshold, lowered by its rounding
  std::vector<float> tile_bound;  // per query: base plus the bound's terms at the tile's largest
  float f_lo = 0, f_hi = 0, inv_lo = 1, inv_hi = 1;  // the tile's extremes of scale·inv and of inv
  std::vector<float> live;  // per query: the least exact sum at which a row could pass the tile's shared screen
  std::vector<float> row;  // one fp16 row decoded for re-scoring
  std::vector<std::pair<int32_t, int32_t>> cand;  // (row, query) to re-score
  const char *next = nullptr, *next_end = nullptr;  // bytes still to prefetch
};

// One vocabulary tile to scan: its exact rows, for re-scoring.
struct ScreenTile {
  const void* v;     // rows × d, fp32 (or fp16 bits with `dtype`)
  int64_t rows;
  const float* inv;  // cosine with normalised queries: 1/‖row‖ per row; else null
  int64_t id0;       // id of row 0
  DType dtype = DType::F32;
};

// Per query, a score a row must reach to matter at all, shared by the
// workers of a scan: k rows are known to reach it. It starts at the k-th
// best of the rows merged before (reset) and rises as the workers re-score
// rows: they keep the k best between them (each query's behind its own
// lock), so it is the k-th best of every row re-scored so far. Each
// worker's own k-th best is lower: it has seen only its share of the rows,
// and a screen from it let through about 1.6 times the candidates.
class ScreenFloor {
 public:
  ScreenFloor(int64_t nq, int k);
  void reset(int64_t q, float known);
  float at(int64_t q) const { return value_[q].load(std::memory_order_relaxed); }
  // A re-scored row; only one that could enter the k best takes the lock.
  void offer(int64_t q, float score, int64_t id);

 private:
  HeapSet best_;
  std::unique_ptr<std::mutex[]> locks_;
  std::unique_ptr<std::atomic<float>[]> value_;
};

// Offers every row of the tile that could rank in a query's top-k to
// `heaps`, with its exact fp32 score (times inv[row] under cosine). The
// rounded rows are rows [r0, r0 + t.rows) of `rounded`, in q's frame.
// Meanwhile prefetches rounded rows [r0 + t.rows, next_end) into L2: rows
// only 8 lines long, read 12 at a time, are streams too short for the
// hardware prefetcher, and the scan would wait on DRAM. `floor` (optional,
// shared by the workers): screens rows before `heaps` fill, and takes the
// rows the scan re-scores.
void scan_screened(const ScreenQueries& q, const ScreenRows& rounded, int64_t r0, const ScreenTile& t, HeapSet& heaps,
                   ScreenScratch& s, ScreenFloor* floor = nullptr, int64_t next_end = 0);

// The on-the-fly path: rounds the tile (fp32 rows) into s.tile, then scan_screened.
void scan_tile_screened(const ScreenQueries& q, const ScreenTile& t, HeapSet& heaps, ScreenScratch& s,
                        ScreenFloor* floor = nullptr);

}  // namespace cl
