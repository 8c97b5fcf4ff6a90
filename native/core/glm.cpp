#include "glm.h"


#include <immintrin.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <string>

#include "blas.h"
#include "cpu.h"
#include "error.h"
#include "gram_int16.h"
#include "matrix.h"
#include "scratch.h"
#include "threads.h"

namespace cl {

namespace {

// Row blocks of the column and objective reductions: a fixed count, so sums
// are added in the same order whatever the thread count.
constexpr int64_t kRowBlocks = 64;
// Rows rounded at a time for int16 moments (even, so pairs never straddle two).
constexpr int64_t kRoundedRows = int64_t(1) << 16;

void validate_arguments(int64_t n, int64_t p, int64_t K, const ElasticNet& en) {
  require(n >= 2, "X: expected at least 2 samples, got " + std::to_string(n));
  require(p >= 1, "X: expected at least 1 feature, got " + std::to_string(p));
  require(K >= 1, "Y: expected at least 1 target, got " + std::to_string(K));
  require(en.lambda > 0 && std::isfinite(en.lambda), "lambda: expected a positive number, got " + std::to_string(en.lambda));
  require(en.alpha >= 0 && en.alpha <= 1, "alpha: expected a number in [0, 1], got " + std::to_string(en.alpha));
}

void require_finite_data(const float* X, int64_t n, int64_t p, const float* Y, int64_t K) {
  require_finite(MatrixView{X, DType::F32, n, p}, "X");
  require_finite(MatrixView{Y, DType::F32, n, K}, "Y");
}

double soft(double z, double t) { return z > t ? z - t : z < -t ? z + t : 0.0; }

double penalty(const float* w, int64_t p, const ElasticNet& en) {
  double l1 = 0, l2 = 0;
  for (int64_t j = 0; j < p; ++j) l1 += std::fabs(double(w[j])), l2 += double(w[j]) * w[j];
  return en.lambda * (en.alpha * l1 + 0.5 * (1 - en.alpha) * l2);
}

// Column means of A (n×c) in float64, each column's largest distance from
// its mean, and whether some column's mean exceeds its standard deviation:
// fp32 products of such raw columns lose their digits to cancellation.
struct ColumnStats {
  std::vector<double> mean, spread;
  bool offset = false;
  bool finite = true;        // false when A holds a NaN or Inf (squares of finite floats cannot overflow a double)
  bool roundable = true;     // every spread within kInt16MaxSpread standard deviations
  int64_t unscalable = -1;   // the first column whose 12-bit scale or its inverse fp32 cannot hold (-1: none)
};

// One block of rows' column sums and squares (float64) and extremes.
void sum_rows(const float* A, int64_t i0, int64_t i1, int64_t c, double* s, double* q, float* lo, float* hi) {
  for (int64_t i = i0; i < i1; ++i)
    for (int64_t j = 0; j < c; ++j) {
      const float v = A[i * c + j];
      const double x = v;
      s[j] += x, q[j] += x * x;
      lo[j] = lo[j] < v ? lo[j] : v, hi[j] = hi[j] > v ? hi[j] : v;
    }
}

ColumnStats column_stats(const float* A, int64_t n, int64_t c) {
  const int64_t blocks = std::min(n, kRowBlocks);
  // Pool memory: fresh pages fault in one at a time, slowly under virtualisation.
  Scratch<double> sum = Scratch<double>::zeroed(size_t(blocks) * c), sq = Scratch<double>::zeroed(size_t(blocks) * c);
  Scratch<float> lo(size_t(blocks) * c), hi(size_t(blocks) * c);
  std::fill(lo.begin(), lo.end(), INFINITY);
  std::fill(hi.begin(), hi.end(), -INFINITY);
  const bool avx512 = cpu_avx512f();
  parallel_for(blocks, [&](int64_t b, int) {
    run_widest(avx512, [&] { sum_rows(A, b * n / blocks, (b + 1) * n / blocks, c, &sum[b * c], &sq[b * c], &lo[b * c], &hi[b * c]); });
  });
  ColumnStats st;
  st.mean.assign(c, 0.0);
  st.spread.assign(c, 0.0);
  for (int64_t j = 0; j < c; ++j) {
    double s = 0, q = 0;
    float l = INFINITY, h = -INFINITY;
    for (int64_t b = 0; b < blocks; ++b) s += sum[b * c + j], q += sq[b * c + j], l = std::min(l, lo[b * c + j]), h = std::max(h, hi[b * c + j]);
    const double mean = s / double(n), var = std::max(0.0, q / double(n) - mean * mean);
    st.mean[j] = mean;
    st.spread[j] = std::max(double(h) - mean, mean - double(l));
    st.offset |= 2 * mean * mean > q / double(n);  // mean² > E[x²] − mean²
    st.finite &= std::isfinite(q);
    st.roundable &= st.spread[j] <= kInt16MaxSpread * std::sqrt(var);
    const double step = st.spread[j] / kRoundedMax;
    if (st.unscalable < 0 && step != 0 && !(step >= FLT_MIN && 1 / step <= FLT_MAX)) st.unscalable = j;
  }
  return st;
}

// What the covariance-update solver needs, computed once for all targets by
// wide BLAS: G = XcᵀXc/n (p×p, both triangles) and Ct = YcᵀXc/n (K×p, a row per
// target) for column-centred Xc, Yc. A near-centred matrix goes into the GEMMs
// as it is, centred afterwards by rank-one corrections in float64 (subtracting
// its `shift`, the column means); one with a column far from centred is
// centred first (its shift is then 0).
struct Moments {
  int64_t p = 0;
  Scratch<float> G, Ct;  // uninitialised until the GEMMs write them
  std::vector<double> mu_x, mu_y, shift_x, shift_y;
  bool rounded = false;  // from columns rounded to 12 bits ("int16"), else fp32 GEMMs

