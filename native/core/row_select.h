// Selections on rows of scores (an item's pre-activations, a list of
// candidates): the entries at least a value, the k-th largest, the TopK and
// threshold codes. AVX-512 where the CPU has it (the build targets baseline
// x86-64; CONCEPTLENS_NO_AVX512 forces scalar, for tests), else scalar: the
// same selections either way (topk_candidates' bound, and so its list, may
// differ).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace cl {

// Per-thread scratch rows for the selections: m + 16 entries each.
struct RowScratch {
  std::vector<int32_t> cols;
  std::vector<float> vals;
  std::vector<float> maxima;  // topk_bound's
  static RowScratch& get(int64_t m);
};

// Writes the (index, value) of the entries of row[0..m) with v >= lo, in
// index order, to cols and vals; returns how many. They need m + 16 entries
// of room.
int64_t select_ge(const float* row, int64_t m, float lo, int32_t* cols, float* vals);

// x − by (by >= 0), widened and rounded down to a float: at most x − by
// (x itself when by = 0).
float lowered(float x, double by);

// Entries of row[0..m) that may be among its k largest, or within `window`
// below the k-th largest, in index order, into cols and vals (m + 16 of
// room): all those at least *lo, a cheap lower bound on the k-th largest
// lowered by the window. Returns how many: at least k unless NaNs leave
// fewer than k other entries (then every non-NaN entry, *lo = -inf). With
// NaNs in the row the bound is still one (a lane's maximum is then the
// largest entry after its last NaN, still an entry of its subset).
int64_t topk_candidates(const float* row, int64_t m, int k, int32_t* cols, float* vals, float* lo, double window = 0);

// The entries of row[0..m) at least its k-th largest lowered by `window`
// (by `lowered`), in index order, into cols and vals (m + 16 of
// room), from one pass over the row; every non-NaN entry when NaNs leave
// fewer than k. Returns how many, the threshold in *cut.
int64_t window_candidates(const float* row, int64_t m, int k, double window, int32_t* cols, float* vals, float* cut);

// Keeps, in place and in order, the n (index, value) pairs with value >= lo;
// returns how many.
int64_t filter_ge(int32_t* cols, float* vals, int64_t n, float lo);

// The k-th largest of v[0..n) (k <= n, all values >= lo; NaNs are not
// counted).
float kth_value(const float* v, int64_t n, int k, float lo);

// The k-th largest of row[0..m) (-inf when NaNs leave fewer than k).
float kth_largest(const float* row, int64_t m, int k);

// Appends the row's codes to cols and vals in index order: its entries with
// v > 0 and v >= thr; returns how many.
int64_t keep_row(const float* row, int64_t m, float thr, std::vector<int32_t>& cols, std::vector<float>& vals);

// Appends the TopK codes among n candidates (cc ascending, all values cv >=
// lo, n >= k, no NaNs) in index order: of their k largest values (ties at the
// k-th value to the lower indices), the positive ones. Returns how many.
int64_t topk_codes(const int32_t* cc, const float* cv, int64_t n, int k, float lo, std::vector<int32_t>& cols,
                   std::vector<float>& vals);

// The row's TopK codes (topk_codes over the whole row).
int64_t topk_row(const float* row, int64_t m, int k, std::vector<int32_t>& cols, std::vector<float>& vals);

// The rank-th largest positive value of a[0..count), or 0 when there are
// fewer positives (in parallel).
float kth_largest_positive(const float* a, int64_t count, int64_t rank);

// Keeps row entries with v > 0 and v >= thr, zeroing the rest; returns the
// count kept and adds their sum to *sum.
int64_t threshold_row(float* row, int64_t m, float thr, double* sum);

// Keeps, of the (index, value) pairs appended to cols and vals from `base`,
// the `keep` largest values (ties to the lower index), in index order.
void keep_largest(std::vector<int32_t>& cols, std::vector<float>& vals, size_t base, int64_t keep);

}  // namespace cl
