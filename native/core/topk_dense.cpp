#include "topk_dense.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "cpu.h"
#include "error.h"
#include "topk_lanes.h"

namespace cl {
namespace {

#define CL_DENSE __attribute__((target("avx512f")))

constexpr float kInf = std::numeric_limits<float>::infinity();

// e^x for x ≤ 0, within about 2 ulp; 0 below -87 (terms that small, next to
// the running max's e^0, cannot move a float sum, and denormals are slow).
CL_DENSE inline __m512 exp_nonpositive(__m512 x) {
  const __mmask16 normal = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_GE_OQ);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // r = x − n·ln2 in two steps (Cody-Waite), |r| ≤ 0.35.
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  // Taylor to degree 7: truncation below 6e-9 on |r| ≤ 0.35.
  __m512 p = _mm512_set1_ps(1.0f / 5040);
  for (float c : {1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f}) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
  return _mm512_maskz_scalef_ps(normal, p, n);
}

// A tile's scores for R rows against QB query blocks, then, block by block,
// the top-k offers and the softmax terms.
// Where a kernel's scores go, and what it prefetches meanwhile.
struct Sink {
  HeapSet& heaps;
  std::vector<float>& thr;
  float T;
  RunningLse& lse;
  const char* next;      // the next tile's bytes, prefetched into L2 a line at a time
  const char* next_end;
  int64_t bad_row = -1;  // the first row that gave a non-finite score
};

template <int R, int QB>
CL_DENSE void kernel(const DenseQueries& q, int64_t b0, const DenseTile& t, int64_t r0, Sink& s) {
  const int64_t d = q.d;
  __m512 acc[R][QB];
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < QB; ++b) acc[r][b] = _mm512_setzero_ps();
  const float* qp = q.packed.data() + b0 * d * kLanes;
  const float* v = t.v + r0 * d;
  for (int64_t j = 0; j < d; ++j) {
    // The kernel waits on nothing but L2, which leaves room to pull the next
    // tile out of DRAM: a line every 4 dimensions.
    if ((j & 3) == 0 && s.next < s.next_end) {
      _mm_prefetch(s.next, _MM_HINT_T1);
      s.next += 64;
    }
    __m512 qa[QB];
    for (int b = 0; b < QB; ++b) qa[b] = _mm512_loadu_ps(qp + (b * d + j) * kLanes);
    for (int r = 0; r < R; ++r) {
      const __m512 x = _mm512_set1_ps(v[r * d + j]);
      for (int b = 0; b < QB; ++b) acc[r][b] = _mm512_fmadd_ps(x, qa[b], acc[r][b]);
    }
  }
  const __m512 inf = _mm512_set1_ps(kInf);
  for (int r = 0; r < R && t.inv; ++r)
    for (int b = 0; b < QB; ++b) acc[r][b] = _mm512_mul_ps(acc[r][b], _mm512_set1_ps(t.inv[r0 + r]));
  for (int b = 0; b < QB; ++b) {
    const int64_t lane = (b0 + b) * kLanes;
    __m512 thr = _mm512_loadu_ps(s.thr.data() + lane);
    for (int r = 0; r < R; ++r) {
      if (_mm512_cmp_ps_mask(_mm512_abs_ps(acc[r][b]), inf, _CMP_NLT_UQ))
        s.bad_row = s.bad_row < 0 ? r0 + r : std::min(s.bad_row, r0 + r);
      __mmask16 m = _mm512_cmp_ps_mask(acc[r][b], thr, _CMP_GT_OQ);
      if (!m) continue;
      alignas(64) float vals[kLanes];
      _mm512_store_ps(vals, acc[r][b]);
      for (; m; m &= m - 1) {
        const int l = __builtin_ctz(m);
        HeapView heap = s.heaps.at(lane + l);
        heap.push({vals[l], t.id0 + r0 + r});
        s.thr[lane + l] = heap.threshold();
      }
      thr = _mm512_loadu_ps(s.thr.data() + lane);
    }
    if (!(s.T > 0)) continue;
    // Softmax: lift the running max first (rescaling the sums of the lanes
    // it moved), then add exp(T·(score − max)) of the R rows.
    __m512 top = _mm512_loadu_ps(s.lse.max.data() + lane);
    const __m512 old = top;
    for (int r = 0; r < R; ++r) top = _mm512_max_ps(top, acc[r][b]);
    const __m512 tv = _mm512_set1_ps(s.T);
    double* sum = s.lse.sum.data() + lane;
    __m512d lo = _mm512_loadu_pd(sum), hi = _mm512_loadu_pd(sum + 8);
    if (_mm512_cmp_ps_mask(top, old, _CMP_GT_OQ)) {
      const __m512 f = exp_nonpositive(_mm512_mul_ps(tv, _mm512_sub_ps(old, top)));
      lo = _mm512_mul_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(f)));
      hi = _mm512_mul_pd(hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(f), 1))));
      _mm512_storeu_ps(s.lse.max.data() + lane, top);
    }
    __m512 e = _mm512_setzero_ps();
    for (int r = 0; r < R; ++r) e = _mm512_add_ps(e, exp_nonpositive(_mm512_mul_ps(tv, _mm512_sub_ps(acc[r][b], top))));
    _mm512_storeu_pd(sum, _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(e))));
    _mm512_storeu_pd(sum + 8,
                     _mm512_add_pd(hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1)))));
  }
}

}  // namespace

