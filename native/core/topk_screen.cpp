#include "topk_screen.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>

#include "error.h"
#include "topk_lanes.h"

namespace cl {
namespace {

// Every format's instructions in one target; no format's code uses another's,
// so the integer paths run on VNNI CPUs without BF16 too.
#define CL_SCREEN __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx512vnni")))

// t of the bound: fp32 accumulation of d products, here and in the re-score,
// plus the few roundings that turn the accumulator into a score.
double accumulation_slack(int64_t d) { return double(d + 2) / 8388608.0 + 1.0 / 1048576.0; }

// t of the screen's own sum: the integer formats accumulate exactly, leaving
// the two roundings that turn the sum into fp32 (conversion, the query's scale).
double screen_slack(ScreenFormat f, int64_t d) { return f == ScreenFormat::Bf16 ? accumulation_slack(d) : 0x1p-21; }

// Norms carry float-lane summation error (~1e-6 relative); the bound must not.
float up(double x) { return static_cast<float>(x * (1 + 1e-5)); }

// A threshold moved down past the last roundings of a screened score near it
// (the inverse-norm product, the final adds); -inf stays.
float lowered(float x) { return x - std::fabs(x) * 0x1p-20f; }

// One vector x rounded to the format after the frame's map y = (x − μ)·m:
// the scale of its rounded values ŷ and the exact-arithmetic norms.
struct Rounded {
  float scale;
  double x, y, err;  // ‖x‖, ‖y‖, ‖y − ŷ‖
};

// Calls fn(j, k) over 16-float chunks of a d-vector, k the mask of valid
// lanes: a constant full mask in the main loop, so loads and stores there
// compile unmasked (AMD's masked loads and stores are slow).
template <class Fn>
CL_SCREEN inline void chunks(int64_t d, Fn&& fn) {
  int64_t j = 0;
  for (; j + 16 <= d; j += 16) fn(j, __mmask16(0xffff));
  if (j < d) fn(j, static_cast<__mmask16>((1u << (d - j)) - 1));
}

CL_SCREEN inline __m512 load(const float* p, int64_t j, __mmask16 k) {
  return k == 0xffff ? _mm512_loadu_ps(p + j) : _mm512_maskz_loadu_ps(k, p + j);
}

// The map y = (x − μ)·m one side is rounded in (rows: m = 1/c; queries:
// μ = 0, m = c).
struct Map {
  const float* mu;
  const float* m;
};

// Lanes j.. of y; m is a power of two, so only the subtraction rounds.
template <bool Framed>
CL_SCREEN inline __m512 mapped(const float* x, const Map& f, int64_t j, __mmask16 k, __m512& xv) {
  xv = load(x, j, k);
  if (!Framed) return xv;
  return _mm512_mul_ps(_mm512_sub_ps(xv, load(f.mu, j, k)), load(f.m, j, k));
}

CL_SCREEN inline double root(__m512 ss) { return std::sqrt(double(_mm512_reduce_add_ps(ss))); }

// Vectors with every |y| below this are screened as zero, their whole norm
// the error (|a·b − 0| ≤ ‖a‖‖b‖ still bounds the score): in fp32 the squares
// of their rounding errors (and the int8 scale) would underflow, and
// VDPBF16PS flushes denormal products, so the measured error would miss
// part of the true one.
constexpr float kTiny = 0x1p-40f;

// The zero of a tiny vector: its `steps` words written as the format's
// zeros (word p: zero(p)), the norms summed in double.
template <bool Framed, class Zero>
Rounded as_zero(const float* x, const Map& f, int64_t d, uint32_t* out, int64_t steps, Zero zero) {
  double xs = 0, ys = 0;
  for (int64_t j = 0; j < d; ++j) {
    const float y = Framed ? (x[j] - f.mu[j]) * f.m[j] : x[j];  // as mapped() computes it
    xs += double(x[j]) * x[j];
    ys += double(y) * y;
  }
  for (int64_t p = 0; p < steps; ++p) out[p] = zero(p);
  return {0.0f, std::sqrt(xs), std::sqrt(ys), std::sqrt(ys)};
}

// bf16, round to nearest even; y − bf16(y) is exact in fp32.
template <bool Framed>
CL_SCREEN Rounded round_bf16(const float* x, const Map& f, int64_t d, uint32_t* out, bool) {
  uint16_t* o = reinterpret_cast<uint16_t*>(out);
  __m512 xs = _mm512_setzero_ps(), ys = xs, ee = xs, top = xs;
  chunks(d, [&](int64_t j, __mmask16 k) CL_SCREEN {
    __m512 xv;
    const __m512 y = mapped<Framed>(x, f, j, k, xv);
    const __m256i h = (__m256i)_mm512_cvtneps_pbh(y);
    const __m512 e = _mm512_sub_ps(y, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
    xs = _mm512_fmadd_ps(xv, xv, xs);
    if (Framed) ys = _mm512_fmadd_ps(y, y, ys);
    ee = _mm512_fmadd_ps(e, e, ee);
    top = _mm512_max_ps(top, _mm512_abs_ps(y));
    if (k == 0xffff) _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + j), h);
    else _mm256_mask_storeu_epi16(o + j, k, h);
  });
  if (!(_mm512_reduce_max_ps(top) >= kTiny)) return as_zero<Framed>(x, f, d, out, (d + 1) / 2, [](int64_t) { return 0u; });
  return {1.0f, root(xs), Framed ? root(ys) : root(xs), root(ee)};
}

// The int16 values' largest norm: the products of two such vectors sum,
// partial sums included, to at most 46,340² < 2³¹ (Cauchy–Schwarz), so the
// int32 accumulation is exact at any d.
constexpr double kInt16Norm = 46340;

// What a vector's values are multiplied by before rounding to integers.
// int8: max|y| ↦ 63 (a query's and a row's values must sum within a byte).
// int16: as fine as both the int16 range and the norm cap allow:
// ‖round(s·y)‖ ≤ s‖y‖(1 + 2⁻²⁴) + √d/2, and ‖y‖ here carries the fp32 lanes'
// summation error. For CLIP-like vectors the norm cap gives a
// step near ‖y‖/46,300, 3× finer than max|y|/2,047 (a per-value cap at
// d = 512).
double to_int_factor(bool int8, float mx, double norm, int64_t d) {
  if (!(mx > 0)) return 0;
  if (int8) return 63.0 / mx;
  // Squares below 2⁻¹²⁶ may flush to zero: d of them join the sum.
  const double summed = std::sqrt(norm * norm + double(d) * 0x1p-126) * (1 + double(d / 16 + 8) * 0x1p-23);
  // At most 46,340·2⁶³: finite as a float however small the vector.
  return std::min(32767.0 / mx, (kInt16Norm - 0.5 * std::sqrt(double(d))) / summed) * (1 - 0x1p-20);
}

// int8 values in the layout of Dot<Int8>, 12 to a group of three words: A
// and B hold Winograd's pairs of values 0..7 (byte k of each from the pair
// (2k, 2k+1); queries put the even value in A, rows the odd one; A bytes
// hold value + 64), P values 8..11 for a plain product (rows' bytes, its
// unsigned side, hold value + 64). The group of `i`'s first 12 lanes, in
// the low 12 bytes.
CL_SCREEN inline __m128i group_bytes(__m512i i, bool row) {
  const __m128i to_words = row ? _mm_setr_epi8(1, 3, 5, 7, 0, 2, 4, 6, 8, 9, 10, 11, -1, -1, -1, -1)
                               : _mm_setr_epi8(0, 2, 4, 6, 1, 3, 5, 7, 8, 9, 10, 11, -1, -1, -1, -1);
  const __m128i bias = _mm_setr_epi32(0x40404040, 0, row ? 0x40404040 : 0, 0);
  return _mm_add_epi8(_mm_shuffle_epi8(_mm512_cvtsepi32_epi8(i), to_words), bias);
}

// The words of a zero value group (a tiny vector's, or padding).
uint32_t zero_word(int64_t p, bool row) { return p % 3 == 0 || (p % 3 == 2 && row) ? 0x40404040u : 0u; }

// Integers with one scale per vector (to_int_factor); int8 in groups of 12
// (group_bytes), int16 in order.
template <bool Framed, class T>
CL_SCREEN Rounded round_int(const float* x, const Map& f, int64_t d, uint32_t* out, bool row) {
  T* o = reinterpret_cast<T*>(out);
  __m512 xs = _mm512_setzero_ps(), ys = xs, top = xs, ee = xs;
  chunks(d, [&](int64_t j, __mmask16 k) CL_SCREEN {
    __m512 xv;
    const __m512 y = mapped<Framed>(x, f, j, k, xv);
    xs = _mm512_fmadd_ps(xv, xv, xs);
    if (Framed) ys = _mm512_fmadd_ps(y, y, ys);
    top = _mm512_max_ps(top, _mm512_abs_ps(y));
  });
  const float mx = _mm512_reduce_max_ps(top);
  if (!(mx >= kTiny)) {
    if constexpr (sizeof(T) == 1)
      return as_zero<Framed>(x, f, d, out, screen_steps(ScreenFormat::Int8, d), [row](int64_t p) { return zero_word(p, row); });
    return as_zero<Framed>(x, f, d, out, (d + 1) / 2, [](int64_t) { return 0u; });
  }
  const double xn = root(xs), yn = Framed ? root(ys) : xn;
  const float factor = static_cast<float>(to_int_factor(sizeof(T) == 1, mx, yn, d));
  // |y·factor| rounds to at most 63 (int8: the product < 63.5) or 32767
  // (int16: the factor is below 32767/max|y| by far more than it rounds).
  const float scale = sizeof(T) == 1 ? mx / 63 : factor > 0 ? 1 / factor : 0;
  const __m512 to_int = _mm512_set1_ps(factor), sv = _mm512_set1_ps(scale);
  // Lanes j.. read with mask k, rounded; the squared errors of the `valid` ones summed.
  auto rounded = [&](int64_t j, __mmask16 k, __mmask16 valid) CL_SCREEN {
    __m512 xv;
    const __m512 y = mapped<Framed>(x, f, j, k, xv);
    const __m512i i = _mm512_cvtps_epi32(_mm512_mul_ps(y, to_int));
    const __m512 e = _mm512_maskz_fnmadd_ps(valid, sv, _mm512_cvtepi32_ps(i), y);
    ee = _mm512_fmadd_ps(e, e, ee);
    return i;
  };
  if constexpr (sizeof(T) == 1) {
    for (int64_t j = 0; j < d; j += 12) {
      const int64_t left = d - j;
      const __mmask16 valid = static_cast<__mmask16>((1u << std::min<int64_t>(left, 12)) - 1);
      // Reads and writes past the group unmasked while they stay in the
      // vector (AMD's masked ones are slow); padding values read as zeros.
      const __m128i bytes = group_bytes(rounded(j, left >= 16 ? __mmask16(0xffff) : valid, valid), row);
      if (left > 12) _mm_storeu_si128(reinterpret_cast<__m128i*>(o + j), bytes);
      else _mm_mask_storeu_epi8(o + j, 0x0fff, bytes);
    }
  } else {
    chunks(d, [&](int64_t j, __mmask16 k) CL_SCREEN {
      const __m256i words = _mm512_cvtsepi32_epi16(rounded(j, k, k));
      if (k == 0xffff) _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + j), words);
      else _mm256_mask_storeu_epi16(o + j, k, words);
    });
  }
  return {scale, xn, yn, root(ee)};
}

