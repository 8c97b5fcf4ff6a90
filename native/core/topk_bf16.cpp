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

constexpr int kRows = 32;     // vocabulary rows per group: two zmm of 16 fp32 lanes
constexpr int kQueries = 12;  // queries per micro-kernel: 24 accumulators

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

// Scores of R queries against one packed group of 32 rows, then screening.
template <int R>
CL_BF16 void group_kernel(const Bf16Queries& q, int64_t q0, const uint32_t* vp, const float* v, int64_t nrows,
                          const float* inv, const float* vnorm, int64_t id0, HeapSet& heaps) {
  __m512 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  const uint32_t* qp = q.packed.data() + q0 * q.pairs;
  for (int64_t p = 0; p < q.pairs; ++p) {
    const __m512bh v0 = (__m512bh)_mm512_loadu_si512(vp + p * kRows);
    const __m512bh v1 = (__m512bh)_mm512_loadu_si512(vp + p * kRows + 16);
    for (int r = 0; r < R; ++r) {
      const __m512bh b = (__m512bh)_mm512_set1_epi32(static_cast<int>(qp[r * q.pairs + p]));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], b, v0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], b, v1);
    }
  }
  const float c = 2.0f / 256 + 1.0f / 65536 + float(q.d + 2) / 8388608.0f;
  for (int r = 0; r < R; ++r) {
    const int64_t qi = q0 + r;
    HeapView heap = heaps.at(qi);
    for (int h = 0; h < 2; ++h) {
      __m512 s = acc[r][h];
      if (inv) s = _mm512_mul_ps(s, _mm512_loadu_ps(inv + h * 16));
      // Upper bound of the exact score; ≥ so that ties are re-scored too.
      __m512 upper = _mm512_fmadd_ps(_mm512_set1_ps(c * q.norms[qi]), _mm512_loadu_ps(vnorm + h * 16), s);
      __mmask16 m = _mm512_cmp_ps_mask(upper, _mm512_set1_ps(heap.threshold()), _CMP_GE_OQ);
      for (; m; m &= m - 1) {
        const int64_t row = h * 16 + __builtin_ctz(m);
        if (row >= nrows) break;
        float exact = exact_dot(q.f32.data() + qi * q.d, v + row * q.d, q.d);
        if (inv) exact *= inv[row];
        if (exact > heap.threshold()) heap.push({exact, id0 + row});
      }
    }
  }
}

using Kernel = void (*)(const Bf16Queries&, int64_t, const uint32_t*, const float*, int64_t, const float*,
                        const float*, int64_t, HeapSet&);
template <int... R>
constexpr Kernel kernels_for(int r, std::integer_sequence<int, R...>) {
  constexpr Kernel table[] = {group_kernel<R + 1>...};
  return table[r - 1];
}

// Packs up to 32 rows into pairs × 32 lanes (row j's pair p at [p][j]),
// zero-padding missing rows and an odd last column.
CL_BF16 void pack_group(const float* v, int64_t nrows, int64_t d, int64_t pairs, Bf16Scratch& s) {
  s.row.assign(static_cast<size_t>(pairs * 2), 0);
  s.packed.assign(static_cast<size_t>(pairs * kRows), 0);
  for (int64_t j = 0; j < nrows; ++j) {
    to_bf16(v + j * d, d, s.row.data());
    const uint32_t* pr = reinterpret_cast<const uint32_t*>(s.row.data());
    for (int64_t p = 0; p < pairs; ++p) s.packed[p * kRows + j] = pr[p];
  }
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
  out.f32.assign(q, q + nq * d);
  out.norms.resize(nq);
  out.packed.assign(static_cast<size_t>(nq * out.pairs), 0);
  std::vector<uint16_t> row(static_cast<size_t>(out.pairs * 2), 0);
  for (int64_t i = 0; i < nq; ++i) {
    to_bf16(q + i * d, d, row.data());
    std::memcpy(&out.packed[i * out.pairs], row.data(), sizeof(uint32_t) * out.pairs);
    out.norms[i] = static_cast<float>(norm_up(q + i * d, d));
  }
  return out;
}

void scan_tile_bf16(const Bf16Queries& q, const float* v, int64_t nb, const float* inv, int64_t id0, HeapSet& heaps,
                    Bf16Scratch& s) {
  const int64_t d = q.d;
  s.norms.assign(static_cast<size_t>(nb + kRows), 0.0f);
  for (int64_t j = 0; j < nb; ++j) {
    const double n = norm_up(v + j * d, d);
    // A NaN/Inf would make every bf16 score unordered and silently skipped.
    if (!std::isfinite(n)) fail("vocabulary: row " + std::to_string(id0 + j) + " gives a non-finite score (its vector holds NaN/Inf)");
    s.norms[j] = static_cast<float>(n * (inv ? inv[j] * (1 + 1e-6) : 1.0));
  }
  std::vector<float> inv_pad;
  for (int64_t g0 = 0; g0 < nb; g0 += kRows) {
    const int64_t nrows = std::min<int64_t>(kRows, nb - g0);
    pack_group(v + g0 * d, nrows, d, q.pairs, s);
    const float* ginv = nullptr;
    if (inv) {  // the kernel reads 32 lanes: pad the last group
      inv_pad.assign(kRows, 0.0f);
      std::copy(inv + g0, inv + g0 + nrows, inv_pad.begin());
      ginv = inv_pad.data();
    }
    for (int64_t q0 = 0; q0 < q.nq; q0 += kQueries) {
      const int r = static_cast<int>(std::min<int64_t>(kQueries, q.nq - q0));
      kernels_for(r, std::make_integer_sequence<int, kQueries>{})(q, q0, s.packed.data(), v + g0 * d, nrows, ginv,
                                                                 s.norms.data() + g0, id0 + g0, heaps);
    }
  }
}

}  // namespace cl
