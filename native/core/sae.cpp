#include "sae.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <immintrin.h>
#include <limits>
#include <sstream>

#include "blas.h"
#include "cpu.h"
#include "error.h"
#include "row_select.h"
#include "threads.h"
#include "topk_screen.h"

namespace cl {

namespace {

// Items per task in per-item passes; codes are collected per block of items.
constexpr int64_t kRowBlock = 64;
// Items per encoder GEMM task (a multiple of kRowBlock): large enough that
// repacking W_e per task costs little, small enough to balance two workers.
constexpr int64_t kGemmRows = 1024;
// Latents per task in the per-latent pass.
constexpr int64_t kLatentBlock = 64;
// Codes at least this dense (ReLU-L1 once trained) are walked in tiles of
// kTile items × kTile latents, so each gathered row serves several codes
// from L2; sparser ones (TopK) in one sweep.
constexpr int64_t kTile = 64;
constexpr double kTiledDensity = 1.0 / 32;
// The per-latent pass visits the codes of this many items at a time, all
// latents in parallel, so their rows of ∂loss/∂x̂ and x̄ (8 MiB at d = 512)
// stay in the last-level cache while the latents stream past.
constexpr int64_t kItemSpan = 2048;
// Items per task of the screened encoder: their fp32 rows (512 KiB at
// d = 512) stay in L2 while the re-scoring walks the latents.
constexpr int64_t kScreenRows = 256;
static_assert(kScreenRows % kRowBlock == 0, "a row block's items are in one task's lists");
// Items estimated at a time: their estimates (m floats each: 384 KiB at
// m = 4,096) stay in L2 until their candidates are picked, and never reach
// memory.
constexpr int64_t kEstRows = 24;
// The screened encoder's format: int16 multiplies at bf16's rate with a 10×
// tighter bound at d = 512, so fewer latents need their fp32 value.
constexpr ScreenFormat kEncoderFormat = ScreenFormat::Int16;
// Fewer items take the fp32 GEMM: rounding all of W_e costs more than the
// screen saves (encode of 64 items at m = 4,096, d = 512: 2.3 ms screened,
// 2.1 ms by GEMM; 128 items: 3.0 against 3.5 ms).
constexpr int64_t kScreenMinItems = 128;

// Codes per register-blocked group in the sparse kernels.
constexpr int kGroup = 8;

int64_t blocks(int64_t n, int64_t b) { return (n + b - 1) / b; }

// fn(i0, i1, blk) over the blocks of kRowBlock items of [0, n), in parallel.
template <class F>
void row_blocks(int64_t n, F&& fn) {
  parallel_for(blocks(n, kRowBlock), [&](int64_t blk, int) { fn(blk * kRowBlock, std::min(n, (blk + 1) * kRowBlock), blk); });
}

}  // namespace

// A batch's active codes by item (CSR, latents ascending) and by latent (CSC,
// items ascending): per-item and per-latent passes run in parallel without
// atomics, each output summed in one fixed order.
struct SaeCodes {
  std::vector<int64_t> ptr;    // n + 1
  std::vector<int32_t> col;    // latent of each entry
  std::vector<float> val;      // activation
  std::vector<int64_t> cptr;   // m + 1
  std::vector<int32_t> citem;  // item of each by-latent entry
  std::vector<float> cval;
  // The selection appends each item's entries to its row block's lists.
  std::vector<std::vector<int32_t>> bcol;
  std::vector<std::vector<float>> bval;
  std::vector<int64_t> count;   // entries per item
  std::vector<int64_t> at;      // row blocks × m: latent counts, then write cursors
  std::vector<int64_t> cursor;  // per latent: its first entry the per-latent pass has not visited

  void start(int64_t n) {
    bcol.resize(blocks(n, kRowBlock));
    bval.resize(bcol.size());
    for (size_t b = 0; b < bcol.size(); ++b) {
      bcol[b].clear();
      bval[b].clear();
    }
    count.assign(n, 0);
    ptr.assign(1, 0);
  }
  int64_t nnz() const { return ptr.empty() ? 0 : ptr.back(); }
};

// The TopK encoder's screening state, kept between steps for its capacity:
// W_e rounded to int16 (16 latents to a register block); per worker, a task's
// centred inputs rounded; per task, each item's candidate latents (those
// that could be among its codes) with their fp32 pre-activations.
struct EncoderScreen {
  struct Lists {
    std::vector<int64_t> ptr;  // items of the task + 1
    std::vector<int32_t> col;  // latents, ascending per item
    std::vector<float> val;    // b_e + W_e x̄, fp32
    std::vector<int32_t> item, order, count;  // re-scoring by latent
  };
  struct Candidates {
    const int32_t* col;
    const float* val;
    int64_t n;
  };
  struct Worker {
    ScreenRows rows;         // the task's centred inputs rounded
    std::vector<float> est;  // estimated pre-activations of a few items
  };
  ScreenQueries we;
  std::vector<Worker> workers;
  std::vector<Lists> lists;
  bool on = false;  // the batch's codes come from the lists

  Candidates of(int64_t i) const {
    const Lists& L = lists[i / kScreenRows];
    const int64_t r = i % kScreenRows, e = L.ptr[r];
    return {L.col.data() + e, L.val.data() + e, L.ptr[r + 1] - e};
  }
};

// Per-batch scratch, kept between steps for its capacity.
struct SaeWork {
  const float* x = nullptr;    // n × d inputs: the caller's fp32 rows, or f16 converted into x16
  std::vector<float> x16, xc;  // n × d: fp16 inputs as fp32, x − b
  std::vector<float> pre;      // n × m: pre-activations (thresholded in place on the dense path)
  std::vector<float> gbuf;     // n × m: ∂loss/∂pre (dense path)
  std::vector<float> r, h;     // n × d: ∂loss/∂x̂, ∂aux/∂ê
  SaeCodes main, aux;
  EncoderScreen screen;
  std::vector<int32_t> dead;   // latents in the aux loss this step
  std::vector<double> l1, sq, asq;
  std::vector<int64_t> active;  // per item
  std::vector<int64_t> fired;   // per latent (dense path)
  std::vector<double> colsum;   // row blocks × d: Σ x (for fvu)
  std::vector<double> block_mean;  // row blocks × d: each block's mean (for fvu)
  std::vector<double> dev;      // per row block: Σ ‖x − the block's mean‖²
  // Partial sums of ∂loss/∂b per row block (Σ g) and per latent block
  // (−Σ ∂b_e W_e), added in one order whatever thread ran which block.
  std::vector<float> gb_items, gb_latents;
  std::vector<double> item_loss;
};

// Adam's constants for step t.
struct Sae::AdamStep {
  float b1, b2, step, inv_sqrt_bc2, eps;
};

namespace {

constexpr char kMagic[8] = {'C', 'L', 'S', 'A', 'E', '0', '0', '2'};
constexpr char kMagicV1[8] = {'C', 'L', 'S', 'A', 'E', '0', '0', '1'};

// Kernels on d-long rows: AVX-512 when the CPU has it (the build targets
// baseline x86-64), else scalar.
const bool kAvx512 = cpu_avx512f();

__attribute__((target("avx512f"))) float dot_avx512(const float* a, const float* b, int64_t d) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 32 <= d; c += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + c), _mm512_loadu_ps(b + c), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + c + 16), _mm512_loadu_ps(b + c + 16), s1);
  }
  float s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
  for (; c < d; ++c) s += a[c] * b[c];
  return s;
}

__attribute__((target("avx512f"))) void axpy_avx512(float a, const float* x, float* y, int64_t d) {
  const __m512 va = _mm512_set1_ps(a);
  int64_t c = 0;
  for (; c + 16 <= d; c += 16) _mm512_storeu_ps(y + c, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + c), _mm512_loadu_ps(y + c)));
  for (; c < d; ++c) y[c] += a * x[c];
}

float dot(const float* a, const float* b, int64_t d) {
  if (kAvx512) return dot_avx512(a, b, d);
  float s = 0;
  for (int64_t c = 0; c < d; ++c) s += a[c] * b[c];
  return s;
}

void axpy(float a, const float* x, float* y, int64_t d) {
  if (kAvx512) return axpy_avx512(a, x, y, d);
  for (int64_t c = 0; c < d; ++c) y[c] += a * x[c];
}

// y += Σ_e v[e]·rows[e] over Q rows: per element the same fused multiply-adds
// in the same order as Q axpy calls, with y held in registers meanwhile. Eight
// vectors at a time, so eight chains of dependent multiply-adds overlap.
template <int Q>
__attribute__((target("avx512f"))) void axpy_rows_avx512(const float* v, const float* const* rows, float* y, int64_t d) {
  const float* r[Q];
  __m512 vv[Q];
  for (int e = 0; e < Q; ++e) {
    r[e] = rows[e];
    vv[e] = _mm512_set1_ps(v[e]);
  }
  int64_t c = 0;
  for (; c + 128 <= d; c += 128) {
    __m512 acc[8];
    for (int u = 0; u < 8; ++u) acc[u] = _mm512_loadu_ps(y + c + 16 * u);
    for (int e = 0; e < Q; ++e)
      for (int u = 0; u < 8; ++u) acc[u] = _mm512_fmadd_ps(vv[e], _mm512_loadu_ps(r[e] + c + 16 * u), acc[u]);
    for (int u = 0; u < 8; ++u) _mm512_storeu_ps(y + c + 16 * u, acc[u]);
  }
  for (; c + 16 <= d; c += 16) {
    __m512 acc = _mm512_loadu_ps(y + c);
    for (int e = 0; e < Q; ++e) acc = _mm512_fmadd_ps(vv[e], _mm512_loadu_ps(r[e] + c), acc);
    _mm512_storeu_ps(y + c, acc);
  }
  for (; c < d; ++c)
    for (int e = 0; e < Q; ++e) y[c] += v[e] * r[e][c];
}