using RoundFn = Rounded (*)(const float*, const Map&, int64_t, uint32_t*, bool);
RoundFn rounder(ScreenFormat f, bool framed) {
  switch (f) {
    case ScreenFormat::Bf16: return framed ? round_bf16<true> : round_bf16<false>;
    case ScreenFormat::Int8: return framed ? round_int<true, int8_t> : round_int<false, int8_t>;
    case ScreenFormat::Int16: break;
  }
  return framed ? round_int<true, int16_t> : round_int<false, int16_t>;
}

// The dot-product step of each format and how its accumulator becomes q̂·v̂
// up to the row's scale.
template <ScreenFormat F>
struct Dot;

template <>
struct Dot<ScreenFormat::Bf16> {
  using Acc = __m512;
  static constexpr int kWords = 1;  // 32-bit words of a vector per step
  CL_SCREEN static Acc start(int32_t) { return _mm512_setzero_ps(); }
  CL_SCREEN static Acc step(Acc a, const __m512i (&row)[1], const __m512i (&q)[1]) {
    return _mm512_dpbf16_ps(a, (__m512bh)row[0], (__m512bh)q[0]);
  }
  CL_SCREEN static Acc exact(Acc a, const ScreenQueries&, int64_t) { return a; }
  CL_SCREEN static Acc max(Acc a, Acc b) { return _mm512_max_ps(a, b); }
  CL_SCREEN static __m512 as_float(Acc a) { return a; }
  CL_SCREEN static __m512 scaled(Acc a, const ScreenQueries&, int64_t) { return a; }
  CL_SCREEN static __m512 value(Acc a, const ScreenQueries&, int64_t) { return a; }
};

