#include "gram_int16.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "cpu.h"
#include "threads.h"

namespace cl {

namespace {

#define CL_VNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))

// Pairs summed exactly in int32 before a flush to fp32: 128·2·2047² < 2³¹.
constexpr int64_t kFlushPairs = 128;
// Pairs per pass over a group of A blocks: its 4 blocks (4·48 columns,
// 960 KB) stay in L2 while the B slivers stream past once for all four.
constexpr int64_t kChunkPairs = 1280, kGroup = 4;
static_assert(kChunkPairs % kFlushPairs == 0);
// Pairs ahead that the kernel prefetches its operands (prefetches past the
// end of an array are harmless: they never fault).
constexpr int64_t kAhead = 32;

// The lanes of a 16-column vector u that hold one of `valid` columns.
CL_VNNI inline __mmask16 lanes(int64_t valid, int u) {
  const int64_t left = valid - 16 * u;
  return left >= 16 ? __mmask16(0xffff) : left <= 0 ? __mmask16(0) : __mmask16((1u << left) - 1);
}

// One 8×48 tile over pairs [0, pairs): C[v][u] (+)= sa[u]·sb[v]·Σ a_u·b_v for
// the 48 A columns of 3 vectors (astride apart) and 8 B columns, bstride
// apart from one pair to the next; rows and cols say how much of the tile C
// holds. Accumulators are __v16si: through the __m512i intrinsics GCC copies
// them every step.
CL_VNNI void tile(const int32_t* A, int64_t astride, const int32_t* B, int64_t bstride, int64_t pairs, const float* sa, const float* sb,
                  float* C, int64_t ldc, int64_t rows, int64_t cols, bool add) {
  __m512 f[3][8];
  for (int v = 0; v < 8; ++v)
    for (int u = 0; u < 3; ++u) f[u][v] = _mm512_setzero_ps();
  for (int64_t k0 = 0; k0 < pairs; k0 += kFlushPairs) {
    __v16si acc[3][8];
    _Pragma("GCC unroll 8") for (int v = 0; v < 8; ++v) acc[0][v] = acc[1][v] = acc[2][v] = (__v16si)_mm512_setzero_si512();
    for (int64_t k = k0, ke = std::min(pairs, k0 + kFlushPairs); k < ke; ++k) {
      // The hardware prefetchers alone left the Gram 7% slower.
      for (const int32_t* line : {A + (k + kAhead) * 16, A + astride + (k + kAhead) * 16, A + 2 * astride + (k + kAhead) * 16, B + (k + kAhead) * bstride})
        _mm_prefetch(reinterpret_cast<const char*>(line), _MM_HINT_T0);
      const __v16si a0 = (__v16si)_mm512_loadu_si512(A + k * 16), a1 = (__v16si)_mm512_loadu_si512(A + astride + k * 16),
                    a2 = (__v16si)_mm512_loadu_si512(A + 2 * astride + k * 16);
      _Pragma("GCC unroll 8") for (int v = 0; v < 8; ++v) {
        const __v16si b = (__v16si)_mm512_set1_epi32(B[k * bstride + v]);
        acc[0][v] = __builtin_ia32_vpdpwssd_v16si(acc[0][v], a0, b);
        acc[1][v] = __builtin_ia32_vpdpwssd_v16si(acc[1][v], a1, b);
        acc[2][v] = __builtin_ia32_vpdpwssd_v16si(acc[2][v], a2, b);
      }
    }
    _Pragma("GCC unroll 8") for (int v = 0; v < 8; ++v) _Pragma("GCC unroll 3") for (int u = 0; u < 3; ++u)
      f[u][v] = _mm512_add_ps(f[u][v], _mm512_cvtepi32_ps((__m512i)acc[u][v]));
  }
  for (int v = 0; v < std::min<int64_t>(8, rows); ++v)
    for (int u = 0; u < 3; ++u) {
      const __mmask16 m = lanes(cols, u);
      if (!m) break;
      float* c = C + v * ldc + u * 16;
      __m512 x = _mm512_mul_ps(_mm512_mul_ps(f[u][v], _mm512_loadu_ps(sa + u * 16)), _mm512_set1_ps(sb[v]));
      if (add) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, c));
      _mm512_mask_storeu_ps(c, m, x);
    }
}