  double c(int64_t k, int64_t j) const { return Ct[k * p + j] - shift_y[k] * shift_x[j]; }
};

// A (n×c) as the GEMMs take it: itself, or centred into `copy` when some column
// sits far from centred. Sets the shift its products still need subtracted.
const float* gemm_operand(const float* A, int64_t n, int64_t c, const ColumnStats& st, std::vector<float>& copy,
                          std::vector<double>& shift) {
  shift = st.offset ? std::vector<double>(c, 0.0) : st.mean;
  if (!st.offset) return A;
  copy.resize(size_t(n) * c);
  parallel_for(n, [&](int64_t i, int) {
    for (int64_t j = 0; j < c; ++j) copy[i * c + j] = float(A[i * c + j] - st.mean[j]);
  });
  return copy.data();
}

// Completes the upper triangle that ssyrk wrote into a symmetric matrix,
// subtracting shift·shiftᵀ, tile by tile so both accesses stay in cache.
void symmetrise(float* G, int64_t p, const std::vector<double>& shift) {
  constexpr int64_t T = 64;
  parallel_for((p + T - 1) / T, [&](int64_t bi, int) {
    for (int64_t j0 = bi * T; j0 < p; j0 += T)
      for (int64_t i = bi * T; i < std::min(p, (bi + 1) * T); ++i)
        for (int64_t j = std::max(i, j0); j < std::min(p, j0 + T); ++j)
          G[j * p + i] = G[i * p + j] = float(G[i * p + j] - shift[i] * shift[j]);
  });
}

// Whether the moments are rounded: int16 asked for (refused where it cannot
// run or a column's values span too little or too much for an fp32 scale of
// 2,047 steps), or auto on columns it accepts.
bool rounds(MomentArithmetic a, const ColumnStats& sx, const ColumnStats& sy) {
  const bool scalable = sx.unscalable < 0 && sy.unscalable < 0;
  if (a == MomentArithmetic::Int16) {
    require(int16_gram_available(), "moments: expected 'fp32' or 'auto' on this CPU (int16 needs AVX-512 VNNI), got 'int16'");
    if (!scalable) {
      const bool inX = sx.unscalable >= 0;
      const int64_t j = inX ? sx.unscalable : sy.unscalable;
      fail(std::string("moments: 'int16' cannot round ") + (inX ? "X" : "Y") + " column " + std::to_string(j) + ": its values lie within " +
           show((inX ? sx : sy).spread[j]) + " of their mean, beyond what fp32 scales of 2,047 steps hold; expected 'fp32' or 'auto'");
    }
  }
  return a == MomentArithmetic::Int16 ||
         (a == MomentArithmetic::Auto && int16_gram_available() && sx.roundable && sy.roundable && scalable);
}

// G and Ct from the centred columns rounded to 12-bit integers (no shifts
// left), rounded kRoundedRows rows at a time: the rounded copy of a
// LAION-sized X stays a few hundred MiB, and a cancel is seen between blocks.
void rounded_moments(Moments& m, const float* X, int64_t n, const ColumnStats& sx, const float* Y, int64_t K,
                     const ColumnStats& sy, const Progress& progress) {
  const int64_t p = m.p;
  for (int64_t r0 = 0; r0 < n; r0 += kRoundedRows) {
    progress.check();
    const int64_t rows = std::min(kRoundedRows, n - r0);
    const RoundedColumns x = round_columns(X + r0 * p, rows, p, sx.mean.data(), sx.spread.data(), 16);
    const RoundedColumns y = round_columns(Y + r0 * K, rows, K, sy.mean.data(), sy.spread.data(), 8);
    int16_gram_upper(x, 1.0f / float(n), m.G.data(), r0 > 0);
    int16_cross(y, x, 1.0f / float(n), m.Ct.data(), r0 > 0);
  }
  m.shift_x.assign(p, 0.0);
  m.shift_y.assign(K, 0.0);
  m.rounded = true;
}

// X's and Y's column statistics: what the moments of either arithmetic start from.
struct DataStats {
  ColumnStats x, y;
};

DataStats data_stats(const float* X, int64_t n, int64_t p, const float* Y, int64_t K) {
  DataStats st{column_stats(X, n, p), column_stats(Y, n, K)};
  // The sums double as the finite check; the full scan runs only to name the bad entry.
  if (!st.x.finite || !st.y.finite) require_finite_data(X, n, p, Y, K);
  return st;
}

Moments moments(const float* X, int64_t n, int64_t p, const float* Y, int64_t K, const DataStats& st,
                MomentArithmetic arithmetic, const Progress& progress) {
  const ColumnStats &sx = st.x, &sy = st.y;
  Moments m;
  m.p = p;
  m.mu_x = sx.mean;
  m.mu_y = sy.mean;
  m.G = Scratch<float>(size_t(p) * p);
  m.Ct = Scratch<float>(size_t(K) * p);
  if (rounds(arithmetic, sx, sy)) {
    rounded_moments(m, X, n, sx, Y, K, sy, progress);
  } else {
    std::vector<float> Xc, Yc;
    const float* A = gemm_operand(X, n, p, sx, Xc, m.shift_x);
    const float* B = gemm_operand(Y, n, K, sy, Yc, m.shift_y);
    WideBlas guard(compute_threads());
    ssyrk_upper_ata(p, n, 1.0f / float(n), A, p, 0.0f, m.G.data(), p);
    sgemm(true, false, K, p, n, 1.0f / float(n), B, K, A, p, 0.0f, m.Ct.data(), p);
  }
  symmetrise(m.G.data(), p, m.shift_x);
  return m;
}

// The penalty and the per-feature quantities every target's solve shares.
struct Problem {
  const Moments& m;
  int64_t p;
  double l1, l2, tol;
  // sqrt(G_jj)/(G_jj + l2): how far, in units of the feature's standard
  // deviation, a coordinate step moves w_j per unit of KKT violation.
  std::vector<double> reach;