// An integer format's exact sum in the query's units: monotone in the sum
// (the query's scale is ≥ 0).
CL_SCREEN inline __m512 int_scaled(__v16si n, const ScreenQueries& q, int64_t lane) {
  return _mm512_mul_ps(_mm512_cvtepi32_ps((__m512i)n), _mm512_loadu_ps(q.scale.data() + lane));
}

// int8 in groups of 12 values (group_bytes): 8 in Winograd's pairs ("A new
// algorithm for inner product", 1968), 4 multiplied plainly. For each pair of
// dimensions (2k, 2k+1) one product
//   A·B = (q₂ₖ + r₂ₖ₊₁ + 128)·(q₂ₖ₊₁ + r₂ₖ)
// holds q₂ₖr₂ₖ + q₂ₖ₊₁r₂ₖ₊₁ plus terms of one vector alone, Σ B·(A + 64) over
// its own bytes; the plain product (r + 64)·q adds the query's 64·q. Those
// are screen_offset: the accumulator starts at minus the row's, exact()
// takes off the query's. A and B are byte adds of the query's and the row's
// bytes, which run beside VPDPBUSD on ports it leaves idle: half the
// multiplies per pair. The plain third keeps VPDPBUSD's ports busy while the
// adds take the others: ~30% more scores per second than plain products on
// Zen 5, 5% more than pairs alone. 7-bit values keep A within u8 and B
// within s8.
template <>
struct Dot<ScreenFormat::Int8> {
  // GCC keeps __v16si accumulators in registers; through the __m512i
  // intrinsic it copies and spills them (2.3x slower).
  using Acc = __v16si;
  static constexpr int kWords = 3;  // the A, B and P words of 12 values
  CL_SCREEN static Acc start(int32_t row_offset) {
    return (Acc)_mm512_set1_epi32(static_cast<int32_t>(0u - static_cast<uint32_t>(row_offset)));  // wraps, as the sums do
  }
  CL_SCREEN static Acc step(Acc a, const __m512i (&row)[3], const __m512i (&q)[3]) {
    a = __builtin_ia32_vpdpbusd_v16si(a, (__v16si)_mm512_add_epi8(row[0], q[0]), (__v16si)_mm512_add_epi8(row[1], q[1]));
    return __builtin_ia32_vpdpbusd_v16si(a, (__v16si)row[2], (__v16si)q[2]);
  }
  // The sum without the query's offset (in range, though a may have wrapped).
  CL_SCREEN static Acc exact(Acc a, const ScreenQueries& q, int64_t lane) {
    return (Acc)_mm512_sub_epi32((__m512i)a, _mm512_loadu_si512(q.offset.data() + lane));
  }
  CL_SCREEN static Acc max(Acc a, Acc b) { return (Acc)_mm512_max_epi32((__m512i)a, (__m512i)b); }
  // Rounded to nearest: monotone, so a sum at or above a float stays there.
  CL_SCREEN static __m512 as_float(Acc a) { return _mm512_cvtepi32_ps((__m512i)a); }
  CL_SCREEN static __m512 scaled(Acc n, const ScreenQueries& q, int64_t lane) { return int_scaled(n, q, lane); }
  CL_SCREEN static __m512 value(Acc a, const ScreenQueries& q, int64_t lane) { return scaled(exact(a, q, lane), q, lane); }
};

template <>
struct Dot<ScreenFormat::Int16> {
  using Acc = __v16si;  // as for int8
  static constexpr int kWords = 1;
  CL_SCREEN static Acc start(int32_t) { return (__v16si)_mm512_setzero_si512(); }
  CL_SCREEN static Acc step(Acc a, const __m512i (&row)[1], const __m512i (&q)[1]) {
    return __builtin_ia32_vpdpwssd_v16si(a, (__v16si)row[0], (__v16si)q[0]);
  }
  CL_SCREEN static __m512 value(Acc a, const ScreenQueries& q, int64_t lane) { return int_scaled(a, q, lane); }
};

CL_SCREEN float exact_dot(const float* a, const float* b, int64_t d) {
  __m512 acc = _mm512_setzero_ps();
  chunks(d, [&](int64_t j, __mmask16 k) CL_SCREEN { acc = _mm512_fmadd_ps(load(a, j, k), load(b, j, k), acc); });
  return _mm512_reduce_add_ps(acc);
}

// The rounded rows of a tile: ScreenRows from the tile's first row.
struct RowTerms {
  const uint32_t* packed;
  const int32_t* offset;
  const float *scale, *err, *norm, *vnorm;
};

// Row `row` of the tile as fp32: in place, or fp16 decoded (exactly) into buf.
CL_SCREEN const float* exact_row(const ScreenTile& t, int64_t row, int64_t d, std::vector<float>& buf) {
  if (t.dtype == DType::F32) return static_cast<const float*>(t.v) + row * d;
  buf.resize(static_cast<size_t>(d));
  const uint16_t* h = static_cast<const uint16_t*>(t.v) + row * d;
  chunks(d, [&](int64_t j, __mmask16 k) CL_SCREEN {
    const __m256i x = k == 0xffff ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + j)) : _mm256_maskz_loadu_epi16(k, h + j);
    if (k == 0xffff) _mm512_storeu_ps(buf.data() + j, _mm512_cvtph_ps(x));
    else _mm512_mask_storeu_ps(buf.data() + j, k, _mm512_cvtph_ps(x));
  });
  return buf.data();
}