// out[e] = a·rows[e] for Q rows, each summed as dot() sums (even 16-blocks
// in one lane vector, odd in another): a's values loaded once for the Q rows,
// and 2Q independent chains of multiply-adds.
template <int Q>
__attribute__((target("avx512f"))) void dot_rows_avx512(const float* a, const float* const* rows, float* out, int64_t d) {
  const float* r[Q];
  __m512 s0[Q], s1[Q];
  for (int e = 0; e < Q; ++e) {
    r[e] = rows[e];
    s0[e] = s1[e] = _mm512_setzero_ps();
  }
  int64_t c = 0;
  for (; c + 32 <= d; c += 32) {
    const __m512 a0 = _mm512_loadu_ps(a + c), a1 = _mm512_loadu_ps(a + c + 16);
    for (int e = 0; e < Q; ++e) {
      s0[e] = _mm512_fmadd_ps(a0, _mm512_loadu_ps(r[e] + c), s0[e]);
      s1[e] = _mm512_fmadd_ps(a1, _mm512_loadu_ps(r[e] + c + 16), s1[e]);
    }
  }
  for (int e = 0; e < Q; ++e) {
    out[e] = _mm512_reduce_add_ps(_mm512_add_ps(s0[e], s1[e]));
    for (int64_t t = c; t < d; ++t) out[e] += a[t] * r[e][t];
  }
}

// One latent's gradient terms from Q codes (∂loss/∂x̂ rows g[e], inputs
// xc[e], values v[e]) with atom a: ge[e] = g[e]·a + lam (summed as dot()
// sums: even 16-blocks in one lane vector, odd in another), gD += v[e]·g[e],
// then gWe += ge[e]·xc[e]; the same sums in the same order as dot, axpy,
// axpy per code, each pass over d loading gD or gWe once.
template <int Q>
__attribute__((target("avx512f"))) void latent_rows_avx512(const float* const* g, const float* const* xc, const float* v,
                                                           const float* a, float lam, int64_t d, float* gD, float* gWe,
                                                           float* ge) {
  const float* gr[Q];
  __m512 s0[Q], s1[Q], vv[Q];
  for (int e = 0; e < Q; ++e) {
    gr[e] = g[e];
    vv[e] = _mm512_set1_ps(v[e]);
    s0[e] = s1[e] = _mm512_setzero_ps();
  }
  int64_t c = 0;
  for (; c + 64 <= d; c += 64) {
    __m512 av[4], y[4];
    for (int u = 0; u < 4; ++u) {
      av[u] = _mm512_loadu_ps(a + c + 16 * u);
      y[u] = _mm512_loadu_ps(gD + c + 16 * u);
    }
    for (int e = 0; e < Q; ++e)
      for (int u = 0; u < 4; ++u) {
        const __m512 gv = _mm512_loadu_ps(gr[e] + c + 16 * u);
        if (u % 2 == 0)
          s0[e] = _mm512_fmadd_ps(gv, av[u], s0[e]);
        else
          s1[e] = _mm512_fmadd_ps(gv, av[u], s1[e]);
        y[u] = _mm512_fmadd_ps(vv[e], gv, y[u]);
      }
    for (int u = 0; u < 4; ++u) _mm512_storeu_ps(gD + c + 16 * u, y[u]);
  }
  for (; c + 32 <= d; c += 32)
    for (int e = 0; e < Q; ++e) {
      const __m512 g0 = _mm512_loadu_ps(gr[e] + c), g1 = _mm512_loadu_ps(gr[e] + c + 16);
      s0[e] = _mm512_fmadd_ps(g0, _mm512_loadu_ps(a + c), s0[e]);
      s1[e] = _mm512_fmadd_ps(g1, _mm512_loadu_ps(a + c + 16), s1[e]);
      _mm512_storeu_ps(gD + c, _mm512_fmadd_ps(vv[e], g0, _mm512_loadu_ps(gD + c)));
      _mm512_storeu_ps(gD + c + 16, _mm512_fmadd_ps(vv[e], g1, _mm512_loadu_ps(gD + c + 16)));
    }
  for (int e = 0; e < Q; ++e) ge[e] = _mm512_reduce_add_ps(_mm512_add_ps(s0[e], s1[e]));
  for (; c < d; ++c)
    for (int e = 0; e < Q; ++e) {
      ge[e] += gr[e][c] * a[c];
      gD[c] += v[e] * gr[e][c];
    }
  for (int e = 0; e < Q; ++e) ge[e] += lam;
  axpy_rows_avx512<Q>(ge, xc, gWe, d);
}

// Runs F<Q> for the group size q in [1, kGroup] (templates unroll the codes).
template <template <int> class F, class... A>
void by_group(int q, A&&... args) {
  switch (q) {
    case 1: return F<1>::run(args...);
    case 2: return F<2>::run(args...);
    case 3: return F<3>::run(args...);
    case 4: return F<4>::run(args...);
    case 5: return F<5>::run(args...);
    case 6: return F<6>::run(args...);
    case 7: return F<7>::run(args...);
    default: return F<8>::run(args...);
  }
}
static_assert(kGroup == 8, "by_group covers group sizes 1..8");

template <int Q>
struct DotRows {
  static void run(const float* a, const float* const* rows, float* out, int64_t d) { dot_rows_avx512<Q>(a, rows, out, d); }
};
template <int Q>
struct AxpyRows {
  static void run(const float* v, const float* const* rows, float* y, int64_t d) { axpy_rows_avx512<Q>(v, rows, y, d); }
};
template <int Q>
struct LatentRows {
  static void run(const float* const* g, const float* const* xc, const float* v, const float* a, float lam, int64_t d,
                  float* gD, float* gWe, float* ge) {
    latent_rows_avx512<Q>(g, xc, v, a, lam, d, gD, gWe, ge);
  }
};

void axpy_rows(int q, const float* v, const float* const* rows, float* y, int64_t d) {
  if (kAvx512) return by_group<AxpyRows>(q, v, rows, y, d);
  for (int e = 0; e < q; ++e) axpy(v[e], rows[e], y, d);
}

// out[e] = dot(a, rows[e]) for q <= kGroup rows.
void dot_rows(int q, const float* a, const float* const* rows, float* out, int64_t d) {
  if (kAvx512) return by_group<DotRows>(q, a, rows, out, d);
  for (int e = 0; e < q; ++e) out[e] = dot(a, rows[e], d);
}

void latent_rows(int q, const float* const* g, const float* const* xc, const float* v, const float* a, float lam,
                 int64_t d, float* gD, float* gWe, float* ge) {
  if (kAvx512) return by_group<LatentRows>(q, g, xc, v, a, lam, d, gD, gWe, ge);
  for (int e = 0; e < q; ++e) {
    ge[e] = dot(g[e], a, d) + lam;
    axpy(v[e], g[e], gD, d);
  }
  for (int e = 0; e < q; ++e) axpy(ge[e], xc[e], gWe, d);
}

// Adam on n parameters p with moments m1, m2 and gradient g.
template <class A>
void adam_scalar(float* p, float* m1, float* m2, const float* g, int64_t n, const A& a) {
  for (int64_t q = 0; q < n; ++q) {
    m1[q] = a.b1 * m1[q] + (1 - a.b1) * g[q];
    m2[q] = a.b2 * m2[q] + (1 - a.b2) * g[q] * g[q];
    p[q] -= a.step * m1[q] / (std::sqrt(m2[q]) * a.inv_sqrt_bc2 + a.eps);
  }
}

template <class A>
__attribute__((target("avx512f"))) void adam_avx512(float* p, float* m1, float* m2, const float* g, int64_t n, const A& a) {
  const __m512 b1 = _mm512_set1_ps(a.b1), c1 = _mm512_set1_ps(1 - a.b1), b2 = _mm512_set1_ps(a.b2),
               c2 = _mm512_set1_ps(1 - a.b2), step = _mm512_set1_ps(a.step), ib = _mm512_set1_ps(a.inv_sqrt_bc2),
               eps = _mm512_set1_ps(a.eps);
  int64_t q = 0;
  for (; q + 16 <= n; q += 16) {
    const __m512 gq = _mm512_loadu_ps(g + q);
    const __m512 u = _mm512_add_ps(_mm512_mul_ps(b1, _mm512_loadu_ps(m1 + q)), _mm512_mul_ps(c1, gq));
    const __m512 v = _mm512_add_ps(_mm512_mul_ps(b2, _mm512_loadu_ps(m2 + q)), _mm512_mul_ps(_mm512_mul_ps(c2, gq), gq));
    const __m512 den = _mm512_add_ps(_mm512_mul_ps(_mm512_sqrt_ps(v), ib), eps);
    _mm512_storeu_ps(m1 + q, u);
    _mm512_storeu_ps(m2 + q, v);
    _mm512_storeu_ps(p + q, _mm512_sub_ps(_mm512_loadu_ps(p + q), _mm512_div_ps(_mm512_mul_ps(step, u), den)));
  }
  adam_scalar(p + q, m1 + q, m2 + q, g + q, n - q, a);
}