  Problem(const Moments& m_, const ElasticNet& en, double tol_)
      : m(m_), p(m_.p), l1(en.lambda * en.alpha), l2(en.lambda * (1 - en.alpha)), tol(tol_), reach(m_.p) {
    for (int64_t j = 0; j < p; ++j) {
      const double g = m.G[j * p + j];
      reach[j] = g > 0 ? std::sqrt(g) / (g + l2) : 0.0;
    }
  }
};

// Per-worker state of one target's solve: over all p features the weights w
// and q = c − Gw (the negative gradient of the smooth part, c = Ct's row); the
// working set ws, its dense float64 copies of G, q, w, and how many of its
// weights are nonzero; scratch for picking and for Newton steps.
struct CdScratch {
  std::vector<double> q, w, Gws, qws, wws, H, delta;
  std::vector<int64_t> ws;
  std::vector<size_t> on;
  std::vector<std::pair<double, int64_t>> best;
  size_t support = 0;
};

// The working set: the support plus the excluded features whose coordinate
// step from zero would exceed tol (in standard deviations), largest first, up
// to `size` in all. False when there are none: w is then optimal to tolerance.
bool pick_working_set(const Problem& P, size_t size, CdScratch& s) {
  const size_t take = size > s.support ? size - s.support : 1;
  auto larger = [](const std::pair<double, int64_t>& a, const std::pair<double, int64_t>& b) { return a > b; };
  s.ws.clear();
  s.best.clear();  // a min-heap of the `take` largest steps
  // What a step must exceed: tol, and once the heap is full its least. One
  // test per feature, rarely passed once the heap fills (two tests
  // mispredicted on every other feature).
  double gate = P.tol;
  for (int64_t j = 0; j < P.p; ++j) {
    if (s.w[j] != 0) {
      s.ws.push_back(j);
      continue;
    }
    const double step = (std::fabs(s.q[j]) - P.l1) * P.reach[j];
    if (step <= gate) continue;
    if (s.best.size() == take) std::pop_heap(s.best.begin(), s.best.end(), larger), s.best.pop_back();
    s.best.emplace_back(step, j);
    std::push_heap(s.best.begin(), s.best.end(), larger);
    if (s.best.size() == take) gate = std::max(P.tol, s.best.front().first);
  }
  for (const auto& b : s.best) s.ws.push_back(b.second);
  return !s.best.empty();
}

// Coordinate t's step on the working set, given its gradient entry q.
double cd_step(const Problem& P, const CdScratch& s, size_t t, double q) {
  const double gtt = s.Gws[t * s.ws.size() + t];
  return soft(q + gtt * s.wws[t], P.l1) / (gtt + P.l2) - s.wws[t];
}

// One cyclic pass with covariance updates; returns the largest move in
// standard deviations and sets `flipped` when a weight left, entered or
// changed sign.
double cd_pass(const Problem& P, CdScratch& s, bool& flipped) {
  const size_t a = s.ws.size();
  double maxd = 0;
  flipped = false;
  for (size_t t = 0; t < a; ++t) {
    const double d = cd_step(P, s, t, s.qws[t]), w = s.wws[t];
    if (d == 0) continue;
    const double* row = &s.Gws[t * a];
    for (size_t u = 0; u < a; ++u) s.qws[u] -= d * row[u];
    s.wws[t] += d;
    flipped |= (w > 0) != (s.wws[t] > 0) || (w < 0) != (s.wws[t] < 0);
    maxd = std::max(maxd, std::fabs(d) * std::sqrt(row[t]));
  }
  return maxd;
}

// Solves H·x = b in place for symmetric positive definite H (m×m, lower
// triangle read) by Cholesky; false when H is not numerically so.
bool cholesky_solve(std::vector<double>& H, size_t m, std::vector<double>& b) {
  for (size_t j = 0; j < m; ++j) {
    double d = H[j * m + j];
    for (size_t k = 0; k < j; ++k) d -= H[j * m + k] * H[j * m + k];
    if (!(d > 1e-12 * H[j * m + j])) return false;
    H[j * m + j] = d = std::sqrt(d);
    for (size_t i = j + 1; i < m; ++i) {
      double v = H[i * m + j];
      for (size_t k = 0; k < j; ++k) v -= H[i * m + k] * H[j * m + k];
      H[i * m + j] = v / d;
    }
  }
  for (size_t i = 0; i < m; ++i) {
    for (size_t k = 0; k < i; ++k) b[i] -= H[i * m + k] * b[k];
    b[i] /= H[i * m + i];
  }
  for (size_t i = m; i-- > 0;) {
    for (size_t k = i + 1; k < m; ++k) b[i] -= H[k * m + i] * b[k];
    b[i] /= H[i * m + i];
  }
  return true;
}

// Newton's step for the working set's problem with the support S and signs σ
// held: (G_SS + l2·I)·Δ = q_S − l2·w_S − l1·σ, the minimiser of the objective
// on σ's orthant face. Taken up to where a weight first reaches zero (the
// objective falls all along the segment); when it is taken whole and no zero
// coordinate of the set would then move by tol, the subproblem is solved.
// This replaces coordinate descent's slow linear tail on correlated features.
// Returns whether the subproblem is solved.
bool newton_step(const Problem& P, CdScratch& s) {
  const size_t a = s.ws.size();
  s.on.clear();
  for (size_t t = 0; t < a; ++t)
    if (s.wws[t] != 0) s.on.push_back(t);
  const size_t m = s.on.size();
  s.H.resize(m * m);
  s.delta.resize(m);
  for (size_t i = 0; i < m; ++i) {
    const size_t t = s.on[i];
    for (size_t j = 0; j <= i; ++j) s.H[i * m + j] = s.Gws[t * a + s.on[j]] + (i == j ? P.l2 : 0.0);
    s.delta[i] = s.qws[t] - P.l2 * s.wws[t] - P.l1 * (s.wws[t] > 0 ? 1 : -1);
  }
  if (!cholesky_solve(s.H, m, s.delta)) return false;
  double theta = 1;
  for (size_t i = 0; i < m; ++i) {
    const double w = s.wws[s.on[i]], d = s.delta[i];
    if ((w + d) * w <= 0) theta = std::min(theta, -w / d);
  }
  for (size_t i = 0; i < m; ++i) {
    const size_t t = s.on[i];
    const double d = theta * s.delta[i];
    const double* row = &s.Gws[t * a];
    for (size_t u = 0; u < a; ++u) s.qws[u] -= d * row[u];
    // A weight the step takes to zero lands on it exactly.
    s.wws[t] = (s.wws[t] + d) * s.wws[t] <= 0 ? 0.0 : s.wws[t] + d;
  }
  if (theta < 1) return false;
  for (size_t t = 0; t < a; ++t)
    if (s.wws[t] == 0 && std::fabs(cd_step(P, s, t, s.qws[t])) * std::sqrt(s.Gws[t * a + t]) >= P.tol) return false;
  return true;
}

// Copies G, q and w on the working set into dense float64 scratch.
void load_working_set(const Problem& P, CdScratch& s) {
  const size_t a = s.ws.size();
  s.Gws.resize(a * a);
  s.qws.resize(a);
  s.wws.resize(a);
  for (size_t t = 0; t < a; ++t) {
    const float* row = &P.m.G[s.ws[t] * P.p];
    for (size_t u = 0; u < a; ++u) s.Gws[t * a + u] = row[s.ws[u]];
    s.qws[t] = s.q[s.ws[t]];
    s.wws[t] = s.w[s.ws[t]];
  }
}

// Writes the working set's weights back and carries their changes into q
// over all features; counts the support.
void store_working_set(const Problem& P, CdScratch& s) {
  s.support = 0;
  for (size_t t = 0; t < s.ws.size(); ++t) {
    const int64_t j = s.ws[t];
    const double d = s.wws[t] - s.w[j];
    s.support += s.wws[t] != 0;
    if (d == 0) continue;
    const float* row = &P.m.G[j * P.p];
    for (int64_t i = 0; i < P.p; ++i) s.q[i] -= d * row[i];
    s.w[j] = s.wws[t];
  }
}

// Solves the problem on the working set: coordinate descent with covariance
// updates on the dense block G[ws, ws] until a pass moves no coordinate by tol
// (standard deviations) or the pass budget is spent, with Newton steps after
// passes that change no sign. A Newton step costs about m³/3 flops for m
// weights in the support, a pass a² for a features in the set: a step waits
// until that many passes' worth of work has passed since the last. Returns
// the passes.
int64_t descend(const Problem& P, int64_t budget, CdScratch& s) {
  load_working_set(P, s);
  const double a = double(s.ws.size());
  int64_t passes = 0;
  double work = 0;  // pass flops since the last Newton step
  bool flipped = false;
  for (double maxd = P.tol; maxd >= P.tol && passes < budget; ++passes) {
    maxd = cd_pass(P, s, flipped);
    work += a * a;
    const double m = double(std::count_if(s.wws.begin(), s.wws.end(), [](double w) { return w != 0; }));
    if (flipped || maxd < P.tol || work < m * m * m / 3) continue;
    work = 0;
    if (newton_step(P, s)) maxd = 0;
  }
  store_working_set(P, s);
  return passes;
}

// One target, as glmnet, celer and skglm do it: from w = 0, solve on a small
// working set, then regrow it from the support and the worst KKT violators
// until no excluded feature would move. Working sets hold twice the support
// (skglm's sizing), at least kFirstSize. Returns the passes taken.
int64_t solve_target(const Problem& P, int64_t k, const CdOptions& opt, CdScratch& s) {
  constexpr size_t kFirstSize = 16;
  s.w.assign(P.p, 0.0);
  s.q.resize(P.p);
  s.support = 0;
  for (int64_t j = 0; j < P.p; ++j) s.q[j] = P.m.c(k, j);
  int64_t passes = 0;
  for (size_t size = kFirstSize; passes < opt.max_passes && pick_working_set(P, size, s);
       size = std::max(kFirstSize, 2 * s.support))
    passes += descend(P, opt.max_passes - passes, s);
  return passes;
}

// The objective's row tiles: 16 rows, a float64 vector pair per column.
constexpr int64_t kTile = 16;

// 8 doubles as one vector (AVX-512 where run_widest compiles for it, pairs of
// SSE2 registers otherwise): GCC left the tile loops scalar (the exact pass
// took twice as long). These vectors live inside run_widest's inlined
// bodies and never cross a call, so GCC's note on the ABI of 64-byte vectors
// (-Wpsabi) does not apply for the rest of this file.
#pragma GCC diagnostic ignored "-Wpsabi"
typedef double V8d __attribute__((vector_size(64)));
typedef float V8f __attribute__((vector_size(32)));

inline V8d widen(const float* x) {
  V8f f;
  std::memcpy(&f, x, sizeof f);
  return __builtin_convertvector(f, V8d);
}

inline double lane_sum(V8d v) {
  double s = 0;
  for (int t = 0; t < 8; ++t) s += v[t];
  return s;
}

// 16 rows of A (lda apart) as columns: out[(j − c0)·16 + t] = A[t·lda + j]
// for j in [c0, c1), t < rows, and 0 for t ≥ rows. A full 16×16 block is
// transposed in registers where the CPU has AVX-512.
__attribute__((target("avx512f"))) void transpose16_avx512(const float* A, int64_t lda, float* out) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(A + i * lda);
  for (int i = 0; i < 16; i += 2) t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]), t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44), r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44), r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int h = 0; h < 16; h += 8)
    for (int i = 0; i < 4; ++i)
      t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88), t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xDD);
  for (int i = 0; i < 8; ++i)
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88), r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
  for (int i = 0; i < 16; ++i) _mm512_storeu_ps(out + i * 16, r[i]);
}