// C (b.cols × a.cols, row-major) (+)= alpha·(a.scale ⊙ b̂ᵀâ ⊙ b.scale), tile
// by tile; `upper` skips the tiles wholly below the diagonal (a and b the
// same columns). Groups of kGroup A blocks are the parallel tasks, the
// costliest first.
CL_VNNI void products(const RoundedColumns& a, const RoundedColumns& b, float alpha, float* C, bool upper, bool accumulate) {
  std::vector<float> sa(a.scale);
  for (float& s : sa) s *= alpha;
  const int64_t blocks = a.padded / 48, groups = (blocks + kGroup - 1) / kGroup, slivers = (b.cols + 7) / 8;
  const int64_t astride = a.pairs * 16;
  // B columns 8·ls.. at pair k0: a sliver, or half of a panel.
  const auto b_sliver = [&](int64_t ls, int64_t k0) {
    const int64_t g = ls * 8 / b.width;
    return &b.packed[(g * b.pairs + k0) * b.width + ls * 8 % b.width];
  };
  parallel_for(groups, [&](int64_t task, int) CL_VNNI {
    const int64_t g = upper ? groups - 1 - task : task, j0 = g * kGroup, j1 = std::min(blocks, j0 + kGroup);
    const int64_t last = upper ? std::min(slivers, 6 * j1) : slivers;
    for (int64_t k0 = 0; k0 < a.pairs; k0 += kChunkPairs) {
      const int64_t pairs = std::min(kChunkPairs, a.pairs - k0);
      for (int64_t ls = 0; ls < last; ++ls)
        for (int64_t jt = upper ? std::max(j0, ls / 6) : j0; jt < j1 && jt * 48 < a.cols; ++jt)
          tile(&a.packed[3 * jt * astride + k0 * 16], astride, b_sliver(ls, k0), b.width, pairs, &sa[jt * 48],
               &b.scale[ls * 8], C + ls * 8 * a.cols + jt * 48, a.cols, b.cols - ls * 8, a.cols - jt * 48, accumulate || k0 > 0);
    }
  });
}

// Rows 2k and 2k+1 of A rounded into pair k.
CL_VNNI void round_pairs(const float* A, int64_t n, int64_t c, const std::vector<float>& mean, const std::vector<float>& inv,
                         RoundedColumns& r, int64_t k0, int64_t k1) {
  const __m512i lo = _mm512_set1_epi32(-kRoundedMax), hi = _mm512_set1_epi32(kRoundedMax);
  for (int64_t k = k0; k < k1; ++k) {
    const float* x0 = A + 2 * k * c;
    const bool second = 2 * k + 1 < n;
    for (int64_t j = 0; j < r.padded; j += 16) {
      const __mmask16 m = lanes(c - j, 0);
      const __m512 mu = _mm512_loadu_ps(&mean[j]), s = _mm512_loadu_ps(&inv[j]);
      auto q = [&](const float* x) CL_VNNI {
        const __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), mu), s);
        return _mm512_min_epi32(hi, _mm512_max_epi32(lo, _mm512_cvtps_epi32(v)));
      };
      const __m512i q0 = q(x0), q1 = second ? q(x0 + c) : _mm512_setzero_si512();
      const __m512i packed = _mm512_or_si512(_mm512_and_si512(q0, _mm512_set1_epi32(0xffff)), _mm512_slli_epi32(q1, 16));
      if (r.width == 16) {
        _mm512_storeu_si512(&r.packed[((j / 16) * r.pairs + k) * 16], packed);
      } else {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(&r.packed[((j / 8) * r.pairs + k) * 8]), _mm512_castsi512_si256(packed));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(&r.packed[((j / 8 + 1) * r.pairs + k) * 8]),
                            _mm512_extracti64x4_epi64(packed, 1));
      }
    }
  }
}

}  // namespace

bool int16_gram_available() {
  return cpu_avx512f() && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
}

RoundedColumns round_columns(const float* A, int64_t n, int64_t c, const double* mean, const double* spread,
                             int64_t width) {
  RoundedColumns r;
  r.width = width;
  r.cols = c;
  r.pairs = (n + 1) / 2;
  r.padded = (c + 47) / 48 * 48;
  r.scale.assign(r.padded, 0.0f);
  std::vector<float> mu(r.padded, 0.0f), inv(r.padded, 0.0f);
  for (int64_t j = 0; j < c; ++j) {
    mu[j] = float(mean[j]);
    if (spread[j] > 0) r.scale[j] = float(spread[j] / kRoundedMax), inv[j] = float(kRoundedMax / spread[j]);
  }
  r.packed = Scratch<int32_t>(size_t(r.pairs) * r.padded);
  constexpr int64_t kPairsPerTask = 64;
  parallel_for((r.pairs + kPairsPerTask - 1) / kPairsPerTask, [&](int64_t t, int) {
    round_pairs(A, n, c, mu, inv, r, t * kPairsPerTask, std::min(r.pairs, (t + 1) * kPairsPerTask));
  });
  return r;
}

void int16_gram_upper(const RoundedColumns& x, float alpha, float* G, bool accumulate) {
  products(x, x, alpha, G, true, accumulate);
}

void int16_cross(const RoundedColumns& y, const RoundedColumns& x, float alpha, float* C, bool accumulate) {
  products(x, y, alpha, C, false, accumulate);
}

}  // namespace cl