template <class A>
void adam(float* p, float* m1, float* m2, const float* g, int64_t n, const A& a) {
  if (kAvx512) return adam_avx512(p, m1, m2, g, n, a);
  adam_scalar(p, m1, m2, g, n, a);
}

// One item's residual terms over dims [c0, d): r ← r − x (x̂ − x, its
// square summed into *sq), cs += x; with the aux reconstruction h (ê, or
// null): its residual −r − h squared into *asq and h ← hscale·(r + h), the
// aux gradient; then r ← gscale·r, the main gradient, and gb += r.
struct ResidualRow {
  float* r;
  const float* x;
  float* h;
  double* cs;
  float* gb;
  float gscale, hscale;
};

void residual_scalar(const ResidualRow& a, int64_t c0, int64_t d, double* sq, double* asq) {
  for (int64_t c = c0; c < d; ++c) {
    const float r = a.r[c] - a.x[c];
    *sq += double(r) * r;
    a.cs[c] += a.x[c];
    if (a.h) {
      const float diff = -r - a.h[c];
      *asq += double(diff) * diff;
      a.h[c] = -a.hscale * diff;
    }
    a.r[c] = r * a.gscale;
    a.gb[c] += a.r[c];
  }
}

// Lanes 0..7 and 8..15 of 16 floats, widened to double.
__attribute__((target("avx512f"))) __m512d low_pd(__m512 v) { return _mm512_cvtps_pd(_mm512_castps512_ps256(v)); }
__attribute__((target("avx512f"))) __m512d high_pd(__m512 v) {
  return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

// Σ v² of 16 floats into two double accumulators.
__attribute__((target("avx512f"))) void add_squares(__m512 v, __m512d& s0, __m512d& s1) {
  const __m512d lo = low_pd(v), hi = high_pd(v);
  s0 = _mm512_fmadd_pd(lo, lo, s0);
  s1 = _mm512_fmadd_pd(hi, hi, s1);
}

// cs[0..16) += v, in double.
__attribute__((target("avx512f"))) void add_widened(__m512 v, double* cs) {
  _mm512_storeu_pd(cs, _mm512_add_pd(_mm512_loadu_pd(cs), low_pd(v)));
  _mm512_storeu_pd(cs + 8, _mm512_add_pd(_mm512_loadu_pd(cs + 8), high_pd(v)));
}

__attribute__((target("avx512f"))) void residual_avx512(const ResidualRow& a, int64_t d, double* sq, double* asq) {
  const __m512 gs = _mm512_set1_ps(a.gscale), hs = _mm512_set1_ps(-a.hscale);
  __m512d s0 = _mm512_setzero_pd(), s1 = s0, t0 = s0, t1 = s0;
  int64_t c = 0;
  for (; c + 16 <= d; c += 16) {
    const __m512 x = _mm512_loadu_ps(a.x + c), r = _mm512_sub_ps(_mm512_loadu_ps(a.r + c), x);
    add_squares(r, s0, s1);
    add_widened(x, a.cs + c);
    if (a.h) {
      const __m512 diff = _mm512_sub_ps(_mm512_sub_ps(_mm512_setzero_ps(), r), _mm512_loadu_ps(a.h + c));
      add_squares(diff, t0, t1);
      _mm512_storeu_ps(a.h + c, _mm512_mul_ps(hs, diff));
    }
    const __m512 g = _mm512_mul_ps(r, gs);
    _mm512_storeu_ps(a.r + c, g);
    _mm512_storeu_ps(a.gb + c, _mm512_add_ps(_mm512_loadu_ps(a.gb + c), g));
  }
  *sq += _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
  *asq += _mm512_reduce_add_pd(_mm512_add_pd(t0, t1));
  residual_scalar(a, c, d, sq, asq);
}

void residual_row(const ResidualRow& a, int64_t d, double* sq, double* asq) {
  if (kAvx512) return residual_avx512(a, d, sq, asq);
  residual_scalar(a, 0, d, sq, asq);
}

// t + Σ (x − mean)² over dims [c0, d) (mean in double).
double spread_scalar(const float* x, const double* mean, int64_t c0, int64_t d, double t) {
  for (int64_t c = c0; c < d; ++c) t += (x[c] - mean[c]) * (x[c] - mean[c]);
  return t;
}

__attribute__((target("avx512f"))) double spread_avx512(const float* x, const double* mean, int64_t d) {
  __m512d s = _mm512_setzero_pd();
  int64_t c = 0;
  for (; c + 8 <= d; c += 8) {
    const __m512d e = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + c)), _mm512_loadu_pd(mean + c));
    s = _mm512_fmadd_pd(e, e, s);
  }
  return spread_scalar(x, mean, c, d, _mm512_reduce_add_pd(s));
}

// Σ (x − mean)² over d dims.
double spread(const float* x, const double* mean, int64_t d) {
  return kAvx512 ? spread_avx512(x, mean, d) : spread_scalar(x, mean, 0, d, 0.0);
}

// g ← (f > 0) ? g + lam : 0: the gradient through the activation, dense path.
__attribute__((target("avx512f"))) void mask_grad_avx512(const float* f, float* g, int64_t m, float lam) {
  const __m512 l = _mm512_set1_ps(lam), z = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= m; j += 16) {
    __mmask16 k = _mm512_cmp_ps_mask(_mm512_loadu_ps(f + j), z, _CMP_GT_OQ);
    _mm512_storeu_ps(g + j, _mm512_maskz_add_ps(k, _mm512_loadu_ps(g + j), l));
  }
  for (; j < m; ++j) g[j] = f[j] > 0 ? g[j] + lam : 0.0f;
}

void mask_grad(const float* f, float* g, int64_t m, float lam) {
  if (kAvx512) return mask_grad_avx512(f, g, m, lam);
  for (int64_t j = 0; j < m; ++j) g[j] = f[j] > 0 ? g[j] + lam : 0.0f;
}

void wide_sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                int64_t ldb, float beta, float* c, int64_t ldc) {
  WideBlas guard(compute_threads());
  sgemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}

// pre[i] = b_e + W_e x̄_i for n items, in tasks of kGemmRows items with
// single-threaded BLAS (no BLAS threads spinning beside the pool, and the
// result does not depend on the thread count); then each(i0, i1) on each
// row block of the task while its rows are fresh.
void encoder_gemm(const float* xc, const float* We, const float* be, int64_t n, int64_t m, int64_t d, float* pre,
                  const std::function<void(int64_t, int64_t)>& each) {
  parallel_for(blocks(n, kGemmRows), [&](int64_t t, int) {
    const int64_t i0 = t * kGemmRows, i1 = std::min(n, i0 + kGemmRows);
    for (int64_t i = i0; i < i1; ++i) std::copy(be, be + m, pre + i * m);
    sgemm(false, true, i1 - i0, m, d, 1.0f, xc + i0 * d, d, We, d, 1.0f, pre + i0 * m, m);
    if (each)
      for (int64_t b = i0; b < i1; b += kRowBlock) each(b, std::min(i1, b + kRowBlock));
  });
}

// The per-item bound of the screened encoder: |estimate − fp32 value| ≤ E
// for every latent, from the screening bound (topk_screen.h) at the largest
// of the latents' terms, plus the rounding of the bias added to each side.
struct ScreenBound {
  double norm = 0, slack = 0, rescore = 0, bias = 0;
  ScreenBound(const ScreenQueries& q, const float* be, int64_t m) {
    for (int64_t j = 0; j < m; ++j) {
      norm = std::max<double>(norm, q.norm[j]);
      slack = std::max<double>(slack, q.slack[j]);
      rescore = std::max<double>(rescore, q.rescore[j]);
      bias = std::max<double>(bias, std::fabs(be[j]));
    }
  }
  double at(const ScreenRows& rows, int64_t r) const {
    const double e = rows.err[r] * norm + rows.norm[r] * slack + rows.vnorm[r] * rescore;
    return e + (bias + norm * rows.vnorm[r] + e) * 0x1p-22;
  }
};

// Appends to L the latents of an estimated row (b_e plus the rounded products,
// each within e of its fp32 value) that could be among the item's TopK or
// aux codes: those within 2e of the k-th estimate (the k-th fp32 value is
// at least the k-th estimate − e, and an entry below it − 2e stays below
// it), and, by the same argument over the dead latents, those within 2e of
// their aux_k-th estimate that could be positive. Latents ascending.
void screen_candidates(const float* row, int64_t m, int k, int64_t aux_k, double e, const std::vector<int32_t>& dead,
                       EncoderScreen::Lists& L) {
  RowScratch& s = RowScratch::get(m);
  float cut;
  const int64_t c = window_candidates(row, m, k, 2 * e, s.cols.data(), s.vals.data(), &cut);
  const size_t base = L.col.size();
  L.col.insert(L.col.end(), s.cols.data(), s.cols.data() + c);
  if (!dead.empty() && aux_k > 0) {
    float aux_cut = static_cast<float>(-e);
    const int64_t nd = static_cast<int64_t>(dead.size());
    if (nd > aux_k) {
      for (int64_t i = 0; i < nd; ++i) s.vals[i] = row[dead[i]];
      const float aux_kth = kth_value(s.vals.data(), nd, static_cast<int>(aux_k), -INFINITY);
      aux_cut = std::max(aux_cut, lowered(aux_kth, 2 * e));
    }
    bool merged = false;
    for (int32_t j : dead)
      if (row[j] < cut && row[j] >= aux_cut) L.col.push_back(j), merged = true;
    if (merged) std::sort(L.col.begin() + base, L.col.end());  // rare: dead latents fire seldom
  }
  L.ptr.push_back(static_cast<int64_t>(L.col.size()));
}