void transpose_tile(const float* A, int64_t lda, int64_t rows, int64_t c0, int64_t c1, float* out, bool avx512) {
  if (avx512 && rows == kTile && c1 - c0 == kTile) return transpose16_avx512(A + c0, lda, out);
  for (int64_t j = c0; j < c0 + kTile; ++j)
    for (int64_t t = 0; t < kTile; ++t) out[(j - c0) * kTile + t] = j < c1 && t < rows ? A[t * lda + j] : 0.0f;
}

// One pass over the data with weights W (K×p) and bias b: each target's
// residual sum of squares, and with `gradients` the support's exact
// gradients, X_jᵀr/n for each nonzero weight (targets in order, features
// ascending), r = y − Xw − b.
struct Residuals {
  std::vector<double> rss, gradient;
  std::vector<int64_t> start, at;  // target k's nonzeros: at[start[k]..start[k+1])
};

Residuals residual_pass(const float* X, int64_t n, int64_t p, const float* Y, int64_t K, const float* W, const float* b,
                        bool gradients) {
  // Residuals go a tile of 16 rows at a time: the tile's columns of X (the
  // 16-column groups any target uses) and of Y transposed, so that each
  // nonzero weight updates a tile's residuals as one float64 vector operation.
  Residuals out;
  std::vector<char> used(size_t(p + kTile - 1) / kTile, 0);
  std::vector<double> weight;
  out.start.push_back(0);
  for (int64_t k = 0; k < K; ++k) {
    for (int64_t j = 0; j < p; ++j)
      if (W[k * p + j] != 0) out.at.push_back(j), weight.push_back(W[k * p + j]), used[j / kTile] = 1;
    out.start.push_back(int64_t(out.at.size()));
  }
  const std::vector<int64_t>&start = out.start, &at = out.at;
  const int64_t blocks = std::min(n, kRowBlocks), nnz = int64_t(at.size());
  // The blocks' sums and each worker's transposed tiles, from the pool (as above).
  Scratch<double> rss = Scratch<double>::zeroed(size_t(blocks) * K), grad = Scratch<double>::zeroed(gradients ? size_t(blocks) * nnz : 0);
  const int64_t pw = int64_t(used.size()) * kTile, kw = (K + kTile - 1) / kTile * kTile;
  // The gradients' vector partial sums, 8 lanes per nonzero, reduced once at the block's end.
  std::vector<Scratch<float>> tiles(parallel_workers(blocks));
  std::vector<Scratch<V8d>> lanes(gradients ? tiles.size() : 0);
  for (auto& t : tiles) t = Scratch<float>(size_t(pw + kw) * kTile);
  for (auto& l : lanes) l = Scratch<V8d>(size_t(nnz));
  const bool avx512 = cpu_avx512f();
  parallel_for(blocks, [&](int64_t blk, int worker) { run_widest(avx512, [&] {
    float *xt = tiles[worker].data(), *yt = xt + pw * kTile;
    V8d* acc = gradients ? lanes[worker].data() : nullptr;
    if (gradients) std::fill_n(acc, nnz, V8d{});
    for (int64_t i0 = blk * n / blocks, end = (blk + 1) * n / blocks; i0 < end; i0 += kTile) {
      const int64_t rows = std::min(kTile, end - i0);
      V8d live[2];  // 1 for the tile's rows, 0 past them
      for (int64_t t = 0; t < kTile; ++t) live[t / 8][t % 8] = t < rows ? 1.0 : 0.0;
      for (int64_t g = 0; g < int64_t(used.size()); ++g)
        if (used[g]) transpose_tile(X + i0 * p, p, rows, g * kTile, std::min(p, (g + 1) * kTile), xt + g * kTile * kTile, avx512);
      for (int64_t g = 0; g < kw / kTile; ++g) transpose_tile(Y + i0 * K, K, rows, g * kTile, std::min(K, (g + 1) * kTile), yt + g * kTile * kTile, avx512);
      for (int64_t k = 0; k < K; ++k) {
        const double bk = b[k];
        V8d r0 = (widen(yt + k * kTile) - bk) * live[0], r1 = (widen(yt + k * kTile + 8) - bk) * live[1];
        for (int64_t e = start[k]; e < start[k + 1]; ++e) {
          const float* x = xt + at[e] * kTile;
          r0 -= weight[e] * widen(x), r1 -= weight[e] * widen(x + 8);
        }
        rss[blk * K + k] += lane_sum(r0 * r0 + r1 * r1);
        if (!gradients) continue;
        for (int64_t e = start[k]; e < start[k + 1]; ++e) {
          const float* x = xt + at[e] * kTile;
          acc[e] += widen(x) * r0 + widen(x + 8) * r1;
        }
      }
    }
    for (int64_t e = 0; gradients && e < nnz; ++e) grad[blk * nnz + e] += lane_sum(acc[e]);
  }); });
  out.rss.assign(K, 0.0);
  out.gradient.assign(gradients ? nnz : 0, 0.0);
  for (int64_t blk = 0; blk < blocks; ++blk) {
    for (int64_t k = 0; k < K; ++k) out.rss[k] += rss[blk * K + k];
    for (int64_t e = 0; e < int64_t(out.gradient.size()); ++e) out.gradient[e] += grad[blk * nnz + e] / double(n);
  }
  return out;
}

