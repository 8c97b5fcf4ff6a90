#include "topk_bf16.h"

#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <string>
#include <utility>

#include "error.h"
#include "matrix.h"

namespace cl {
namespace {

constexpr int kLanes = 16;    // queries per register
constexpr int kRowGroup = 12; // rows per micro-kernel: 12 × 2 accumulators

#define CL_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

// fp32 → bf16 bits, round to nearest even (values are finite here).
CL_BF16 void to_bf16(const float* x, int64_t n, uint16_t* out) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m512bh h = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
    _mm512_storeu_si512(out + i, (__m512i)h);
  }
  for (; i < n; ++i) {
    uint32_t b;
    std::memcpy(&b, x + i, 4);
    b += 0x7fffu + ((b >> 16) & 1u);
    out[i] = static_cast<uint16_t>(b >> 16);
  }
}

// ‖x‖ rounded up: float lanes carry ~1e-6 relative error, the bound must not.
double norm_up(const float* x, int64_t d) { return std::sqrt(sum_squares(x, d)) * (1 + 1e-5); }

CL_BF16 float exact_dot(const float* a, const float* b, int64_t d) {
  __m512 acc = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= d; j += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + j), _mm512_loadu_ps(b + j), acc);
  float s = _mm512_reduce_add_ps(acc);
  for (; j < d; ++j) s += a[j] * b[j];
  return s;
}

// Scores of R rows against QB blocks of 16 queries (bf16 dot products), then
// screening: a row reaches fp32 re-scoring for a query only when its score
// plus the rounding bound could beat that query's current threshold.
template <int R, int QB>
CL_BF16 void kernel(const Bf16Queries& q, int64_t b0, const uint32_t* vb, const float* v, const float* inv,
                    const float* vnorm, int64_t id0, HeapSet& heaps, float* thr) {
  __m512 acc[R][QB];
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < QB; ++b) acc[r][b] = _mm512_setzero_ps();
  const uint32_t* qp = q.packed.data() + b0 * q.pairs * kLanes;
  for (int64_t p = 0; p < q.pairs; ++p) {
    __m512bh qa[QB];
    for (int b = 0; b < QB; ++b) qa[b] = (__m512bh)_mm512_loadu_si512(qp + (b * q.pairs + p) * kLanes);
    for (int r = 0; r < R; ++r) {
      const __m512bh x = (__m512bh)_mm512_set1_epi32(static_cast<int>(vb[r * q.pairs + p]));
      for (int b = 0; b < QB; ++b) acc[r][b] = _mm512_dpbf16_ps(acc[r][b], x, qa[b]);
    }
  }
  const float c = 2.0f / 256 + 1.0f / 65536 + float(q.d + 2) / 8388608.0f;
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < QB; ++b) {
      const int64_t qb = (b0 + b) * kLanes;
      __m512 s = acc[r][b];
      if (inv) s = _mm512_mul_ps(s, _mm512_set1_ps(inv[r]));
      // Upper bound of the exact score; ≥ so that ties are re-scored too.
      const __m512 upper = _mm512_fmadd_ps(_mm512_set1_ps(c * vnorm[r]), _mm512_loadu_ps(q.norms.data() + qb), s);
      for (__mmask16 m = _mm512_cmp_ps_mask(upper, _mm512_loadu_ps(thr + qb), _CMP_GE_OQ); m; m &= m - 1) {
        const int64_t qi = qb + __builtin_ctz(m);
        if (qi >= q.nq) break;
        float exact = exact_dot(q.f32.data() + qi * q.d, v + r * q.d, q.d);
        if (inv) exact *= inv[r];
        HeapView heap = heaps.at(qi);
        if (exact > heap.threshold()) {
          heap.push({exact, id0 + r});
          thr[qi] = heap.threshold();
        }
      }
    }
}

using Kernel = void (*)(const Bf16Queries&, int64_t, const uint32_t*, const float*, const float*, const float*,
                        int64_t, HeapSet&, float*);
template <int QB, int... R>
constexpr Kernel kernel_for(int r, std::integer_sequence<int, R...>) {
  constexpr Kernel table[] = {kernel<R + 1, QB>...};
  return table[r - 1];
}

}  // namespace

bool bf16_screening_available() {
  static const bool yes = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
  return yes;
}

Bf16Queries pack_bf16_queries(const float* q, int64_t nq, int64_t d) {
  Bf16Queries out;
  out.nq = nq;
  out.d = d;
  out.pairs = (d + 1) / 2;
  out.blocks = (nq + kLanes - 1) / kLanes;
  out.f32.assign(q, q + nq * d);
  out.norms.assign(static_cast<size_t>(out.blocks * kLanes), 0.0f);
  out.packed.assign(static_cast<size_t>(out.blocks * out.pairs * kLanes), 0);
  std::vector<uint16_t> row(static_cast<size_t>(out.pairs * 2), 0);
  for (int64_t i = 0; i < nq; ++i) {
    to_bf16(q + i * d, d, row.data());
    const uint32_t* pr = reinterpret_cast<const uint32_t*>(row.data());
    const int64_t b = i / kLanes, l = i % kLanes;
    for (int64_t p = 0; p < out.pairs; ++p) out.packed[(b * out.pairs + p) * kLanes + l] = pr[p];
    out.norms[i] = static_cast<float>(norm_up(q + i * d, d));
  }
  return out;
}

void scan_tile_bf16(const Bf16Queries& q, const float* v, int64_t nb, const float* inv, int64_t id0, HeapSet& heaps,
                    Bf16Scratch& s) {
  const int64_t d = q.d;
  s.norms.resize(static_cast<size_t>(nb));
  if (d % 2) s.rows.assign(static_cast<size_t>(nb * q.pairs), 0);  // zero the odd column's partner
  else s.rows.resize(static_cast<size_t>(nb * q.pairs));
  for (int64_t j = 0; j < nb; ++j) {
    const double n = norm_up(v + j * d, d);
    // A NaN/Inf would make every bf16 score unordered and silently skipped.
    if (!std::isfinite(n)) fail("vocabulary: row " + std::to_string(id0 + j) + " gives a non-finite score (its vector holds NaN/Inf)");
    s.norms[j] = static_cast<float>(n * (inv ? inv[j] * (1 + 1e-6) : 1.0));
    to_bf16(v + j * d, d, reinterpret_cast<uint16_t*>(s.rows.data() + j * q.pairs));
  }
  s.thr.resize(static_cast<size_t>(q.blocks * kLanes));
  for (int64_t i = 0; i < q.nq; ++i) s.thr[i] = heaps.at(i).threshold();
  // Query blocks outermost: two blocks (32 queries, 32 KiB at d = 512) stay in
  // L1 while the tile's rows stream past them.
  for (int64_t b0 = 0; b0 < q.blocks; b0 += 2) {
    const bool two = b0 + 1 < q.blocks;
    for (int64_t r0 = 0; r0 < nb; r0 += kRowGroup) {
      const int r = static_cast<int>(std::min<int64_t>(kRowGroup, nb - r0));
      const Kernel k = two ? kernel_for<2>(r, std::make_integer_sequence<int, kRowGroup>{})
                           : kernel_for<1>(r, std::make_integer_sequence<int, kRowGroup>{});
      k(q, b0, s.rows.data() + r0 * q.pairs, v + r0 * d, inv ? inv + r0 : nullptr, s.norms.data() + r0, id0 + r0, heaps,
        s.thr.data());
    }
  }
}

}  // namespace cl