// Each candidate's fp32 value b_e + W_e x̄ (xc: the task's centred rows),
// latent by latent: each row of W_e is read once per task and serves up to
// kGroup items at a time.
void rescore_by_latent(EncoderScreen::Lists& L, const float* xc, const float* We, const float* be, int64_t m, int64_t d) {
  const size_t nnz = L.col.size();
  L.item.resize(nnz);
  L.order.resize(nnz);
  L.val.resize(nnz);
  L.count.assign(m + 1, 0);
  for (size_t i = 0; i + 1 < L.ptr.size(); ++i)
    for (int64_t e = L.ptr[i]; e < L.ptr[i + 1]; ++e) L.item[e] = static_cast<int32_t>(i), ++L.count[L.col[e] + 1];
  for (int64_t j = 0; j < m; ++j) L.count[j + 1] += L.count[j];
  for (size_t e = 0; e < nnz; ++e) L.order[L.count[L.col[e]]++] = static_cast<int32_t>(e);
  const float* rows[kGroup];
  float out[kGroup];
  for (size_t a = 0; a < nnz;) {
    const int32_t j = L.col[L.order[a]];
    int q = 0;
    for (; q < kGroup && a + q < nnz && L.col[L.order[a + q]] == j; ++q) rows[q] = xc + int64_t(L.item[L.order[a + q]]) * d;
    dot_rows(q, We + int64_t(j) * d, rows, out, d);
    for (int e = 0; e < q; ++e) L.val[L.order[a + e]] = out[e] + be[j];
    a += q;
  }
}

// b_e + W_e x̄ for TopK codes through int16 screening: every pre-activation
// is estimated from x̄ and W_e rounded to int16, at twice the fp32 multiply
// rate, and only each item's candidates (screen_candidates) are computed in
// fp32, into s.lists, from which the codes are the fp32 encoder's. Then
// each(i0, i1) on each row block of a task. False for fewer than
// kScreenMinItems items, where the CPU lacks AVX512-VNNI, or where a row of
// W_e is not finite.
bool screened_encoder(const float* xc, const float* We, const float* be, int64_t n, int64_t m, int64_t d, int k,
                      int64_t aux_k, const std::vector<int32_t>& dead, EncoderScreen& s,
                      const std::function<void(int64_t, int64_t)>& each) {
  s.on = false;
  if (n < kScreenMinItems || !screening_available(kEncoderFormat)) return false;
  ScreenQueries& q = s.we;
  shape_screen_queries(kEncoderFormat, ScreenFrame{}, m, d, q);
  std::atomic<bool> finite{true};
  parallel_for(q.blocks, [&](int64_t b, int) {
    if (pack_screen_block(We, b, q) >= 0) finite = false;
  });
  if (!finite) return false;
  s.on = true;
  const ScreenBound bound(q, be, m);
  const int64_t tasks = blocks(n, kScreenRows);
  s.workers.resize(static_cast<size_t>(parallel_workers(tasks)));
  s.lists.resize(static_cast<size_t>(tasks));
  parallel_for(tasks, [&](int64_t t, int worker) {
    const int64_t i0 = t * kScreenRows, i1 = std::min(n, i0 + kScreenRows);
    EncoderScreen::Worker& w = s.workers[worker];
    if (w.rows.steps != q.steps || w.rows.rows() < kScreenRows) w.rows.resize(kScreenRows, q.steps);
    w.est.resize(static_cast<size_t>(kEstRows * m));
    round_screen_rows(kEncoderFormat, ScreenFrame{}, xc + i0 * d, i1 - i0, d, i0, w.rows, 0);
    EncoderScreen::Lists& L = s.lists[t];
    L.ptr.assign(1, 0);
    L.col.clear();
    for (int64_t a = i0; a < i1; a += kEstRows) {
      const int64_t b = std::min(i1, a + kEstRows);
      screen_products(q, w.rows, a - i0, b - a, w.est.data(), m, be);
      for (int64_t i = a; i < b; ++i) screen_candidates(w.est.data() + (i - a) * m, m, k, aux_k, bound.at(w.rows, i - i0), dead, L);
    }
  });
  // Re-scoring after every task's estimates: their reads of rounded W_e would
  // otherwise evict fp32 W_e from the last-level cache between tasks.
  parallel_for(tasks, [&](int64_t t, int) {
    const int64_t i0 = t * kScreenRows, i1 = std::min(n, i0 + kScreenRows);
    rescore_by_latent(s.lists[t], xc + i0 * d, We, be, m, d);
    if (each)
      for (int64_t b = i0; b < i1; b += kRowBlock) each(b, std::min(i1, b + kRowBlock));
  });
  return true;
}

// The aux codes of one item: its dead latents with positive pre-activation,
// the aux_k largest (ties to the lower latent), in latent order.
void aux_row(const float* row, const std::vector<int32_t>& dead, int64_t aux_k, std::vector<int32_t>& cols,
             std::vector<float>& vals) {
  const size_t base = cols.size();
  for (int32_t j : dead)
    if (row[j] > 0) cols.push_back(j), vals.push_back(row[j]);
  keep_largest(cols, vals, base, aux_k);
}

// aux_row over an item's screened candidates (they hold every dead latent
// that could be among its aux codes): both lists ascending, walked together.
void aux_listed(const EncoderScreen::Candidates& c, const std::vector<int32_t>& dead, int64_t aux_k,
                std::vector<int32_t>& cols, std::vector<float>& vals) {
  const size_t base = cols.size();
  auto d = dead.begin();
  for (int64_t e = 0; e < c.n; ++e) {
    while (d != dead.end() && *d < c.col[e]) ++d;
    if (d != dead.end() && *d == c.col[e] && c.val[e] > 0) cols.push_back(c.col[e]), vals.push_back(c.val[e]);
  }
  keep_largest(cols, vals, base, aux_k);
}

// Flattens the row blocks' lists into CSR, then transposes to CSC by a
// counting sort over row blocks (in parallel, items ascending per latent).
void codes_finish(int64_t n, int64_t m, SaeCodes& c) {
  const int64_t nb = blocks(n, kRowBlock);
  c.ptr.assign(n + 1, 0);
  for (int64_t i = 0; i < n; ++i) c.ptr[i + 1] = c.ptr[i] + c.count[i];
  c.col.resize(c.nnz());
  c.val.resize(c.nnz());
  c.cptr.assign(m + 1, 0);
  c.citem.resize(c.nnz());
  c.cval.resize(c.nnz());
  if (c.nnz() == 0) return;
  c.at.assign(nb * m, 0);
  row_blocks(n, [&](int64_t i0, int64_t, int64_t b) {
    std::copy(c.bcol[b].begin(), c.bcol[b].end(), c.col.begin() + c.ptr[i0]);
    std::copy(c.bval[b].begin(), c.bval[b].end(), c.val.begin() + c.ptr[i0]);
    for (int32_t j : c.bcol[b]) ++c.at[b * m + j];
  });
  std::vector<int64_t> total(m, 0);
  for (int64_t b = 0; b < nb; ++b)
    for (int64_t j = 0; j < m; ++j) {
      const int64_t k = c.at[b * m + j];
      c.at[b * m + j] = total[j];
      total[j] += k;
    }
  for (int64_t j = 0; j < m; ++j) c.cptr[j + 1] = c.cptr[j] + total[j];
  row_blocks(n, [&](int64_t i0, int64_t i1, int64_t b) {
    int64_t* at = c.at.data() + b * m;
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t e = c.ptr[i]; e < c.ptr[i + 1]; ++e) {
        const int64_t q = c.cptr[c.col[e]] + at[c.col[e]]++;
        c.citem[q] = static_cast<int32_t>(i);
        c.cval[q] = c.val[e];
      }
  });
}

static_assert(kRowBlock <= kTile && kLatentBlock <= kTile, "tiled_runs walks at most kTile rows");

// Runs fn(r, e0, e1) over the entries of rows r in [r0, r1) with keys in
// [k0, k1) (keys ascending within a row), a tile of keys at a time and row
// by row within a tile: each row's entries in key order. at[r - r0] holds
// each row's first entry not yet visited, at or past k0, and is advanced.
template <class F>
void tiled_runs(const std::vector<int64_t>& ptr, const std::vector<int32_t>& key, int64_t r0, int64_t r1, int64_t k0,
                int64_t k1, int64_t tile, int64_t* at, F&& fn) {
  for (int64_t t1 = std::min(k1, k0 + tile);; t1 = std::min(k1, t1 + tile)) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t e = at[r - r0];
      while (e < ptr[r + 1] && key[e] < t1) ++e;
      if (e > at[r - r0]) fn(r, at[r - r0], e);
      at[r - r0] = e;
    }
    if (t1 == k1) return;
  }
}