// Scores of R rows (rows[r·steps + p], p < steps; their offsets ro[r])
// against QB blocks of 16 queries (q[(b·steps + p)·16 + lane]) into acc, the
// format's sums of rounded products. Each step that starts at an even word
// prefetches the next line of [next, next_end) into L2.
// S: the steps per row when known at compile time (0: steps), so the R
// rows' values sit at constant offsets from one register instead of R
// pointers that spill. Always inlined: called out of line, the accumulators
// go through memory (the prepared scan ran 60% slower).
template <ScreenFormat F, int R, int QB, int S>
CL_SCREEN __attribute__((always_inline)) inline void accumulate(const uint32_t* qp, const uint32_t* vb, const int32_t* ro,
                                                                int64_t steps_rt, typename Dot<F>::Acc (&acc)[R][QB],
                                                                const char*& next, const char* next_end) {
  const int64_t steps = S ? S : steps_rt;
  using D = Dot<F>;
  constexpr int W = D::kWords;
  for (int r = 0; r < R; ++r) {
    acc[r][0] = D::start(ro[r]);
    for (int b = 1; b < QB; ++b) acc[r][b] = acc[r][0];
  }
  for (int64_t p = 0; p < steps; p += W) {
    if ((p & 1) == 0 && next < next_end) {
      _mm_prefetch(next, _MM_HINT_T1);
      next += 64;
    }
    __m512i qa[QB][W];
    for (int b = 0; b < QB; ++b)
      for (int w = 0; w < W; ++w) qa[b][w] = _mm512_loadu_si512(qp + (b * steps + p + w) * kLanes);
    for (int r = 0; r < R; ++r) {
      __m512i x[W];
      for (int w = 0; w < W; ++w) x[w] = _mm512_set1_epi32(static_cast<int>(vb[r * steps + p + w]));
      for (int b = 0; b < QB; ++b) acc[r][b] = D::step(acc[r][b], x, qa[b]);
    }
  }
}

// The query blocks of a kernel's R rows in which some row could pass the
// tile's shared screen: one comparison per block, of the largest exact sum
// over the rows with the least that could pass (least_live_sums).
template <ScreenFormat F, int R, int QB>
CL_SCREEN unsigned live_blocks(int64_t b0, const ScreenScratch& s, const typename Dot<F>::Acc (&acc)[R][QB]) {
  using D = Dot<F>;
  unsigned live = 0;
  for (int b = 0; b < QB; ++b) {
    typename D::Acc m = acc[0][b];
    for (int r = 1; r < R; ++r) m = D::max(m, acc[r][b]);
    if (_mm512_cmp_ps_mask(D::as_float(m), _mm512_loadu_ps(s.live.data() + (b0 + b) * kLanes), _CMP_GE_OQ)) live |= 1u << b;
  }
  return live;
}

// Scores of R rows against QB blocks of 16 queries in the format, then
// screening: a row reaches fp32 re-scoring for a query only when its score
// plus the bound could reach that query's current threshold.
template <ScreenFormat F, int R, int QB, int S>
CL_SCREEN void kernel(const ScreenQueries& q, int64_t b0, const RowTerms& rt, const ScreenTile& t, int64_t r0,
                      ScreenScratch& s) {
  const int64_t steps = S ? S : q.steps;
  using D = Dot<F>;
  typename D::Acc acc[R][QB];
  accumulate<F, R, QB, S>(q.packed.data() + b0 * steps * kLanes, rt.packed + r0 * steps, rt.offset + r0, steps, acc, s.next,
                          s.next_end);
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < QB; ++b) acc[r][b] = D::exact(acc[r][b], q, (b0 + b) * kLanes);
  const unsigned live = live_blocks<F, R, QB>(b0, s, acc);
  if (!live) return;
  // Two screens: the tile's shared bound (one multiply-add per score; most
  // rows stop here), then, for the few that pass, the row's own.
  for (int r = 0; r < R; ++r) {
    const int64_t row = r0 + r;
    const __m512 scale = _mm512_set1_ps(rt.scale[row]);
    for (int b = 0; b < QB; ++b) {
      if (!(live >> b & 1)) continue;
      const int64_t lane = (b0 + b) * kLanes;
      const __m512 value = D::scaled(acc[r][b], q, lane), thr = _mm512_loadu_ps(s.thr.data() + lane);
      __m512 loose = _mm512_fmadd_ps(value, scale, _mm512_loadu_ps(s.tile_bound.data() + lane));
      if (t.inv) loose = _mm512_mul_ps(loose, _mm512_set1_ps(t.inv[row]));
      // ≥ so that ties are re-scored too.
      if (!_mm512_cmp_ps_mask(loose, thr, _CMP_GE_OQ)) continue;
      const __m512 est = _mm512_fmadd_ps(value, scale, _mm512_loadu_ps(q.base.data() + lane));
      __m512 upper = _mm512_fmadd_ps(_mm512_set1_ps(rt.err[row]), _mm512_loadu_ps(q.norm.data() + lane), est);
      upper = _mm512_fmadd_ps(_mm512_set1_ps(rt.norm[row]), _mm512_loadu_ps(q.slack.data() + lane), upper);
      upper = _mm512_fmadd_ps(_mm512_set1_ps(rt.vnorm[row]), _mm512_loadu_ps(q.rescore.data() + lane), upper);
      if (t.inv) upper = _mm512_mul_ps(upper, _mm512_set1_ps(t.inv[row]));
      for (__mmask16 m = _mm512_cmp_ps_mask(upper, thr, _CMP_GE_OQ); m; m &= m - 1)
        s.cand.push_back({static_cast<int32_t>(row), static_cast<int32_t>(lane + __builtin_ctz(m))});
    }
  }
}