std::vector<double> objectives(const Residuals& r, int64_t n, int64_t p, const float* W, const ElasticNet& en) {
  std::vector<double> obj(r.rss.size());
  for (size_t k = 0; k < obj.size(); ++k) obj[k] = 0.5 * r.rss[k] / double(n) + penalty(W + k * p, p, en);
  return obj;
}

// A target solved on rounded moments, checked and made exact on its support:
// with the support S and its signs σ held the objective is quadratic, so the
// exact residual r_S = X_Sᵀr/n − l1·σ − l2·w_S (the exact pass's gradients)
// and the Hessian H = G_SS + l2·I give the step Δ = H⁻¹r_S to the face's
// minimum, gap = ½·r_SᵀΔ below the current objective (H from the rounded
// moments: exact to their rounding). Returns that gap (infinite when H is
// not numerically positive definite: nothing certifies the fit); takes the
// step, up to where a weight would reach zero, when the gap exceeds
// kRefineGap of the objective.
constexpr double kRefineGap = 1e-8;

double face_gap(const Problem& P, const Residuals& r, int64_t k, double objective, float* w, std::vector<double>& H,
                std::vector<double>& step) {
  const int64_t s0 = r.start[k], m = r.start[k + 1] - s0;
  H.resize(m * m);
  step.resize(m);
  for (int64_t i = 0; i < m; ++i) {
    const int64_t ji = r.at[s0 + i];
    for (int64_t j = 0; j <= i; ++j) H[i * m + j] = P.m.G[ji * P.p + r.at[s0 + j]] + (i == j ? P.l2 : 0.0);
    step[i] = r.gradient[s0 + i] - P.l1 * (w[ji] > 0 ? 1 : -1) - P.l2 * w[ji];
  }
  const std::vector<double> residual(step);
  if (m == 0) return 0.0;
  if (!cholesky_solve(H, size_t(m), step)) return INFINITY;
  double gap = 0, theta = 1;
  for (int64_t i = 0; i < m; ++i) {
    gap += 0.5 * residual[i] * step[i];
    const double wi = w[r.at[s0 + i]];
    if ((wi + step[i]) * wi <= 0) theta = std::min(theta, -wi / step[i]);
  }
  if (gap > kRefineGap * objective)
    for (int64_t i = 0; i < m; ++i) {
      float& wi = w[r.at[s0 + i]];
      const double moved = double(wi) + theta * step[i];
      wi = moved * wi <= 0 ? 0.0f : float(moved);
    }
  return gap;
}