// Rows out[i - i0] += Σ val · D[col] over the codes of items [i0, i1)
// (at most kTile), each item's codes in latent order.
void decode_block(const SaeCodes& c, int64_t i0, int64_t i1, const float* D, int64_t d, int64_t m, int64_t tile, float* out) {
  const float* rows[kGroup];
  int64_t at[kTile];
  std::copy(c.ptr.begin() + i0, c.ptr.begin() + i1, at);
  tiled_runs(c.ptr, c.col, i0, i1, 0, m, tile, at, [&](int64_t i, int64_t e0, int64_t e1) {
    for (int64_t e = e0; e < e1; e += kGroup) {
      const int q = static_cast<int>(std::min<int64_t>(kGroup, e1 - e));
      for (int k = 0; k < q; ++k) rows[k] = D + int64_t(c.col[e + k]) * d;
      axpy_rows(q, c.val.data() + e, rows, out + (i - i0) * d, d);
    }
  });
}

// Adds to the gradient rows of latents [j0, j1) (at most kTile) the terms
// of their codes c on items [i0, i1), whose ∂loss/∂x̂ rows are g:
// ∂pre = g_i·D_j (+ lam), ∂D_j += val·g_i, ∂W_e row += ∂pre·x̄_i,
// ∂b_e += ∂pre, each latent's codes in item order. at: as in tiled_runs.
void latent_block(const SaeCodes& c, int64_t j0, int64_t j1, int64_t i0, int64_t i1, const float* g, const float* xc,
                  const float* D, float lam, int64_t d, int64_t tile, int64_t* at, float* gWe, float* gbe, float* gD) {
  const float *grow[kGroup], *xrow[kGroup];
  float ge[kGroup];
  tiled_runs(c.cptr, c.citem, j0, j1, i0, i1, tile, at, [&](int64_t j, int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; q += kGroup) {
      const int k = static_cast<int>(std::min<int64_t>(kGroup, q1 - q));
      for (int e = 0; e < k; ++e) {
        grow[e] = g + int64_t(c.citem[q + e]) * d;
        xrow[e] = xc + int64_t(c.citem[q + e]) * d;
      }
      latent_rows(k, grow, xrow, c.cval.data() + q, D + j * d, lam, d, gD + j * d, gWe + j * d, ge);
      for (int e = 0; e < k; ++e) gbe[j] += ge[e];
    }
  });
}

// The tile for codes of this density: kTile when dense enough to reuse rows.
int64_t tile_for(const SaeCodes& c, int64_t n, int64_t m) {
  return double(c.nnz()) >= kTiledDensity * double(n) * double(m) ? kTile : std::max(n, m);
}

const char* kind_name(SaeKind k) {
  return k == SaeKind::ReluL1 ? "relu-l1" : k == SaeKind::TopK ? "topk" : "batchtopk";
}

// The temporary file of an atomic save: written through, synced, then renamed
// over the target (a crash leaves the old checkpoint or the new one, whole).
class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path) : path_(path), tmp_(path + ".tmp") {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    require(fd_ >= 0, ErrorCode::File, "sae save: cannot write " + tmp_ + ": " + std::strerror(errno));
  }
  ~AtomicFile() {
    if (fd_ >= 0) {
      ::close(fd_);
      ::unlink(tmp_.c_str());
    }
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void bytes(const void* p, size_t n) {
    const char* s = static_cast<const char*>(p);
    while (n > 0) {
      const ssize_t w = ::write(fd_, s, std::min<size_t>(n, size_t(1) << 30));
      if (w < 0 && errno == EINTR) continue;
      require(w > 0, ErrorCode::File, "sae save: writing " + tmp_ + " failed: " + std::strerror(errno));
      s += w;
      n -= static_cast<size_t>(w);
    }
  }
  template <class T>
  void put(const T& v) {
    bytes(&v, sizeof(T));
  }
  template <class T>
  void put_vector(const std::vector<T>& v) {
    put(static_cast<int64_t>(v.size()));
    bytes(v.data(), sizeof(T) * v.size());
  }

  void commit() {
    require(::fsync(fd_) == 0, ErrorCode::File, "sae save: syncing " + tmp_ + " failed: " + std::strerror(errno));
    ::close(fd_);
    fd_ = -1;
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
      const std::string why = std::strerror(errno);
      ::unlink(tmp_.c_str());
      fail(ErrorCode::File, "sae save: cannot rename " + tmp_ + " to " + path_ + ": " + why);
    }
  }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
};

// Reads a checkpoint's fields in order; any short read names the file.
class CheckpointIn {
 public:
  explicit CheckpointIn(const std::string& path) : path_(path), f_(path, std::ios::binary) {
    require(bool(f_), ErrorCode::File, "sae checkpoint " + path + ": cannot open");
  }
  void bytes(void* p, size_t n) {
    f_.read(static_cast<char*>(p), static_cast<std::streamsize>(n));
    require(bool(f_), ErrorCode::File, "sae checkpoint " + path_ + ": truncated");
  }
  template <class T>
  T get() {
    T v;
    bytes(&v, sizeof(T));
    return v;
  }
  // A length-prefixed vector of at most `max` elements.
  template <class T>
  std::vector<T> get_vector(int64_t max, const char* what) {
    const int64_t n = get<int64_t>();
    require(n >= 0 && n <= max, ErrorCode::File, "sae checkpoint " + path_ + ": " + what + " has " + std::to_string(n) +
                                                     " elements, expected at most " + std::to_string(max));
    std::vector<T> v(n);
    bytes(v.data(), sizeof(T) * v.size());
    return v;
  }
  void expect_end() {
    require(f_.peek() == std::char_traits<char>::eof(), ErrorCode::File,
            "sae checkpoint " + path_ + ": unexpected bytes after the training state");
  }

 private:
  std::string path_;
  std::ifstream f_;
};

// The config as stored: its fields at their offsets, padding zeroed, so a
// checkpoint's bytes depend on the training state alone.
std::array<char, sizeof(SaeConfig)> config_bytes(const SaeConfig& c) {
  static_assert(sizeof(SaeConfig) == 80, "config_bytes stores every field of SaeConfig");
  std::array<char, sizeof(SaeConfig)> raw{};
  auto put = [&](size_t at, const auto& v) { std::memcpy(raw.data() + at, &v, sizeof v); };
  put(offsetof(SaeConfig, d), c.d);
  put(offsetof(SaeConfig, m), c.m);
  put(offsetof(SaeConfig, kind), c.kind);
  put(offsetof(SaeConfig, k), c.k);
  put(offsetof(SaeConfig, l1), c.l1);
  put(offsetof(SaeConfig, lr), c.lr);
  put(offsetof(SaeConfig, beta1), c.beta1);
  put(offsetof(SaeConfig, beta2), c.beta2);
  put(offsetof(SaeConfig, eps), c.eps);
  put(offsetof(SaeConfig, aux_coef), c.aux_coef);
  put(offsetof(SaeConfig, aux_k), c.aux_k);
  put(offsetof(SaeConfig, dead_steps), c.dead_steps);
  put(offsetof(SaeConfig, seed), c.seed);
  put(offsetof(SaeConfig, sparse_below), c.sparse_below);
  return raw;
}

// The format version of a checkpoint's magic (1 or 2), or 0.
int checkpoint_version(const char* magic) {
  if (std::memcmp(magic, kMagic, 8) == 0) return 2;
  if (std::memcmp(magic, kMagicV1, 8) == 0) return 1;
  return 0;
}

}  // namespace

Sae::~Sae() = default;

Sae::Sae(const SaeConfig& cfg, float* storage) : cfg_(cfg), lay_(cfg.d, cfg.m), rng_(cfg.seed), w_(new SaeWork) {
  require(cfg.d >= 1 && cfg.m >= 1, "sae: d and m must be >= 1, got d=" + std::to_string(cfg.d) +
                                        ", m=" + std::to_string(cfg.m));
  require(cfg.m <= std::numeric_limits<int32_t>::max(), "sae: m must fit in 31 bits, got " + std::to_string(cfg.m));
  require(cfg.kind == SaeKind::ReluL1 || (cfg.k >= 1 && cfg.k <= cfg.m),
          "sae: k must be in [1, m=" + std::to_string(cfg.m) + "], got " + std::to_string(cfg.k));
  require(cfg.lr > 0 && cfg.l1 >= 0, "sae: lr must be > 0 and l1 >= 0");
  if (!storage) {
    owned_.assign(lay_.total(), 0.0f);
    storage = owned_.data();
  }
  p_ = storage;
  fired_.assign(cfg.m, 0);
  last_fired_.assign(cfg.m, 0);
  grad_.assign(lay_.params, 0.0f);
  init_params();
}

// Atoms: random unit directions; encoder rows start equal to them; biases 0.
void Sae::init_params() {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t d = cfg_.d;
  std::fill(p_, p_ + lay_.total(), 0.0f);
  float* D = p_ + lay_.dec;
  for (int64_t j = 0; j < cfg_.m; ++j) {
    float* a = D + j * d;
    for (int64_t c = 0; c < d; ++c) a[c] = nd(rng_);
    float s = 1.0f / std::sqrt(dot(a, a, d));
    for (int64_t c = 0; c < d; ++c) a[c] *= s;
  }
  std::copy(D, D + cfg_.m * d, p_ + lay_.we);
}

