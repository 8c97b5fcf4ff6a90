// Row selections (row_select.h) against brute force by sorting: the k-th
// largest, the TopK codes, and the candidate lists the SAE's screen and TopK
// encoders build on, on rows with ties, NaNs, short and ragged lengths.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "../core/row_select.h"
#include "check.h"

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Rows to select from: normal values, values on a coarse grid (many ties),
// and normal values with NaNs sprinkled in.
enum class Fill { Normal, Ties, NaNs };

std::vector<float> make_row(int64_t m, Fill f, uint32_t seed) {
  std::vector<float> row = check::randn(m, seed);
  std::mt19937 g(seed + 1);
  for (float& v : row) {
    if (f == Fill::Ties) v = std::round(v * 2) / 2;
    if (f == Fill::NaNs && g() % 7 == 0) v = std::numeric_limits<float>::quiet_NaN();
  }
  return row;
}

// The k-th largest non-NaN entry, -inf when there are fewer than k.
float brute_kth(const std::vector<float>& row, int k) {
  std::vector<float> v;
  for (float x : row)
    if (!std::isnan(x)) v.push_back(x);
  if (static_cast<int64_t>(v.size()) < k) return -kInf;
  std::sort(v.begin(), v.end(), std::greater<float>());
  return v[k - 1];
}

template <class F>
void for_rows(F&& fn) {
  uint32_t seed = 1;
  for (Fill f : {Fill::Normal, Fill::Ties, Fill::NaNs})
    for (int64_t m : {1, 7, 16, 33, 250, 4096})
      for (int k : {1, 2, 16, 32, 100, 4096}) {
        if (k > m) continue;
        fn(make_row(m, f, seed++), k);
      }
}

TEST(kth_largest_matches_sorting) {
  for_rows([](const std::vector<float>& row, int k) {
    CHECK(cl::kth_largest(row.data(), static_cast<int64_t>(row.size()), k) == brute_kth(row, k));
  });
}

// The n (index, value) pairs are exactly the row's entries >= t, in index order.
void check_selected(const std::vector<float>& row, const std::vector<int32_t>& cols, const std::vector<float>& vals,
                    int64_t n, float t) {
  int64_t e = 0;
  for (int64_t j = 0; j < static_cast<int64_t>(row.size()); ++j)
    if (row[j] >= t) {
      CHECK(e < n && cols[e] == j && vals[e] == row[j]);
      ++e;
    }
  CHECK(e == n);
}

// The candidates are exactly the entries at least *lo, in index order; *lo
// is at most the k-th largest lowered by the window, so every entry within
// the window of the k-th largest is among them.
TEST(topk_candidates_hold_every_entry_within_the_window) {
  for (double window : {0.0, 0.05, 0.7})
    for_rows([&](const std::vector<float>& row, int k) {
      const int64_t m = static_cast<int64_t>(row.size());
      std::vector<int32_t> cols(m + 16);
      std::vector<float> vals(m + 16);
      float lo;
      const int64_t n = cl::topk_candidates(row.data(), m, k, cols.data(), vals.data(), &lo, window);
      const float kth = brute_kth(row, k);
      if (kth == -kInf) {
        CHECK(lo == -kInf);
        return;
      }
      CHECK(n >= k);
      CHECK(double(lo) <= double(kth) - window);
      check_selected(row, cols, vals, n, lo);
    });
}

// The SAE screen's list: exactly the entries at least the k-th largest
// lowered by the window, in index order.
TEST(window_candidates_are_the_entries_within_the_window_of_the_kth) {
  for (double window : {0.0, 1e-30, 0.05, 0.7})
    for_rows([&](const std::vector<float>& row, int k) {
      const int64_t m = static_cast<int64_t>(row.size());
      std::vector<int32_t> cols(m + 16);
      std::vector<float> vals(m + 16);
      float cut;
      const int64_t n = cl::window_candidates(row.data(), m, k, window, cols.data(), vals.data(), &cut);
      CHECK(cut == cl::lowered(brute_kth(row, k), window));
      check_selected(row, cols, vals, n, cut);
    });
}

// The k largest (ties to the lower index), of those the positive, in index order.
TEST(topk_row_matches_sorting) {
  for_rows([](const std::vector<float>& row, int k) {
    const int64_t m = static_cast<int64_t>(row.size());
    std::vector<int32_t> order;
    for (int32_t j = 0; j < m; ++j)
      if (!std::isnan(row[j])) order.push_back(j);
    std::vector<int32_t> cols;
    std::vector<float> vals;
    const int64_t kept = cl::topk_row(row.data(), m, k, cols, vals);
    if (static_cast<int64_t>(order.size()) < k) {
      CHECK(kept == 0);
      return;
    }
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return row[a] > row[b]; });
    std::vector<int32_t> want;
    for (int e = 0; e < k; ++e)
      if (row[order[e]] > 0) want.push_back(order[e]);
    std::sort(want.begin(), want.end());
    CHECK(kept == static_cast<int64_t>(want.size()) && cols == want);
    for (size_t e = 0; e < cols.size(); ++e) CHECK(vals[e] == row[cols[e]]);
  });
}

// The bound's purpose: on spread values few more than k entries reach it
// (about 44 at k = 32 of 4,096 normal values; the least of k subset maxima,
// the former bound, let about 126 through).
TEST(topk_candidates_are_few_on_normal_rows) {
  std::vector<int32_t> cols(4096 + 16);
  std::vector<float> vals(4096 + 16);
  int64_t total = 0;
  for (uint32_t seed = 0; seed < 50; ++seed) {
    const std::vector<float> row = make_row(4096, Fill::Normal, 500 + seed);
    float lo;
    total += cl::topk_candidates(row.data(), 4096, 32, cols.data(), vals.data(), &lo);
  }
  CHECK(total <= 50 * 60);
}

TEST(filter_ge_keeps_the_pairs_at_least_the_value_in_order) {
  std::vector<float> vals = make_row(300, Fill::Ties, 9), want_vals;
  std::vector<int32_t> cols(300), want_cols;
  for (int32_t e = 0; e < 300; ++e) cols[e] = 1000 + e;
  for (int32_t e = 0; e < 300; ++e)
    if (vals[e] >= 0.5f) want_cols.push_back(cols[e]), want_vals.push_back(vals[e]);
  const int64_t n = cl::filter_ge(cols.data(), vals.data(), 300, 0.5f);
  CHECK(n == static_cast<int64_t>(want_cols.size()));
  CHECK(std::equal(want_cols.begin(), want_cols.end(), cols.begin()));
  CHECK(std::equal(want_vals.begin(), want_vals.end(), vals.begin()));
}

TEST(lowered_is_at_most_the_exact_difference) {
  for (float x : {1.0f, -3.5f, 1e-30f, 7e30f})
    for (double by : {0.0, 1e-9, 0.25, 3.0}) {
      const float l = cl::lowered(x, by);
      CHECK(double(l) <= double(x) - by);
      CHECK(double(l) >= double(x) - by - 4 * std::fabs(double(x) - by) * 0x1p-20 - 1e-38);
    }
}

}  // namespace