// The intercept that is optimal for target k's weights w as stored.
float intercept(const Moments& m, const float* w, int64_t k) {
  double b = m.mu_y[k];
  for (int64_t j = 0; j < m.p; ++j)
    if (w[j] != 0) b -= m.mu_x[j] * w[j];
  return float(b);
}

// Checks every target of a fit on rounded moments on its support and refines
// those past kRefineGap (r: the fit's exact pass, with gradients), then
// recomputes the objectives if any moved. Returns the largest gap found, as
// a share of its objective.
double refine_rounded_fit(const Problem& P, const Residuals& r, const float* X, int64_t n, const float* Y, int64_t K,
                          const ElasticNet& en, GlmFit& fit) {
  std::vector<double> H, step;
  double worst = 0;
  bool moved = false;
  for (int64_t k = 0; k < K; ++k) {
    float* w = &fit.weights[k * P.p];
    const double gap = face_gap(P, r, k, fit.objective[k], w, H, step) / fit.objective[k];
    worst = std::max(worst, gap);
    if (!(gap > kRefineGap && std::isfinite(gap))) continue;
    fit.bias[k] = intercept(P.m, w, k);
    moved = true;
  }
  if (moved) fit.objective = elastic_net_objective(X, n, P.p, Y, K, fit.weights.data(), fit.bias.data(), en);
  return worst;
}

}  // namespace