void Sae::centre(const MatrixView& x, int64_t r0, int64_t n, const int64_t* ids) {
  const int64_t d = cfg_.d;
  require(x.cols == d, ErrorCode::Shape,
          "sae step: features have " + std::to_string(x.cols) + " columns, expected d=" + std::to_string(d));
  require(r0 >= 0 && n >= 1 && r0 + n <= x.rows, ErrorCode::Shape,
          "sae step: rows [" + std::to_string(r0) + ", " + std::to_string(r0 + n) + ") outside 0.." +
              std::to_string(x.rows));
  SaeWork& w = *w_;
  if (x.dtype == DType::F32) {
    w.x = x.f32() + r0 * d;
  } else {
    w.x16.resize(n * d);
    w.x = w.x16.data();
  }
  w.xc.resize(n * d);
  std::vector<int64_t> bad(n, -1);
  const float* b = p_ + lay_.b;
  row_blocks(n, [&](int64_t i0, int64_t i1, int64_t) {
    for (int64_t i = i0; i < i1; ++i) {
      const float* xi = w.x + i * d;
      if (x.dtype != DType::F32) rows_to_f32(x, r0 + i, 1, w.x16.data() + i * d);
      for (int64_t c = 0; c < d; ++c) {
        if (!std::isfinite(xi[c]) && bad[i] < 0) bad[i] = c;
        w.xc[i * d + c] = xi[c] - b[c];
      }
    }
  });
  for (int64_t i = 0; i < n; ++i)
    if (bad[i] >= 0)
      fail(ErrorCode::NaN, "sae step " + std::to_string(t_ + 1) + ": feature item " +
                               std::to_string(ids ? ids[i] : r0 + i) + " column " + std::to_string(bad[i]) + " is " +
                               (std::isnan(w.x[i * d + bad[i]]) ? "NaN" : "Inf"));
}

// Codes of items [i0, i1) from their pre-activations: per item the l1 sum
// and active count; on the sparse path the main codes (pre untouched) and the
// aux codes, on the dense path pre thresholded in place.
void Sae::select_rows(int64_t i0, int64_t i1, float batch_thr, bool sparse) {
  SaeWork& w = *w_;
  const int64_t m = cfg_.m, blk = i0 / kRowBlock;
  for (int64_t i = i0; i < i1; ++i) {
    float* row = w.screen.on ? nullptr : w.pre.data() + i * m;  // the screened path fills no pre
    if (!sparse) {
      double s = 0;
      w.active[i] = threshold_row(row, m, batch_thr, &s);
      w.l1[i] = s;
      continue;
    }
    auto& cols = w.main.bcol[blk];
    auto& vals = w.main.bval[blk];
    const size_t base = cols.size();
    int64_t kept;
    if (w.screen.on) {
      const EncoderScreen::Candidates c = w.screen.of(i);
      kept = c.n < cfg_.k ? 0 : topk_codes(c.col, c.val, c.n, cfg_.k, -INFINITY, cols, vals);  // fewer: NaNs only
    } else {
      kept = cfg_.kind == SaeKind::TopK ? topk_row(row, m, cfg_.k, cols, vals) : keep_row(row, m, batch_thr, cols, vals);
    }
    double s = 0;
    for (size_t e = base; e < cols.size(); ++e) s += vals[e];
    w.l1[i] = s;
    w.active[i] = w.main.count[i] = kept;
    if (!w.dead.empty()) {
      auto& acols = w.aux.bcol[blk];
      auto& avals = w.aux.bval[blk];
      const size_t abase = acols.size();
      if (w.screen.on) aux_listed(w.screen.of(i), w.dead, cfg_.aux_k, acols, avals);
      else aux_row(row, w.dead, cfg_.aux_k, acols, avals);
      w.aux.count[i] = static_cast<int64_t>(acols.size() - abase);
    }
  }
}

// pre = x̄ W_eᵀ + b_e and the activation, fused per GEMM task except for
// BatchTopK, whose threshold needs the whole batch first.
void Sae::encode_batch(int64_t n, bool sparse) {
  SaeWork& w = *w_;
  const int64_t d = cfg_.d, m = cfg_.m;
  w.l1.assign(n, 0.0);
  w.active.assign(n, 0);
  w.dead.clear();
  if (cfg_.kind != SaeKind::ReluL1 && cfg_.aux_coef > 0)
    for (int64_t j = 0; j < m; ++j)
      if (t_ - last_fired_[j] >= cfg_.dead_steps) w.dead.push_back(static_cast<int32_t>(j));
  w.main.start(n);
  w.aux.start(n);
  w.screen.on = false;
  const float* We = p_ + lay_.we;
  const float* be = p_ + lay_.be;
  auto dense_pre = [&] {
    w.pre.resize(n * m);
    return w.pre.data();
  };
  if (cfg_.kind == SaeKind::BatchTopK) {
    encoder_gemm(w.xc.data(), We, be, n, m, d, dense_pre(), nullptr);
    const float thr = kth_largest_positive(w.pre.data(), n * m, n * int64_t(cfg_.k));
    row_blocks(n, [&](int64_t i0, int64_t i1, int64_t) { select_rows(i0, i1, thr, sparse); });
  } else {
    auto select = [&](int64_t i0, int64_t i1) { select_rows(i0, i1, 0.0f, sparse); };
    if (cfg_.kind != SaeKind::TopK ||
        !screened_encoder(w.xc.data(), We, be, n, m, d, cfg_.k, cfg_.aux_k, w.dead, w.screen, select))
      encoder_gemm(w.xc.data(), We, be, n, m, d, dense_pre(), select);
  }
  if (sparse) {
    codes_finish(n, m, w.main);
    codes_finish(n, m, w.aux);
  }
}

// r becomes g = ∂loss/∂x̂ = 2 (x̂ − x) / (n d), x̂ = f D + b (decoded from the
// codes, or by GEMM on the dense path); h the aux loss's gradient, through
// the dead latents' reconstruction ê of the detached residual x − x̂. Per item
// ‖x̂ − x‖² and ‖x − x̂ − ê‖²; per row block Σ x and Σ g (the direct part of ∂b).
void Sae::reconstruct(int64_t n, bool sparse) {
  SaeWork& w = *w_;
  const int64_t d = cfg_.d, m = cfg_.m, nb = blocks(n, kRowBlock);
  const float* D = p_ + lay_.dec;
  const float* b = p_ + lay_.b;
  const bool aux = w.aux.nnz() > 0;
  const float gscale = 2.0f / float(n * d), hscale = 2.0f * cfg_.aux_coef / float(n * d);
  w.r.resize(n * d);
  if (aux) w.h.resize(n * d);
  w.sq.assign(n, 0.0);
  w.asq.assign(n, 0.0);
  w.colsum.assign(nb * d, 0.0);
  w.block_mean.resize(nb * d);
  w.dev.assign(nb, 0.0);
  w.gb_items.assign(nb * d, 0.0f);
  if (!sparse) {
    row_blocks(n, [&](int64_t i0, int64_t i1, int64_t) {
      for (int64_t i = i0; i < i1; ++i) std::copy(b, b + d, w.r.data() + i * d);
    });
    wide_sgemm(false, false, n, d, m, w.pre.data(), m, D, d, 1.0f, w.r.data(), d);
  }
  const int64_t tile = tile_for(w.main, n, m);
  row_blocks(n, [&](int64_t i0, int64_t i1, int64_t blk) {
    double* cs = w.colsum.data() + blk * d;
    float* gb = w.gb_items.data() + blk * d;
    if (sparse) {
      for (int64_t i = i0; i < i1; ++i) std::copy(b, b + d, w.r.data() + i * d);
      decode_block(w.main, i0, i1, D, d, m, tile, w.r.data() + i0 * d);
    }
    if (aux) {
      std::fill(w.h.data() + i0 * d, w.h.data() + i1 * d, 0.0f);
      decode_block(w.aux, i0, i1, D, d, m, m, w.h.data() + i0 * d);
    }
    for (int64_t i = i0; i < i1; ++i)
      residual_row({w.r.data() + i * d, w.x + i * d, aux ? w.h.data() + i * d : nullptr, cs, gb, gscale, hscale}, d,
                   &w.sq[i], &w.asq[i]);
    double* mean = w.block_mean.data() + blk * d;  // the block's own, while its rows are in cache
    for (int64_t c = 0; c < d; ++c) mean[c] = cs[c] / double(i1 - i0);
    double dev = 0;
    for (int64_t i = i0; i < i1; ++i) dev += spread(w.x + i * d, mean, d);
    w.dev[blk] = dev;
  });
}

// Loss terms and statistics of the batch, and each item's loss (the
// resampling weight).
void Sae::statistics(int64_t n, SaeStats& st) {
  SaeWork& w = *w_;
  const int64_t d = cfg_.d, nb = blocks(n, kRowBlock);
  std::vector<double> mean(d, 0.0);
  for (int64_t b = 0; b < nb; ++b)
    for (int64_t c = 0; c < d; ++c) mean[c] += w.colsum[b * d + c];
  for (int64_t c = 0; c < d; ++c) mean[c] /= double(n);
  // Σ‖x − mean‖² from the blocks' (Chan et al.): each block's spread about
  // its own mean, plus its size times its mean's distance from the mean.
  double var = 0, sse = 0, asse = 0, l1sum = 0;
  for (int64_t b = 0; b < nb; ++b) {
    const double rows = double(std::min(n, (b + 1) * kRowBlock) - b * kRowBlock);
    var += w.dev[b];
    for (int64_t c = 0; c < d; ++c) var += rows * std::pow(w.colsum[b * d + c] / rows - mean[c], 2);
  }
  int64_t nnz = 0;
  w.item_loss.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    sse += w.sq[i];
    asse += w.asq[i];
    l1sum += w.l1[i];
    nnz += w.active[i];
    w.item_loss[i] = w.sq[i] / double(d) + cfg_.l1 * w.l1[i];
  }
  st.mse = sse / double(n * d);
  st.l0 = double(nnz) / double(n);
  st.fvu = var > 0 ? sse / var : 0;
  st.aux = asse / double(n * d);
  st.loss = st.mse + cfg_.l1 * l1sum / double(n) + cfg_.aux_coef * st.aux;
}