// For the 8 query lanes from i: the least exact sum n (the format's, before
// the query's scale σ) at which a row of the tile could pass its shared
// screen (n·σ·scale + tile_bound)·inv ≥ thr. No sum below it can, since
// n·σ·scale·inv ≤ n·σ·f (f the tile's largest scale·inv where n ≥ 0, its
// least below) and tile_bound·inv likewise. Solved in double with 2⁻²⁰ of
// each term's size allowed for the fp32 screen's roundings, less one,
// rounded down to float. Infinite thresholds give infinite sums (-inf: every
// row passes; +inf, the padding lanes: none).
CL_SCREEN void least_live_sums(const ScreenQueries& q, ScreenScratch& s, int64_t i) {
  const double slop = 0x1p-20;
  const __m512d thr = _mm512_cvtps_pd(_mm256_loadu_ps(s.thr.data() + i)), tb = _mm512_cvtps_pd(_mm256_loadu_ps(s.tile_bound.data() + i)),
                sigma = _mm512_cvtps_pd(_mm256_loadu_ps(q.scale.data() + i)), zero = _mm512_setzero_pd();
  const __m512d inv = _mm512_mask_blend_pd(_mm512_cmp_pd_mask(tb, zero, _CMP_GE_OQ), _mm512_set1_pd(s.inv_lo), _mm512_set1_pd(s.inv_hi));
  // What the rows' products must supply, and how fast they supply it above and below zero.
  const __m512d need = _mm512_sub_pd(thr, _mm512_fmadd_pd(_mm512_abs_pd(tb), _mm512_set1_pd(s.inv_hi * slop), _mm512_mul_pd(tb, inv)));
  const __mmask8 above = _mm512_cmp_pd_mask(need, zero, _CMP_GT_OQ);
  const __m512d rate = _mm512_mul_pd(sigma, _mm512_mask_blend_pd(above, _mm512_set1_pd(double(s.f_lo) - s.f_hi * slop), _mm512_set1_pd(s.f_hi * (1 + slop))));
  // A rate ≤ 0 cannot supply it: none above zero, any sum below.
  const __m512d never = _mm512_mask_blend_pd(above, _mm512_set1_pd(-INFINITY), _mm512_set1_pd(INFINITY));
  __m512d n = _mm512_mask_blend_pd(_mm512_cmp_pd_mask(rate, zero, _CMP_GT_OQ), never, _mm512_div_pd(need, rate));
  const __mmask8 finite = _mm512_cmp_pd_mask(_mm512_abs_pd(n), _mm512_set1_pd(INFINITY), _CMP_LT_OQ);
  n = _mm512_mask_sub_pd(n, finite, n, _mm512_fmadd_pd(_mm512_abs_pd(n), _mm512_set1_pd(0x1p-40), _mm512_set1_pd(1.0)));
  _mm256_storeu_ps(s.live.data() + i, _mm512_cvt_roundpd_ps(n, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC));
}

// Re-scores the candidates in fp32 and offers them to their heaps, in the
// order found (rows ascending per query, so of equal scores the lower id is
// kept). Exact rows are not in cache (the scan read their rounded copy):
// each is prefetched a few candidates ahead, so their DRAM reads overlap.
CL_SCREEN void rescore(const ScreenQueries& q, const ScreenTile& t, HeapSet& heaps, ScreenScratch& s, ScreenFloor* floor) {
  constexpr size_t kAhead = 4;
  const size_t row_bytes = static_cast<size_t>(q.d) * (t.dtype == DType::F16 ? 2 : 4);
  auto fetch = [&](size_t i) {
    const char* p = static_cast<const char*>(t.v) + s.cand[i].first * row_bytes;
    for (size_t b = 0; b < row_bytes; b += 64) _mm_prefetch(p + b, _MM_HINT_T0);
  };
  for (size_t i = 0; i < std::min(kAhead, s.cand.size()); ++i) fetch(i);
  for (size_t i = 0; i < s.cand.size(); ++i) {
    if (i + kAhead < s.cand.size() && s.cand[i + kAhead].first != s.cand[i + kAhead - 1].first) fetch(i + kAhead);
    const auto [row, qi] = s.cand[i];
    if (qi >= q.nq) continue;  // a padding lane
    float exact = exact_dot(q.f32.data() + qi * q.d, exact_row(t, row, q.d, s.row), q.d);
    if (t.inv) exact *= t.inv[row];
    HeapView heap = heaps.at(qi);
    if (exact > heap.threshold()) {
      heap.push({exact, t.id0 + row});
      if (floor) floor->offer(qi, exact, t.id0 + row);
      s.thr[qi] = lowered(std::max(heap.threshold(), floor ? floor->at(qi) : -INFINITY));
      least_live_sums(q, s, qi & ~int64_t(7));
    }
  }
  s.cand.clear();
}

// Rows per kernel for QB query blocks: the R·QB accumulators, the QB·kWords
// query registers, a row's kWords broadcast words and two byte sums fit the
// 32 registers.
template <ScreenFormat F, int QB>
constexpr int kernel_rows() {
  return Dot<F>::kWords == 3 ? (QB == 3 ? 6 : QB == 2 ? 10 : 12) : group_rows<QB>();
}

// Query groups of three blocks for int8's three words, else two.
template <ScreenFormat F>
constexpr int kGroupBlocks = Dot<F>::kWords == 3 ? 3 : 2;

// Query groups outermost: a group's packed queries (≤ 48 KiB at d = 512)
// stay in L1 while the tile's rows stream past.
template <ScreenFormat F, int S>
void scan(const ScreenQueries& q, const RowTerms& rt, const ScreenTile& t, HeapSet& heaps, ScreenScratch& s, ScreenFloor* floor) {
  for_query_groups<kGroupBlocks<F>>(q.blocks, [&](auto qb, int64_t b0) {
    constexpr int QB = decltype(qb)::value;
    for_row_groups<kernel_rows<F, QB>()>(t.rows, [&](auto r, int64_t r0) {
      kernel<F, decltype(r)::value, QB, S>(q, b0, rt, t, r0, s);
      // While heaps fill, thresholds must rise at once; after that,
      // candidates are rare and wait for the end of the pass.
      if (s.cand.size() >= 64) rescore(q, t, heaps, s, floor);
    });
    rescore(q, t, heaps, s, floor);
  });
}