std::vector<double> elastic_net_objective(const float* X, int64_t n, int64_t p, const float* Y, int64_t K,
                                          const float* W, const float* b, const ElasticNet& en) {
  return objectives(residual_pass(X, n, p, Y, K, W, b, false), n, p, W, en);
}

namespace {

// The coordinate-descent fit on the moments opt asks for; with rounded ones,
// `gap` is the largest share of its objective a target's support held (see
// refine_rounded_fit), else 0.
GlmFit cd_fit(const float* X, int64_t n, int64_t p, const float* Y, int64_t K, const DataStats& st, const ElasticNet& en,
              const CdOptions& opt, Progress& progress, double& gap) {
  const Moments m = moments(X, n, p, Y, K, st, opt.moments, progress);
  const Problem P(m, en, opt.tol);
  GlmFit fit;
  // Each target zeroes its own row: a fresh block (the weights are handed to
  // JS, so often not recycled) faults its pages in on both threads at once.
  fit.weights = Scratch<float>(size_t(K) * p);
  fit.bias.assign(K, 0.0f);
  std::vector<CdScratch> scratch(parallel_workers(K));
  std::vector<int64_t> passes(K);
  const bool avx512 = cpu_avx512f();
  parallel_for(K, [&](int64_t k, int worker) {
    progress.check();
    CdScratch& s = scratch[worker];
    run_widest(avx512, [&] { passes[k] = solve_target(P, k, opt, s); });
    std::fill_n(&fit.weights[k * p], p, 0.0f);
    for (int64_t j : s.ws) fit.weights[k * p + j] = float(s.w[j]);
    fit.bias[k] = intercept(m, &fit.weights[k * p], k);
    progress.advance(1);
  });
  fit.iterations = *std::max_element(passes.begin(), passes.end());
  fit.moments_by = m.rounded ? "int16" : "fp32";
  const Residuals r = residual_pass(X, n, p, Y, K, fit.weights.data(), fit.bias.data(), m.rounded);
  fit.objective = objectives(r, n, p, fit.weights.data(), en);
  gap = m.rounded ? refine_rounded_fit(P, r, X, n, Y, K, en, fit) : 0.0;
  return fit;
}

}  // namespace

GlmFit elastic_net_cd(const float* X, int64_t n, int64_t p, const float* Y, int64_t K, const ElasticNet& en,
                      const CdOptions& opt, Progress& progress) {
  validate_arguments(n, p, K, en);
  progress.set_total(K);
  const DataStats st = data_stats(X, n, p, Y, K);
  double gap = 0;
  GlmFit fit = cd_fit(X, n, p, Y, K, st, en, opt, progress, gap);
  if (gap > kInt16MaxGap && opt.moments == MomentArithmetic::Auto) {
    // Rounding moved some target's minimum by more than auto accepts: a
    // problem too ill-conditioned for 12 bits, solved again on fp32 moments.
    CdOptions exact = opt;
    exact.moments = MomentArithmetic::Fp32;
    progress.set_total(2 * K);
    fit = cd_fit(X, n, p, Y, K, st, en, exact, progress, gap);
  }
  return fit;
}