bool dense_available() {
  static const bool yes = cpu_avx512f();
  return yes;
}

DenseQueries pack_dense_queries(const float* q, int64_t nq, int64_t d) {
  DenseQueries out;
  out.nq = nq;
  out.d = d;
  out.blocks = (nq + kLanes - 1) / kLanes;
  out.packed.assign(static_cast<size_t>(out.blocks * d * kLanes), 0.0f);
  for (int64_t i = 0; i < nq; ++i)
    for (int64_t j = 0; j < d; ++j) out.packed[((i / kLanes) * d + j) * kLanes + i % kLanes] = q[i * d + j];
  return out;
}

void RunningLse::reset(int64_t n) {
  max.assign(static_cast<size_t>(n), -kInf);
  sum.assign(static_cast<size_t>(n), 0.0);
}

void RunningLse::merge(int64_t q, float omax, double osum, float T) {
  if (osum == 0) return;
  const float m = std::max(max[q], omax);
  sum[q] = (sum[q] == 0 ? 0 : sum[q] * std::exp(double(T) * (max[q] - m))) + osum * std::exp(double(T) * (omax - m));
  max[q] = m;
}

double RunningLse::lse(int64_t q, float T) const { return double(T) * max[q] + std::log(sum[q]); }

void scan_tile_dense(const DenseQueries& q, const DenseTile& t, HeapSet& heaps, std::vector<float>& thr, float T,
                     RunningLse& lse, Bytes next) {
  const size_t lanes = static_cast<size_t>(q.blocks * kLanes);
  thr.resize(lanes);
  for (size_t i = 0; i < lanes; ++i) thr[i] = static_cast<int64_t>(i) < q.nq ? heaps.at(i).threshold() : kInf;
  if (T > 0 && lse.max.size() < lanes) fail("softmax sums: expected one per query lane");
  Sink s{heaps, thr, T, lse, static_cast<const char*>(next.data), static_cast<const char*>(next.data) + next.size};
  for_query_groups(q.blocks, [&](auto qb, int64_t b0) {
    constexpr int QB = decltype(qb)::value;
    for_row_groups<group_rows<QB>()>(t.rows, [&](auto r, int64_t r0) {
      kernel<decltype(r)::value, QB>(q, b0, t, r0, s);
    });
  });
  if (s.bad_row >= 0)
    fail_non_finite_score(t.id0 + s.bad_row);
}

}  // namespace cl