// fn(F, S) for q's format F and step count S: d = 512 (CLIP's width)
// compiled with its steps, other widths at run time (S = 0).
template <class Fn>
void by_format(const ScreenQueries& q, Fn&& fn) {
  using Int8 = std::integral_constant<ScreenFormat, ScreenFormat::Int8>;
  using Int16 = std::integral_constant<ScreenFormat, ScreenFormat::Int16>;
  using Bf16 = std::integral_constant<ScreenFormat, ScreenFormat::Bf16>;
  using Steps0 = std::integral_constant<int, 0>;
  using Steps256 = std::integral_constant<int, 256>;
  switch (q.format) {
    case ScreenFormat::Int8:
      if (q.steps == 129) fn(Int8{}, std::integral_constant<int, 129>{});
      else fn(Int8{}, Steps0{});
      return;
    case ScreenFormat::Int16:
      if (q.steps == 256) fn(Int16{}, Steps256{});
      else fn(Int16{}, Steps0{});
      return;
    case ScreenFormat::Bf16:
      if (q.steps == 256) fn(Bf16{}, Steps256{});
      else fn(Bf16{}, Steps0{});
  }
}

// out[r·ldo + l] = â·b̂ + add[b0·16 + l] for R rows from r0 and the lanes l
// of QB query blocks from b0; lanes past the last query are not written.
template <ScreenFormat F, int R, int QB, int S>
CL_SCREEN void product_kernel(const ScreenQueries& q, int64_t b0, const ScreenRows& rows, int64_t r0, float* out,
                              int64_t ldo, const float* add) {
  const int64_t steps = S ? S : q.steps;
  using D = Dot<F>;
  typename D::Acc acc[R][QB];
  const char* none = nullptr;
  accumulate<F, R, QB, S>(q.packed.data() + b0 * steps * kLanes, rows.packed.data() + r0 * steps, rows.offset.data() + r0,
                          steps, acc, none, nullptr);
  for (int r = 0; r < R; ++r) {
    const __m512 scale = _mm512_set1_ps(rows.scale[r0 + r]);
    for (int b = 0; b < QB; ++b) {
      const int64_t lane = (b0 + b) * kLanes, left = q.nq - lane;
      float* o = out + r * ldo + b * kLanes;
      if (left >= kLanes) {  // AMD's masked loads and stores are slow: only at the end
        _mm512_storeu_ps(o, _mm512_fmadd_ps(D::value(acc[r][b], q, lane), scale, _mm512_loadu_ps(add + lane)));
      } else {
        const __mmask16 k = static_cast<__mmask16>((1u << left) - 1);
        _mm512_mask_storeu_ps(o, k, _mm512_fmadd_ps(D::value(acc[r][b], q, lane), scale, _mm512_maskz_loadu_ps(k, add + lane)));
      }
    }
  }
}

// Query groups of four blocks (64 KiB of bf16 or int16 queries at d = 512,
// read from L2 while the rows' groups pass), the last group smaller; int8's
// three words take the scan's groups.
template <ScreenFormat F, int S>
void products(const ScreenQueries& q, const ScreenRows& rows, int64_t r0, int64_t n, float* out, int64_t ldo,
              const float* add) {
  auto group = [&](auto qb, int64_t b0) {
    constexpr int QB = decltype(qb)::value;
    for_row_groups<kernel_rows<F, QB>()>(n, [&](auto r, int64_t i) {
      product_kernel<F, decltype(r)::value, QB, S>(q, b0, rows, r0 + i, out + i * ldo + b0 * kLanes, ldo, add);
    });
  };
  if constexpr (Dot<F>::kWords == 3) {
    for_query_groups<3>(q.blocks, group);
  } else {
    int64_t b0 = 0;
    for (; b0 + 4 <= q.blocks; b0 += 4) group(std::integral_constant<int, 4>{}, b0);
    switch (q.blocks - b0) {
      case 3: group(std::integral_constant<int, 3>{}, b0); break;
      case 2: group(std::integral_constant<int, 2>{}, b0); break;
      case 1: group(std::integral_constant<int, 1>{}, b0); break;
    }
  }
}

// Per query lane: q·μ plus the bound's terms at the tile's largest row
// terms, so base + each row's own terms never exceed it; widened by far more
// than the fp32 roundings in which either is summed (the terms are ≥ 0).
void tile_bound(const ScreenQueries& q, const RowTerms& rt, int64_t rows, std::vector<float>& out) {
  float err = 0, norm = 0, vnorm = 0;
  for (int64_t r = 0; r < rows; ++r) err = std::max(err, rt.err[r]), norm = std::max(norm, rt.norm[r]), vnorm = std::max(vnorm, rt.vnorm[r]);
  out.assign(static_cast<size_t>(q.blocks * kLanes), 0.0f);
  for (int64_t i = 0; i < q.nq; ++i) {
    const double terms = double(err) * q.norm[i] + double(norm) * q.slack[i] + double(vnorm) * q.rescore[i];
    // |â·b̂| ≤ (‖a‖ + ‖a − â‖)·‖b̂‖ bounds the other addend of the multiply-add.
    const double size = std::fabs(q.base[i]) + terms + (double(q.norm[i]) + q.slack[i]) * norm;
    out[i] = static_cast<float>(q.base[i] + terms + size * 0x1p-18);
  }
}

// The tile's extremes of its rows' scale·inv and inv, for least_live_sums.
void tile_extremes(const RowTerms& rt, const ScreenTile& t, ScreenScratch& s) {
  s.f_lo = s.inv_lo = INFINITY;
  s.f_hi = s.inv_hi = -INFINITY;
  for (int64_t r = 0; r < t.rows; ++r) {
    const float inv = t.inv ? t.inv[r] : 1.0f, f = rt.scale[r] * inv;
    s.f_lo = std::min(s.f_lo, f), s.f_hi = std::max(s.f_hi, f);
    s.inv_lo = std::min(s.inv_lo, inv), s.inv_hi = std::max(s.inv_hi, inv);
  }
}

}  // namespace

bool screening_available(ScreenFormat f) {
  static const bool bw = __builtin_cpu_supports("avx512bw");
  static const bool bf16 = bw && __builtin_cpu_supports("avx512bf16");
  static const bool vnni = bw && __builtin_cpu_supports("avx512vnni");
  return f == ScreenFormat::Bf16 ? bf16 : vnni;
}

bool screen_fits(ScreenFormat f, int64_t d) { return f != ScreenFormat::Int8 || d <= kInt8MaxDim; }

const char* screen_format_name(ScreenFormat f) {
  return f == ScreenFormat::Bf16 ? "bf16" : f == ScreenFormat::Int8 ? "int8" : "int16";
}

