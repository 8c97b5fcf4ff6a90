#include "row_select.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>

#include "cpu.h"
#include "threads.h"

namespace cl {
namespace {

const bool kAvx512 = cpu_avx512f();

// select_ge with a register compress and a full-width store (hence the 16
// entries of room): the memory-destination compress is slow on some cores.
// No branch on the mask: on rows where a few entries pass, it would be
// mispredicted half the time.
__attribute__((target("avx512f"))) int64_t select_ge_avx512(const float* row, int64_t m, float lo, int32_t* cols,
                                                             float* vals) {
  const __m512 t = _mm512_set1_ps(lo);
  __m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i step = _mm512_set1_epi32(16);
  int64_t kept = 0, j = 0;
  for (; j + 16 <= m; j += 16, idx = _mm512_add_epi32(idx, step)) {
    const __m512 v = _mm512_loadu_ps(row + j);
    const __mmask16 k = _mm512_cmp_ps_mask(v, t, _CMP_GE_OQ);
    _mm512_storeu_si512(cols + kept, _mm512_maskz_compress_epi32(k, idx));
    _mm512_storeu_ps(vals + kept, _mm512_maskz_compress_ps(k, v));
    kept += __builtin_popcount(k);
  }
  for (; j < m; ++j)
    if (row[j] >= lo) {
      cols[kept] = static_cast<int32_t>(j);
      vals[kept++] = row[j];
    }
  return kept;
}

// The maxima of disjoint subsets of row[0..m) into out: lane l of each of
// `runs` contiguous runs of 16-wide vectors (16·runs maxima; runs <= m / 16).
__attribute__((target("avx512f"))) void run_maxima_avx512(const float* row, int64_t m, int64_t runs, float* out) {
  const int64_t vecs = m / 16;
  for (int64_t r = 0; r < runs; ++r) {
    const int64_t v0 = r * vecs / runs, v1 = (r + 1) * vecs / runs;
    __m512 mx = _mm512_loadu_ps(row + 16 * v0);
    for (int64_t v = v0 + 1; v < v1; ++v) mx = _mm512_max_ps(mx, _mm512_loadu_ps(row + 16 * v));
    _mm512_storeu_ps(out + 16 * r, mx);
  }
}

// The maxima of `slices` contiguous slices of row[0..m) (slices <= m).
void slice_maxima(const float* row, int64_t m, int64_t slices, float* out) {
  for (int64_t g = 0; g < slices; ++g) out[g] = *std::max_element(row + g * m / slices, row + (g + 1) * m / slices);
}

// A lower bound on the k-th largest of row[0..m): the k-th largest of the
// maxima of about 2k disjoint subsets, since k of the subsets each hold a
// value that large. On spread values few more than k entries reach it (about
// 44 at k = 32 of 4,096 normal values; 126 for the least of k maxima). -inf
// when the row is too short.
float topk_bound(const float* row, int64_t m, int k) {
  std::vector<float>& mx = RowScratch::get(m).maxima;
  int64_t n;
  if (kAvx512) {
    const int64_t runs = std::min<int64_t>(2 * ((k + 15) / 16), m / 16);
    n = 16 * runs;
    if (n < k) return -std::numeric_limits<float>::infinity();
    run_maxima_avx512(row, m, runs, mx.data());
  } else {
    n = std::min<int64_t>(2 * int64_t(k), m);
    if (n < k) return -std::numeric_limits<float>::infinity();
    slice_maxima(row, m, n, mx.data());
  }
  return kth_value(mx.data(), n, k, -std::numeric_limits<float>::infinity());
}

// Order-preserving map of floats to unsigned keys (and back), for a binary
// search over values.
uint32_t float_key(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u & 0x80000000u ? ~u : u | 0x80000000u;
}
float key_float(uint32_t k) {
  const uint32_t u = k & 0x80000000u ? k & 0x7fffffffu : ~k;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

__attribute__((target("avx512f"))) int64_t count_ge_avx512(const float* v, int64_t n, float t) {
  const __m512 tv = _mm512_set1_ps(t);
  int64_t count = 0, e = 0;
  for (; e + 16 <= n; e += 16) count += __builtin_popcount(_mm512_cmp_ps_mask(_mm512_loadu_ps(v + e), tv, _CMP_GE_OQ));
  for (; e < n; ++e) count += v[e] >= t;
  return count;
}

int64_t count_ge(const float* v, int64_t n, float t) {
  if (kAvx512) return count_ge_avx512(v, n, t);
  return std::count_if(v, v + n, [t](float x) { return x >= t; });
}

// The least of `out` and the values v[e0..n) >= t.
float min_ge_scalar(const float* v, int64_t e0, int64_t n, float t, float out) {
  for (int64_t e = e0; e < n; ++e)
    if (v[e] >= t) out = std::min(out, v[e]);
  return out;
}

__attribute__((target("avx512f"))) float min_ge_avx512(const float* v, int64_t n, float t) {
  const __m512 tv = _mm512_set1_ps(t);
  __m512 lo = _mm512_set1_ps(std::numeric_limits<float>::infinity());
  int64_t e = 0;
  for (; e + 16 <= n; e += 16) {
    const __m512 x = _mm512_loadu_ps(v + e);
    lo = _mm512_mask_min_ps(lo, _mm512_cmp_ps_mask(x, tv, _CMP_GE_OQ), lo, x);
  }
  return min_ge_scalar(v, e, n, t, _mm512_reduce_min_ps(lo));
}

// The least of the values >= t (+inf when none).
float min_ge(const float* v, int64_t n, float t) {
  return kAvx512 ? min_ge_avx512(v, n, t) : min_ge_scalar(v, 0, n, t, std::numeric_limits<float>::infinity());
}

__attribute__((target("avx512f"))) int64_t threshold_avx512(float* row, int64_t m, float thr, double* sum) {
  const bool positive = thr > 0;
  const __m512 t = _mm512_set1_ps(positive ? thr : 0.0f);
  __m512 acc = _mm512_setzero_ps();
  int64_t count = 0, j = 0;
  for (; j + 16 <= m; j += 16) {
    __m512 v = _mm512_loadu_ps(row + j);
    __mmask16 k = positive ? _mm512_cmp_ps_mask(v, t, _CMP_GE_OQ) : _mm512_cmp_ps_mask(v, t, _CMP_GT_OQ);
    v = _mm512_maskz_mov_ps(k, v);
    _mm512_storeu_ps(row + j, v);
    acc = _mm512_add_ps(acc, v);
    count += __builtin_popcount(k);
  }
  double s = _mm512_reduce_add_ps(acc);
  for (; j < m; ++j) {
    if (row[j] > 0 && row[j] >= thr) {
      s += row[j];
      ++count;
    } else {
      row[j] = 0;
    }
  }
  *sum += s;
  return count;
}

}  // namespace

int64_t select_ge(const float* row, int64_t m, float lo, int32_t* cols, float* vals) {
  if (kAvx512) return select_ge_avx512(row, m, lo, cols, vals);
  int64_t kept = 0;
  for (int64_t j = 0; j < m; ++j)
    if (row[j] >= lo) {
      cols[kept] = static_cast<int32_t>(j);
      vals[kept++] = row[j];
    }
  return kept;
}

float lowered(float x, double by) {
  if (by == 0) return x;
  return std::nextafter(static_cast<float>(double(x) - by * (1 + 0x1p-20)), -std::numeric_limits<float>::infinity());
}

int64_t topk_candidates(const float* row, int64_t m, int k, int32_t* cols, float* vals, float* lo, double window) {
  *lo = lowered(topk_bound(row, m, k), window);
  const int64_t n = select_ge(row, m, *lo, cols, vals);
  if (n >= k) return n;
  *lo = -std::numeric_limits<float>::infinity();
  return select_ge(row, m, *lo, cols, vals);
}

int64_t filter_ge(int32_t* cols, float* vals, int64_t n, float lo) {
  int64_t kept = 0;
  for (int64_t e = 0; e < n; ++e) {  // no branch: about half the candidates pass, unpredictably
    cols[kept] = cols[e];
    vals[kept] = vals[e];
    kept += vals[e] >= lo;
  }
  return kept;
}

// The largest t with at least k values >= t, by binary search over float
// keys; each probe is one vector count, cheaper than a selection on short
// lists. A probe that counts exactly k ends the search: the k-th largest is
// then the least value at or above it (about 7 probes instead of 22 for the
// 32nd of ~47 normal values, a screen list's size).
float kth_value(const float* v, int64_t n, int k, float lo) {
  uint32_t below = float_key(lo), above = float_key(*std::max_element(v, v + n)) + 1;  // count(lo) >= k > count(above)
  while (above - below > 1) {
    const uint32_t mid = below + (above - below) / 2;
    const int64_t c = count_ge(v, n, key_float(mid));
    if (c == k) return min_ge(v, n, key_float(mid));
    (c > k ? below : above) = mid;
  }
  return key_float(below);
}

int64_t window_candidates(const float* row, int64_t m, int k, double window, int32_t* cols, float* vals, float* cut) {
  float lo;  // one pass collects every entry within the window of the k-th, and a few more
  const int64_t c = topk_candidates(row, m, k, cols, vals, &lo, window);
  *cut = lowered(c < k ? -std::numeric_limits<float>::infinity() : kth_value(vals, c, k, lo), window);
  return filter_ge(cols, vals, c, *cut);
}

RowScratch& RowScratch::get(int64_t m) {
  thread_local RowScratch s;
  if (static_cast<int64_t>(s.cols.size()) < m + 16) {
    s.cols.resize(m + 16);
    s.vals.resize(m + 16);
    s.maxima.resize(m + 16);
  }
  return s;
}

float kth_largest(const float* row, int64_t m, int k) {
  RowScratch& s = RowScratch::get(m);
  float lo;
  const int64_t n = topk_candidates(row, m, k, s.cols.data(), s.vals.data(), &lo);
  return n < k ? -std::numeric_limits<float>::infinity() : kth_value(s.vals.data(), n, k, lo);
}

int64_t keep_row(const float* row, int64_t m, float thr, std::vector<int32_t>& cols, std::vector<float>& vals) {
  RowScratch& s = RowScratch::get(m);
  const int64_t n = select_ge(row, m, std::max(thr, std::numeric_limits<float>::denorm_min()), s.cols.data(), s.vals.data());
  cols.insert(cols.end(), s.cols.begin(), s.cols.begin() + n);
  vals.insert(vals.end(), s.vals.begin(), s.vals.begin() + n);
  return n;
}

int64_t topk_codes(const int32_t* cc, const float* cv, int64_t n, int k, float lo, std::vector<int32_t>& cols,
                   std::vector<float>& vals) {
  const float kth = kth_value(cv, n, k, lo);
  // Entries equal to the k-th value that are among the k largest.
  int64_t ties = k - count_ge(cv, n, std::nextafter(kth, std::numeric_limits<float>::infinity()));
  const size_t base = cols.size();
  for (int64_t e = 0; e < n; ++e) {
    const float v = cv[e];
    if (!(v > kth || (v == kth && ties-- > 0)) || !(v > 0)) continue;
    cols.push_back(cc[e]);
    vals.push_back(v);
  }
  return static_cast<int64_t>(cols.size() - base);
}

int64_t topk_row(const float* row, int64_t m, int k, std::vector<int32_t>& cols, std::vector<float>& vals) {
  RowScratch& s = RowScratch::get(m);
  float lo;
  const int64_t n = topk_candidates(row, m, k, s.cols.data(), s.vals.data(), &lo);
  if (n < k) return 0;  // NaNs only
  return topk_codes(s.cols.data(), s.vals.data(), n, k, lo, cols, vals);
}

// A sample of one value per stride gives a bound that keeps about 2·rank
// candidates; one parallel pass collects them and nth_element picks exactly. The sampled position jitters within each stride: a fixed
// stride that divides the row length (256 into 4,096 latents) would sample
// only a few latents, and on CLIP features, where some latents fire on
// every item, their bound would keep millions of candidates.
float kth_largest_positive(const float* a, int64_t count, int64_t rank) {
  const int64_t stride = std::max<int64_t>(1, count / 65536);
  std::vector<float> sample;
  for (int64_t i = 0; i < count; i += stride) {
    uint64_t h = static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ull;  // a fixed hash of the window: deterministic
    sample.push_back(a[std::min(count - 1, i + static_cast<int64_t>((h >> 32) % static_cast<uint64_t>(stride)))]);
  }
  const int64_t sr = 2 * rank / stride + 1;
  float bound = 0;
  if (sr < static_cast<int64_t>(sample.size())) {
    std::nth_element(sample.begin(), sample.begin() + sr, sample.end(), std::greater<float>());
    bound = std::max(0.0f, sample[sr]);
  }
  const int64_t nb = (count + (1 << 16) - 1) >> 16;
  auto above = [&](float lo) {
    std::vector<std::vector<float>> part(nb);
    parallel_for(nb, [&](int64_t b, int) {
      for (int64_t i = b << 16, e = std::min(count, (b + 1) << 16); i < e; ++i)
        if (a[i] > lo) part[b].push_back(a[i]);
    });
    std::vector<float> all;
    for (auto& p : part) all.insert(all.end(), p.begin(), p.end());
    return all;
  };
  std::vector<float> cand = above(bound);
  if (static_cast<int64_t>(cand.size()) < rank && bound > 0) cand = above(0.0f);
  if (static_cast<int64_t>(cand.size()) < rank) return 0;
  std::nth_element(cand.begin(), cand.begin() + (rank - 1), cand.end(), std::greater<float>());
  return cand[rank - 1];
}

int64_t threshold_row(float* row, int64_t m, float thr, double* sum) {
  if (kAvx512) return threshold_avx512(row, m, thr, sum);
  int64_t count = 0;
  for (int64_t j = 0; j < m; ++j) {
    if (row[j] > 0 && row[j] >= thr) {
      *sum += row[j];
      ++count;
    } else {
      row[j] = 0;
    }
  }
  return count;
}

void keep_largest(std::vector<int32_t>& cols, std::vector<float>& vals, size_t base, int64_t keep) {
  thread_local std::vector<std::pair<float, int32_t>> p;
  p.clear();
  for (size_t e = base; e < cols.size(); ++e) p.push_back({vals[e], cols[e]});
  auto by_value = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  if (static_cast<int64_t>(p.size()) > keep) {
    std::nth_element(p.begin(), p.begin() + keep, p.end(), by_value);
    p.resize(keep);
  }
  std::sort(p.begin(), p.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  cols.resize(base);
  vals.resize(base);
  for (const auto& [v, j] : p) cols.push_back(j), vals.push_back(v);
}

}  // namespace cl