namespace {

// The state of minibatch SAGA over all targets: the table of each sample's
// last residuals and the running averages of the gradients they imply.
// Targets are independent given the minibatch, so each step runs as blocks of
// targets on the pool, each block doing its own single-threaded GEMMs and
// proximal update while the data is in cache.
struct Saga {
  static constexpr int64_t kBlock = 32;
  int64_t n, p, K;
  Scratch<float> W;  // becomes the fit's weights
  std::vector<float> b, table, wavg, bavg;
  std::vector<float> Xb, out, D, gd;
  Saga(int64_t n_, int64_t p_, int64_t K_, int64_t B)
      : n(n_), p(p_), K(K_), W(Scratch<float>::zeroed(size_t(K_ * p_))), b(K_, 0.0f), table(n_ * K_, 0.0f), wavg(K_ * p_, 0.0f),
        bavg(K_, 0.0f), Xb(B * p_), out(B * K_), D(B * K_), gd(K_ * p_) {}

  // One minibatch (rows idx[0..m)): returns ½Σ residual², then takes the proximal SAGA step.
  double step(const float* X, const float* Y, const int64_t* idx, int64_t m, const ElasticNet& en, double lr) {
    for (int64_t r = 0; r < m; ++r) std::copy_n(X + idx[r] * p, p, &Xb[r * p]);
    const int64_t blocks = (K + kBlock - 1) / kBlock;
    std::vector<double> loss(blocks, 0.0);
    parallel_for(blocks, [&](int64_t blk, int) {
      const int64_t k0 = blk * kBlock, kb = std::min(kBlock, K - k0);
      loss[blk] = step_block(Y, idx, m, k0, kb, en, lr);
    });
    return std::accumulate(loss.begin(), loss.end(), 0.0);
  }

  double step_block(const float* Y, const int64_t* idx, int64_t m, int64_t k0, int64_t kb, const ElasticNet& en,
                    double lr) {
    sgemm(false, true, m, kb, p, 1.0f, Xb.data(), p, &W[k0 * p], p, 0.0f, &out[k0], K);
    double loss = 0;
    std::vector<double> bd(kb, 0.0);
    for (int64_t r = 0; r < m; ++r) {
      float* prev = &table[idx[r] * K];
      for (int64_t k = k0; k < k0 + kb; ++k) {
        const float a = out[r * K + k] + b[k] - Y[idx[r] * K + k];
        loss += 0.5 * double(a) * a;
        D[r * K + k] = a - prev[k];
        bd[k - k0] += D[r * K + k];
        prev[k] = a;
      }
    }
    sgemm(true, false, kb, p, m, 1.0f / float(m), &D[k0], K, Xb.data(), p, 0.0f, &gd[k0 * p], p);
    const double t1 = lr * en.lambda * en.alpha, shrink = 1 + lr * en.lambda * (1 - en.alpha);
    const float frac = float(m) / float(n);
    for (int64_t k = k0; k < k0 + kb; ++k) {
      for (int64_t j = k * p; j < (k + 1) * p; ++j) {
        W[j] = float(soft(W[j] - lr * (double(gd[j]) + wavg[j]), t1) / shrink);
        wavg[j] += gd[j] * frac;
      }
      const double g = bd[k - k0] / double(m);
      b[k] = float(b[k] - lr * (g + bavg[k]));
      bavg[k] += float(g) * frac;
    }
    return loss;
  }

  double penalties(const ElasticNet& en) const {
    double s = 0;
    for (int64_t k = 0; k < K; ++k) s += penalty(&W[k * p], p, en);
    return s;
  }
};

}  // namespace

GlmFit elastic_net_saga(const float* X, int64_t n, int64_t p, const float* Y, int64_t K, const ElasticNet& en,
                        const SagaOptions& opt, Progress& progress) {
  validate_arguments(n, p, K, en);
  require_finite_data(X, n, p, Y, K);
  require(opt.batch >= 1, "batch: expected >= 1, got " + std::to_string(opt.batch));
  require(opt.step > 0, "step: expected a positive number, got " + std::to_string(opt.step));
  progress.set_total(opt.max_epochs);
  const int64_t B = std::min(opt.batch, n);
  Saga s(n, p, K, B);
  std::vector<int64_t> perm(n);
  std::iota(perm.begin(), perm.end(), 0);
  std::mt19937_64 rng(opt.seed);
  const double tol = opt.tol_per_target * double(K);
  double best = std::numeric_limits<double>::infinity();
  int64_t stale = 0, epoch = 0;
  while (epoch < opt.max_epochs && stale < opt.lookbehind) {
    progress.check();
    std::shuffle(perm.begin(), perm.end(), rng);
    double loss = 0;
    for (int64_t r0 = 0; r0 < n; r0 += B) loss += s.step(X, Y, &perm[r0], std::min(B, n - r0), en, opt.step);
    // GLM-SAGA's stopping objective: the loss seen during the epoch plus the penalty at its end.
    const double obj = loss / double(n) + s.penalties(en);
    if (obj + tol < best) best = obj, stale = 0;
    else ++stale;
    ++epoch;
    progress.advance(1);
  }
  GlmFit fit;
  fit.weights = std::move(s.W);
  fit.bias = std::move(s.b);
  fit.iterations = epoch;
  fit.objective = elastic_net_objective(X, n, p, Y, K, fit.weights.data(), fit.bias.data(), en);
  return fit;
}

}  // namespace cl