ScreenFrame fit_screen_frame(const MatrixView& rows) {
  // Two passes over the sample row by row: fresh memory costs page faults,
  // which are slow under virtualisation.
  const int64_t d = rows.cols, stride = std::max<int64_t>(1, rows.rows / 1024);
  std::vector<float> x(d);
  auto each_sample = [&](auto&& fn) {
    for (int64_t i = 0; i < rows.rows; i += stride) {
      rows_to_f32(rows, i, 1, x.data());
      if (std::all_of(x.begin(), x.end(), [](float v) { return std::isfinite(v); })) fn();  // the scan reports the rest
    }
  };
  std::vector<double> sum(d, 0.0), sq(d, 0.0);
  int64_t n = 0;
  each_sample([&] {
    for (int64_t j = 0; j < d; ++j) sum[j] += x[j], sq[j] += double(x[j]) * x[j];
    ++n;
  });
  if (n == 0) return {};
  ScreenFrame f{std::vector<float>(d), std::vector<float>(d)};
  std::vector<double> spread(d);
  double mean_var = 0;
  for (int64_t j = 0; j < d; ++j) {
    f.mu[j] = static_cast<float>(sum[j] / n);
    spread[j] = std::sqrt(std::max(0.0, sq[j] / n - double(f.mu[j]) * f.mu[j]));
    mean_var += spread[j] * spread[j] / d;
  }
  if (!(mean_var > 0) || !std::isfinite(mean_var)) return {};
  // c_j ≈ spread_j / rms spread, as a power of two in [2⁻⁸, 2⁸].
  for (int64_t j = 0; j < d; ++j) {
    const double e = spread[j] > 0 ? std::round(std::log2(spread[j] / std::sqrt(mean_var))) : -8.0;
    f.inv_c[j] = std::ldexp(1.0f, -static_cast<int>(std::clamp(e, -8.0, 8.0)));
  }
  // The frame costs a subtraction and a product per value: keep it only where
  // it shrinks the rounding step (max|y| against max|x|) by a quarter.
  double raw = 0, mapped = 0;
  each_sample([&] {
    float mx = 0, my = 0;
    for (int64_t j = 0; j < d; ++j) {
      mx = std::max(mx, std::fabs(x[j]));
      my = std::max(my, std::fabs((x[j] - f.mu[j]) * f.inv_c[j]));
    }
    raw += mx;
    mapped += my;
  });
  return mapped < 0.75 * raw ? f : ScreenFrame{};
}

void shape_screen_queries(ScreenFormat f, ScreenFrame frame, int64_t nq, int64_t d, ScreenQueries& out) {
  out.format = f;
  out.nq = nq;
  out.d = d;
  out.steps = screen_steps(f, d);
  out.blocks = (nq + kLanes - 1) / kLanes;
  out.frame = std::move(frame);
  out.f32.clear();
  const size_t lanes = static_cast<size_t>(out.blocks * kLanes);
  for (auto* v : {&out.scale, &out.base, &out.norm, &out.slack, &out.rescore}) v->assign(lanes, 0.0f);
  out.offset.assign(lanes, 0);
  // pack_screen_block writes every lane of its queries: only the last
  // block's padding lanes need zeros (a step's worth each), not the whole copy.
  out.packed.resize(lanes * out.steps);
  for (int64_t i = nq; i < out.blocks * kLanes; ++i)
    for (int64_t p = 0; p < out.steps; ++p) out.packed[((out.blocks - 1) * out.steps + p) * kLanes + i % kLanes] = 0;
}

int64_t pack_screen_block(const float* q, int64_t b, ScreenQueries& out) {
  const int64_t d = out.d;
  // a = q∘c: the queries take the frame's scale inverted and no shift.
  const bool framed = !out.frame.identity();
  std::vector<float> c(d), zero(d, 0.0f);
  for (int64_t j = 0; j < d && framed; ++j) c[j] = 1.0f / out.frame.inv_c[j];
  double mu_norm = 0;
  for (float m : out.frame.mu) mu_norm += double(m) * m;
  mu_norm = std::sqrt(mu_norm);
  const Map map{zero.data(), c.data()};
  std::vector<uint32_t> row(static_cast<size_t>(out.steps));
  const double t = accumulation_slack(d);
  for (int64_t i = b * kLanes; i < std::min(out.nq, (b + 1) * kLanes); ++i) {
    std::fill(row.begin(), row.end(), 0u);  // padding values must be zero
    const float* qi = q + i * d;
    const Rounded r = rounder(out.format, framed)(qi, map, d, row.data(), false);
    if (!std::isfinite(r.x) || !std::isfinite(r.y) || !std::isfinite(r.err)) return i;
    for (int64_t p = 0; p < out.steps; ++p) out.packed[(b * out.steps + p) * kLanes + i % kLanes] = row[p];
    double qmu = 0;
    for (int64_t j = 0; j < d && framed; ++j) qmu += double(qi[j]) * out.frame.mu[j];
    out.scale[i] = r.scale;
    // The kernel's int32 sums wrap; only the difference need fit (screen_fits).
    out.offset[i] = screen_offset(out.format, row.data(), out.steps, false);
    out.base[i] = static_cast<float>(qmu + (t * r.x * mu_norm + std::fabs(qmu) * 1e-6));
    out.norm[i] = up(r.y);
    out.slack[i] = up(r.err + screen_slack(out.format, d) * (r.y + r.err));
    out.rescore[i] = up(t * r.x);
  }
  return -1;
}

ScreenQueries pack_screen_queries(ScreenFormat f, ScreenFrame frame, const float* q, int64_t nq, int64_t d) {
  ScreenQueries out;
  shape_screen_queries(f, std::move(frame), nq, d, out);
  out.f32.assign(q, q + nq * d);
  for (int64_t b = 0; b < out.blocks; ++b) {
    const int64_t bad = pack_screen_block(q, b, out);
    require(bad < 0, "queries: row " + std::to_string(bad) + " is too large, its squared norm overflows fp32");
  }
  return out;
}

void ScreenRows::resize(int64_t n, int64_t steps_per_row) {
  steps = steps_per_row;
  packed.assign(static_cast<size_t>(n * steps), 0u);
  for (auto* v : {&scale, &err, &norm, &vnorm}) v->resize(static_cast<size_t>(n));
  offset.resize(static_cast<size_t>(n));
}