// Dense path: ∂D = fᵀ g, ∂pre = (g Dᵀ + λ/n) where f > 0, ∂W_e = ∂preᵀ x̄,
// ∂b_e = Σ ∂pre, firing counts per latent.
void Sae::dense_backward(int64_t n) {
  SaeWork& w = *w_;
  const int64_t d = cfg_.d, m = cfg_.m;
  const float* F = w.pre.data();
  const float lam = cfg_.l1 / float(n);
  wide_sgemm(true, false, m, d, n, F, m, w.r.data(), d, 0.0f, grad_.data() + lay_.dec, d);
  w.gbuf.resize(n * m);
  wide_sgemm(false, true, n, m, d, w.r.data(), d, p_ + lay_.dec, d, 0.0f, w.gbuf.data(), m);
  row_blocks(n, [&](int64_t i0, int64_t i1, int64_t) {
    for (int64_t i = i0; i < i1; ++i) mask_grad(F + i * m, w.gbuf.data() + i * m, m, lam);
  });
  wide_sgemm(true, false, m, d, n, w.gbuf.data(), m, w.xc.data(), d, 0.0f, grad_.data() + lay_.we, d);
  float* gbe = grad_.data() + lay_.be;
  w.fired.assign(m, 0);
  parallel_for(blocks(m, 256), [&](int64_t blk, int) {
    const int64_t j0 = blk * 256, je = std::min(m, j0 + 256);
    std::fill(gbe + j0, gbe + je, 0.0f);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = j0; j < je; ++j) {
        gbe[j] += w.gbuf[i * m + j];
        w.fired[j] += F[i * m + j] > 0;
      }
  });
}

// Gradients of latents [j0, j1) (a latent block) from their codes on items
// [i0, i1): the sparse path's gradients, span by span (the dense path's
// GEMMs write them whole).
void Sae::latent_grads(int64_t n, int64_t j0, int64_t j1, int64_t i0, int64_t i1) {
  SaeWork& w = *w_;
  const int64_t d = cfg_.d, m = cfg_.m;
  float* gWe = grad_.data() + lay_.we;
  float* gD = grad_.data() + lay_.dec;
  float* gbe = grad_.data() + lay_.be;
  if (i0 == 0) {
    std::fill(gWe + j0 * d, gWe + j1 * d, 0.0f);
    std::fill(gD + j0 * d, gD + j1 * d, 0.0f);
    std::fill(gbe + j0, gbe + j1, 0.0f);
    std::copy(w.main.cptr.begin() + j0, w.main.cptr.begin() + j1, w.main.cursor.begin() + j0);
    std::copy(w.aux.cptr.begin() + j0, w.aux.cptr.begin() + j1, w.aux.cursor.begin() + j0);
  }
  const float* D = p_ + lay_.dec;
  latent_block(w.main, j0, j1, i0, i1, w.r.data(), w.xc.data(), D, cfg_.l1 / float(n), d, tile_for(w.main, n, m),
               w.main.cursor.data() + j0, gWe, gbe, gD);
  if (w.aux.nnz() > 0)
    latent_block(w.aux, j0, j1, i0, i1, w.h.data(), w.xc.data(), D, 0.0f, d, n, w.aux.cursor.data() + j0, gWe, gbe, gD);
}

// Latent j, its gradients complete: firing counts, its share of ∂b (through
// x̄ = x − b, with W_e before the update) into gb, the decoder gradient's
// projection onto the unit sphere's tangent, Adam on its encoder row,
// encoder bias and atom, and the atom's renormalisation.
void Sae::update_latent(int64_t j, int64_t count, const AdamStep& a, float* gb) {
  const int64_t d = cfg_.d, P = lay_.params;
  float* We = p_ + lay_.we + j * d;
  float* Dj = p_ + lay_.dec + j * d;
  float* gWe = grad_.data() + lay_.we + j * d;
  float* gD = grad_.data() + lay_.dec + j * d;
  float* gbe = grad_.data() + lay_.be + j;
  fired_[j] += count;
  if (count > 0) last_fired_[j] = t_;
  axpy(-*gbe, We, gb, d);
  axpy(-dot(gD, Dj, d) / dot(Dj, Dj, d), Dj, gD, d);
  adam(We, We + P, We + 2 * P, gWe, d, a);
  adam(p_ + lay_.be + j, p_ + P + lay_.be + j, p_ + 2 * P + lay_.be + j, gbe, 1, a);
  adam(Dj, Dj + P, Dj + 2 * P, gD, d, a);
  const float s = 1.0f / std::sqrt(dot(Dj, Dj, d));
  for (int64_t c = 0; c < d; ++c) Dj[c] *= s;
}

void Sae::update_latents(int64_t n, bool sparse) {
  SaeWork& w = *w_;
  const int64_t d = cfg_.d, m = cfg_.m;
  const double bc1 = 1 - std::pow(double(cfg_.beta1), double(t_)), bc2 = 1 - std::pow(double(cfg_.beta2), double(t_));
  const AdamStep a{cfg_.beta1, cfg_.beta2, float(cfg_.lr / bc1), float(1 / std::sqrt(bc2)), cfg_.eps};
  const int64_t nl = blocks(m, kLatentBlock);
  w.gb_latents.assign(nl * d, 0.0f);
  w.main.cursor.resize(m);
  w.aux.cursor.resize(m);
  // Span by span on the sparse path; each latent block is updated in the
  // last span's task, its gradients still in cache.
  const int64_t span = sparse ? kItemSpan : n;
  for (int64_t i0 = 0; i0 < n; i0 += span)
    parallel_for(nl, [&](int64_t blk, int) {
      const int64_t j0 = blk * kLatentBlock, j1 = std::min(m, j0 + kLatentBlock), i1 = std::min(n, i0 + span);
      if (sparse) latent_grads(n, j0, j1, i0, i1);
      if (i1 < n) return;
      for (int64_t j = j0; j < j1; ++j)
        update_latent(j, sparse ? w.main.cptr[j + 1] - w.main.cptr[j] : w.fired[j], a, w.gb_latents.data() + blk * d);
    });
  float* gb = grad_.data() + lay_.b;
  std::fill(gb, gb + d, 0.0f);
  for (const auto* part : {&w.gb_items, &w.gb_latents})
    for (size_t q = 0; q < part->size(); q += d) axpy(1.0f, part->data() + q, gb, d);
  adam(p_ + lay_.b, p_ + lay_.params + lay_.b, p_ + 2 * lay_.params + lay_.b, gb, d, a);
}

void Sae::encode(const MatrixView& x, int64_t r0, int64_t n, float* out) {
  const int64_t m = cfg_.m, d = cfg_.d;
  centre(x, r0, n, nullptr);
  float batch_thr = 0;
  auto threshold = [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      float* row = out + i * m;
      double s = 0;
      threshold_row(row, m, cfg_.kind == SaeKind::TopK ? kth_largest(row, m, cfg_.k) : batch_thr, &s);
    }
  };
  const bool batch = cfg_.kind == SaeKind::BatchTopK;  // its threshold needs the whole batch first
  const float *We = p_ + lay_.we, *be = p_ + lay_.be;
  // Screened: the row is rewritten from its candidates, which hold every
  // entry at least its k-th value.
  auto listed = [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const EncoderScreen::Candidates c = w_->screen.of(i);
      const float kth = kth_value(c.val, c.n, cfg_.k, -INFINITY);
      float* row = out + i * m;
      std::fill(row, row + m, 0.0f);
      for (int64_t e = 0; e < c.n; ++e)
        if (c.val[e] >= kth && c.val[e] > 0) row[c.col[e]] = c.val[e];
    }
  };
  if (cfg_.kind == SaeKind::TopK && screened_encoder(w_->xc.data(), We, be, n, m, d, cfg_.k, 0, {}, w_->screen, listed))
    return;
  encoder_gemm(w_->xc.data(), We, be, n, m, d, out, batch ? std::function<void(int64_t, int64_t)>() : threshold);
  if (!batch) return;
  batch_thr = kth_largest_positive(out, n * m, n * int64_t(cfg_.k));
  row_blocks(n, [&](int64_t i0, int64_t i1, int64_t) { threshold(i0, i1); });
}

// One step: forward and loss first, so a diverged loss throws before any
// parameter changes; then ∂ on the dense path's GEMMs, and one pass over the
// latents that finishes their gradients and applies Adam.
SaeStats Sae::step(const MatrixView& x, int64_t r0, int64_t n, const int64_t* item_ids) {
  centre(x, r0, n, item_ids);
  SaeStats st;
  st.sparse = cfg_.kind != SaeKind::ReluL1 || density_ < cfg_.sparse_below;
  encode_batch(n, st.sparse);
  st.screened = w_->screen.on;
  reconstruct(n, st.sparse);
  statistics(n, st);
  if (!std::isfinite(st.loss))
    fail(ErrorCode::NaN, "sae step " + std::to_string(t_ + 1) + ": loss is " + std::to_string(st.loss) +
                             " (diverged; lower --lr)");
  density_ = st.l0 / double(cfg_.m);
  if (!st.sparse) dense_backward(n);
  ++t_;
  update_latents(n, st.sparse);
  if (collecting_) collect(n);
  st.step = t_;
  st.dead = static_cast<int64_t>(dead().size());
  return st;
}

std::vector<int64_t> Sae::dead() const {
  std::vector<int64_t> out;
  for (int64_t j = 0; j < cfg_.m; ++j)
    if (fired_[j] == 0) out.push_back(j);
  return out;
}

void Sae::resample_begin() {
  collecting_ = true;
  slots_ = static_cast<int64_t>(dead().size());
  heap_.clear();
  pool_.assign(slots_ * cfg_.d, 0.0f);
}

// Efraimidis–Spirakis: keep the slots_ largest keys log(u)/w, w = loss².
// Candidates are the encoder's inputs x̄ = x − b: raw features share a large
// common direction, and atoms seeded from it would all fire on every item.
void Sae::collect(int64_t n) {
  const std::vector<double>& item_loss = w_->item_loss;
  const std::vector<float>& xc = w_->xc;
  std::uniform_real_distribution<double> ud(std::numeric_limits<double>::min(), 1.0);
  auto greater = [](const std::pair<double, int64_t>& a, const std::pair<double, int64_t>& b) { return a.first > b.first; };
  for (int64_t i = 0; i < n && slots_ > 0; ++i) {
    double w = item_loss[i] * item_loss[i];
    double key = w > 0 ? std::log(ud(rng_)) / w : -std::numeric_limits<double>::infinity();
    int64_t slot;
    if (static_cast<int64_t>(heap_.size()) < slots_) {
      slot = static_cast<int64_t>(heap_.size());
      heap_.push_back({key, slot});
      std::push_heap(heap_.begin(), heap_.end(), greater);
    } else if (key > heap_.front().first) {
      std::pop_heap(heap_.begin(), heap_.end(), greater);
      slot = heap_.back().second;
      heap_.back() = {key, slot};
      std::push_heap(heap_.begin(), heap_.end(), greater);
    } else {
      continue;
    }
    std::copy(xc.begin() + i * cfg_.d, xc.begin() + (i + 1) * cfg_.d, pool_.begin() + slot * cfg_.d);
  }
}

std::vector<int64_t> Sae::resample_apply() {
  require(collecting_, "sae resample: call resample_begin() and train on inputs first");
  std::vector<int64_t> dead_now = dead();
  std::vector<int64_t> picked;
  for (int64_t j : dead_now)
    if (static_cast<int64_t>(picked.size()) < slots_) picked.push_back(j);
  require(picked.empty() || !heap_.empty(), "sae resample: no inputs were seen since resample_begin()");
  const int64_t d = cfg_.d, P = lay_.params;
  float* We = p_ + lay_.we;
  double alive_norm = 0;
  int64_t alive = 0;
  for (int64_t j = 0; j < cfg_.m; ++j)
    if (fired_[j] > 0) {
      alive_norm += std::sqrt(dot(We + j * d, We + j * d, d));
      ++alive;
    }
  const float enc_scale = 0.2f * float(alive ? alive_norm / double(alive) : 1.0);
  for (size_t q = 0; q < picked.size(); ++q) {
    const float* src = pool_.data() + heap_[q % heap_.size()].second * d;
    float norm = std::sqrt(dot(src, src, d));
    const int64_t j = picked[q];
    for (int64_t c = 0; c < d; ++c) {
      float v = norm > 0 ? src[c] / norm : 0.0f;
      p_[lay_.dec + j * d + c] = v;
      p_[lay_.we + j * d + c] = v * enc_scale;
    }
    p_[lay_.be + j] = 0;
    for (int64_t s : {P, 2 * P}) {
      std::fill(p_ + s + lay_.dec + j * d, p_ + s + lay_.dec + (j + 1) * d, 0.0f);
      std::fill(p_ + s + lay_.we + j * d, p_ + s + lay_.we + (j + 1) * d, 0.0f);
      p_[s + lay_.be + j] = 0;
    }
    last_fired_[j] = t_;
  }
  std::fill(fired_.begin(), fired_.end(), 0);
  collecting_ = false;
  heap_.clear();
  pool_.clear();
  return picked;
}

// Format 2: magic, config, step, density, parameters and moments, firing
// counts, the RNG (text, as the standard library streams it), then the
// resampling reservoir (flag, slots, heap, pool).
void Sae::save(const std::string& path) const {
  AtomicFile f(path);
  f.bytes(kMagic, 8);
  f.put(config_bytes(cfg_));
  f.put(t_);
  f.put(density_);
  f.bytes(p_, sizeof(float) * lay_.total());
  f.bytes(fired_.data(), sizeof(int64_t) * cfg_.m);
  f.bytes(last_fired_.data(), sizeof(int64_t) * cfg_.m);
  std::ostringstream rng;
  rng << rng_;
  const std::string r = rng.str();
  f.put_vector(std::vector<char>(r.begin(), r.end()));
  f.put(int64_t(collecting_));
  f.put(slots_);
  std::vector<double> keys;
  std::vector<int64_t> at;
  for (const auto& e : heap_) {
    keys.push_back(e.first);
    at.push_back(e.second);
  }
  f.put_vector(keys);
  f.put_vector(at);
  f.put_vector(pool_);
  f.commit();
}

SaeConfig Sae::read_config(const std::string& path) {
  CheckpointIn f(path);
  char magic[8];
  f.bytes(magic, 8);
  require(checkpoint_version(magic) > 0, ErrorCode::File, "sae checkpoint " + path + ": not a conceptlens SAE checkpoint");
  return f.get<SaeConfig>();
}

// Version 1 files (parameters, moments, counts) load too, without the
// resampling state and the RNG (both as they are in this object).
void Sae::load(const std::string& path) {
  CheckpointIn f(path);
  char magic[8];
  f.bytes(magic, 8);
  const int version = checkpoint_version(magic);
  require(version > 0, ErrorCode::File, "sae checkpoint " + path + ": not a conceptlens SAE checkpoint");
  const SaeConfig c = f.get<SaeConfig>();
  if (c.d != cfg_.d || c.m != cfg_.m || c.kind != cfg_.kind || (c.kind != SaeKind::ReluL1 && c.k != cfg_.k))
    fail(ErrorCode::Shape, "sae checkpoint " + path + ": shape d=" + std::to_string(c.d) + ", m=" + std::to_string(c.m) +
                               " (" + kind_name(c.kind) + ", k=" + std::to_string(c.k) + ") differs from the trainer's d=" +
                               std::to_string(cfg_.d) + ", m=" + std::to_string(cfg_.m) + " (" + kind_name(cfg_.kind) +
                               ", k=" + std::to_string(cfg_.k) + ")");
  const int64_t t = f.get<int64_t>();
  const double density = version >= 2 ? f.get<double>() : 1.0;
  std::vector<float> p(lay_.total());
  std::vector<int64_t> fired(cfg_.m), last(cfg_.m);
  f.bytes(p.data(), sizeof(float) * p.size());
  f.bytes(fired.data(), sizeof(int64_t) * cfg_.m);
  f.bytes(last.data(), sizeof(int64_t) * cfg_.m);
  std::mt19937_64 rng = rng_;
  bool collecting = false;
  int64_t slots = 0;
  std::vector<std::pair<double, int64_t>> heap;
  std::vector<float> pool;
  if (version >= 2) {
    const std::vector<char> r = f.get_vector<char>(1 << 16, "the RNG state");
    std::istringstream in(std::string(r.begin(), r.end()));
    in >> rng;
    require(!in.fail(), ErrorCode::File, "sae checkpoint " + path + ": unreadable RNG state");
    collecting = f.get<int64_t>() != 0;
    slots = f.get<int64_t>();
    require(slots >= 0 && slots <= cfg_.m, ErrorCode::File,
            "sae checkpoint " + path + ": " + std::to_string(slots) + " resampling slots, expected 0.." + std::to_string(cfg_.m));
    const std::vector<double> keys = f.get_vector<double>(slots, "the resampling heap");
    const std::vector<int64_t> at = f.get_vector<int64_t>(slots, "the resampling heap");
    pool = f.get_vector<float>(slots * cfg_.d, "the resampling pool");
    require(at.size() == keys.size() && int64_t(pool.size()) == (collecting ? slots * cfg_.d : 0), ErrorCode::File,
            "sae checkpoint " + path + ": resampling state of " + std::to_string(keys.size()) + " keys, " +
                std::to_string(at.size()) + " slots and " + std::to_string(pool.size()) + " pool values for " +
                std::to_string(slots) + " slots");
    for (size_t q = 0; q < keys.size(); ++q) {
      require(at[q] >= 0 && at[q] < slots, ErrorCode::File,
              "sae checkpoint " + path + ": resampling heap names slot " + std::to_string(at[q]) + " of " + std::to_string(slots));
      heap.push_back({keys[q], at[q]});
    }
  }
  f.expect_end();
  std::copy(p.begin(), p.end(), p_);
  t_ = t;
  density_ = density;
  fired_ = std::move(fired);
  last_fired_ = std::move(last);
  rng_ = rng;
  collecting_ = collecting;
  slots_ = slots;
  heap_ = std::move(heap);
  pool_ = std::move(pool);
}

}  // namespace cl