int64_t screen_steps(ScreenFormat f, int64_t d) { return f == ScreenFormat::Int8 ? 3 * ((d + 11) / 12) : (d + 1) / 2; }

namespace {

// Σ B·(A + 64) over the pairs, plus a query's 64·Σ P, four groups (12
// words) at a time: A and B are aligned by shifting the words down one lane.
CL_SCREEN int32_t int8_offset(const uint32_t* words, int64_t steps, bool row) {
  __m512i sum = _mm512_setzero_si512();
  for (int64_t p = 0; p < steps; p += 12) {
    const __mmask16 k = static_cast<__mmask16>((1u << std::min<int64_t>(steps - p, 12)) - 1);
    const __m512i w = _mm512_maskz_loadu_epi32(k, words + p), b = _mm512_alignr_epi32(_mm512_setzero_si512(), w, 1);
    sum = _mm512_mask_dpbusd_epi32(sum, 0x0249, _mm512_add_epi8(w, _mm512_set1_epi8(64)), b);  // the A lanes 0, 3, 6, 9
    if (!row) sum = _mm512_mask_dpbusd_epi32(sum, 0x0924, _mm512_set1_epi8(64), w);      // the P lanes 2, 5, 8, 11
  }
  return _mm512_reduce_add_epi32(sum);
}

}  // namespace

int32_t screen_offset(ScreenFormat f, const uint32_t* words, int64_t steps, bool row) {
  return f == ScreenFormat::Int8 ? int8_offset(words, steps, row) : 0;
}

void round_screen_rows(ScreenFormat f, const ScreenFrame& frame, const float* v, int64_t n, int64_t d, int64_t id0,
                       ScreenRows& out, int64_t at) {
  const RoundFn round = rounder(f, !frame.identity());
  const Map map{frame.mu.data(), frame.inv_c.data()};
  for (int64_t j = 0; j < n; ++j) {
    const Rounded r = round(v + j * d, map, d, out.packed.data() + (at + j) * out.steps, true);
    // A NaN/Inf would make every screened score unordered and silently skipped.
    if (!std::isfinite(r.x) || !std::isfinite(r.err))
      fail_non_finite_score(id0 + j);
    // The subtraction in y rounds: ‖b − y‖ ≤ 2⁻²⁴‖y‖ joins the measured error.
    const double err = r.err + r.y * 0x1p-23;
    out.offset[at + j] = screen_offset(f, out.packed.data() + (at + j) * out.steps, out.steps, true);
    out.scale[at + j] = r.scale;
    out.err[at + j] = up(err);
    out.norm[at + j] = up(r.y + err);
    out.vnorm[at + j] = up(r.x);
  }
}

void scan_screened(const ScreenQueries& q, const ScreenRows& rounded, int64_t r0, const ScreenTile& t, HeapSet& heaps,
                   ScreenScratch& s, ScreenFloor* floor, int64_t next_end) {
  const char* packed = reinterpret_cast<const char*>(rounded.packed.data());
  s.next = packed + (r0 + t.rows) * rounded.steps * 4;
  s.next_end = packed + std::max(r0 + t.rows, std::min(next_end, rounded.rows())) * rounded.steps * 4;
  const RowTerms rt{rounded.packed.data() + r0 * rounded.steps, rounded.offset.data() + r0, rounded.scale.data() + r0,
                    rounded.err.data() + r0, rounded.norm.data() + r0, rounded.vnorm.data() + r0};
  s.thr.assign(static_cast<size_t>(q.blocks * kLanes), INFINITY);  // padding lanes never pass
  for (int64_t i = 0; i < q.nq; ++i)
    s.thr[i] = lowered(std::max(heaps.at(i).threshold(), floor ? floor->at(i) : -INFINITY));
  tile_bound(q, rt, t.rows, s.tile_bound);
  tile_extremes(rt, t, s);
  s.live.resize(static_cast<size_t>(q.blocks * kLanes));
  for (int64_t i = 0; i < q.blocks * kLanes; i += 8) least_live_sums(q, s, i);
  by_format(q, [&](auto f, auto steps) {
    // Top-k screens in int8 or bf16 (screen_format); no int16 scan is compiled.
    if constexpr (decltype(f)::value == ScreenFormat::Int16) fail("scan_screened: int16 queries are not scanned");
    else scan<decltype(f)::value, decltype(steps)::value>(q, rt, t, heaps, s, floor);
  });
}

ScreenFloor::ScreenFloor(int64_t nq, int k)
    : best_(nq, k), locks_(new std::mutex[static_cast<size_t>(nq)]), value_(new std::atomic<float>[static_cast<size_t>(nq)]) {
  for (int64_t q = 0; q < nq; ++q) reset(q, -INFINITY);
}

void ScreenFloor::reset(int64_t q, float known) {
  best_.at(q).clear();
  value_[q].store(known, std::memory_order_relaxed);
}

void ScreenFloor::offer(int64_t q, float score, int64_t id) {
  if (score < at(q)) return;  // k rows already reach past it
  std::lock_guard<std::mutex> hold(locks_[q]);
  HeapView best = best_.at(q);
  best.push({score, id});
  if (best.threshold() > at(q)) value_[q].store(best.threshold(), std::memory_order_relaxed);
}

void screen_products(const ScreenQueries& q, const ScreenRows& rows, int64_t r0, int64_t n, float* out, int64_t ldo,
                     const float* add) {
  by_format(q, [&](auto f, auto steps) {
    products<decltype(f)::value, decltype(steps)::value>(q, rows, r0, n, out, ldo, add);
  });
}

void scan_tile_screened(const ScreenQueries& q, const ScreenTile& t, HeapSet& heaps, ScreenScratch& s,
                        ScreenFloor* floor) {
  // Sized once per worker; the rounding never writes the (zeroed) padding.
  if (s.tile.steps != q.steps || s.tile.rows() < t.rows) s.tile.resize(std::max<int64_t>(t.rows, s.tile.rows()), q.steps);
  round_screen_rows(q.format, q.frame, static_cast<const float*>(t.v), t.rows, q.d, t.id0, s.tile, 0);
  scan_screened(q, s.tile, 0, t, heaps, s, floor);
}

}  // namespace cl
