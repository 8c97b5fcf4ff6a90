#include "splice.h"

#include <cblas.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <numeric>
#include <utility>

#include "blas.h"
#include "cpu.h"
#include "error.h"
#include "threads.h"

namespace cl {

SpliceSolver parse_splice_solver(const std::string& name) {
  if (name == "auto") return SpliceSolver::Auto;
  if (name == "fista") return SpliceSolver::Fista;
  if (name == "admm") return SpliceSolver::Admm;
  if (name == "ws") return SpliceSolver::WorkingSet;
  fail("solver: expected 'auto', 'fista', 'admm' or 'ws', got '" + name + "'");
}

namespace {

// Solves (L Lᵀ) x = b in place (x holds b on entry): L is lower triangular,
// n × n inside a row-major array of leading dimension ld.
void cholesky_solve(const double* L, int64_t ld, int64_t n, double* x) {
  for (int64_t i = 0; i < n; ++i) {
    double v = x[i];
    for (int64_t k = 0; k < i; ++k) v -= L[i * ld + k] * x[k];
    x[i] = v / L[i * ld + i];
  }
  for (int64_t i = n - 1; i >= 0; --i) {
    double v = x[i];
    for (int64_t k = i + 1; k < n; ++k) v -= L[k * ld + i] * x[k];
    x[i] = v / L[i * ld + i];
  }
}

// ---- vector kernels ------------------------------------------------------------
// AVX-512 when the CPU has it (the build targets baseline x86-64), else plain
// loops. The exact arithmetic is float64 on fp32 dictionary rows: a product
// of two fp32 values is exact in float64, so such a dot product is exact up
// to its float64 sum.

#define CL_AVX512 __attribute__((target("avx512f")))
const bool kAvx512 = cpu_avx512f();

// Asks for a row (d floats) in cache ahead of its use: the rows of a working
// set are scattered over the dictionary, and fetching one costs more than
// its dot product.
void prefetch(const float* x, int64_t d) {
  for (int64_t t = 0; t < d; t += 16) _mm_prefetch(reinterpret_cast<const char*>(x + t), _MM_HINT_T0);
}

// The dot products below take rows four at a time, so that four accumulator
// chains overlap and x is loaded once for them, while the next four rows are
// prefetched. A last partial group repeats its last row.
template <typename Group>
void in_groups_of_four(const float* const* rows, int64_t n, int64_t d, Group&& group) {
  for (int64_t k = 0; k < n; k += 4) {
    const float* r[4];
    for (int q = 0; q < 4; ++q) r[q] = rows[std::min(k + q, n - 1)];
    for (int64_t q = k + 4; q < std::min(n, k + 8); ++q) prefetch(rows[q], d);
    group(k, r);
  }
}

// out[k] = rows[k]·x in float64 (x float64, rows fp32).
CL_AVX512 void dots_avx512(const double* x, const float* const* rows, int64_t n, int64_t d, double* out) {
  in_groups_of_four(rows, n, d, [&](int64_t k, const float* const* r) CL_AVX512 {
    __m512d s[4] = {_mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd()};
    int64_t t = 0;
    for (; t + 8 <= d; t += 8) {
      const __m512d xv = _mm512_loadu_pd(x + t);
      for (int q = 0; q < 4; ++q) s[q] = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm256_loadu_ps(r[q] + t)), xv, s[q]);
    }
    for (int q = 0; q < 4 && k + q < n; ++q) {
      double v = _mm512_reduce_add_pd(s[q]);
      for (int64_t u = t; u < d; ++u) v += double(r[q][u]) * x[u];
      out[k + q] = v;
    }
  });
}

void dots(const double* x, const float* const* rows, int64_t n, int64_t d, double* out) {
  if (kAvx512) return dots_avx512(x, rows, n, d, out);
  for (int64_t k = 0; k < n; ++k) {
    double v = 0;
    for (int64_t t = 0; t < d; ++t) v += double(rows[k][t]) * x[t];
    out[k] = v;
  }
}

double dot(const float* row, const double* x, int64_t d) {
  double v;
  dots(x, &row, 1, d, &v);
  return v;
}

// out[k] = rows[k]·x in fp32 arithmetic: within d·ε·‖rows[k]‖‖x‖ of the exact value.
CL_AVX512 void dots32_avx512(const float* x, const float* const* rows, int64_t n, int64_t d, float* out) {
  in_groups_of_four(rows, n, d, [&](int64_t k, const float* const* r) CL_AVX512 {
    __m512 s[4], u[4];
    for (int q = 0; q < 4; ++q) s[q] = u[q] = _mm512_setzero_ps();
    int64_t t = 0;
    for (; t + 32 <= d; t += 32) {
      const __m512 xa = _mm512_loadu_ps(x + t), xb = _mm512_loadu_ps(x + t + 16);
      for (int q = 0; q < 4; ++q) {
        s[q] = _mm512_fmadd_ps(_mm512_loadu_ps(r[q] + t), xa, s[q]);
        u[q] = _mm512_fmadd_ps(_mm512_loadu_ps(r[q] + t + 16), xb, u[q]);
      }
    }
    for (int q = 0; q < 4 && k + q < n; ++q) {
      float v = _mm512_reduce_add_ps(_mm512_add_ps(s[q], u[q]));
      for (int64_t e = t; e < d; ++e) v += r[q][e] * x[e];
      out[k + q] = v;
    }
  });
}

void dots32(const float* x, const float* const* rows, int64_t n, int64_t d, float* out) {
  if (kAvx512) return dots32_avx512(x, rows, n, d, out);
  for (int64_t k = 0; k < n; ++k) {
    float v = 0;
    for (int64_t t = 0; t < d; ++t) v += rows[k][t] * x[t];
    out[k] = v;
  }
}

CL_AVX512 void axpy_avx512(double a, const float* x, double* y, int64_t d) {
  const __m512d va = _mm512_set1_pd(a);
  int64_t t = 0;
  for (; t + 8 <= d; t += 8)
    _mm512_storeu_pd(y + t, _mm512_fmadd_pd(va, _mm512_cvtps_pd(_mm256_loadu_ps(x + t)), _mm512_loadu_pd(y + t)));
  for (; t < d; ++t) y[t] += a * x[t];
}

// y += a·x for an fp32 row x and a float64 vector y.
void axpy(double a, const float* x, double* y, int64_t d) {
  if (kAvx512) return axpy_avx512(a, x, y, d);
  for (int64_t t = 0; t < d; ++t) y[t] += a * x[t];
}

CL_AVX512 float row_max_avx512(const float* x, int64_t n) {
  __m512 m = _mm512_set1_ps(-INFINITY);
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(x + j));
  float best = _mm512_reduce_max_ps(m);
  for (; j < n; ++j) best = std::max(best, x[j]);
  return best;
}

float row_max(const float* x, int64_t n) {
  if (kAvx512) return row_max_avx512(x, n);
  float best = -INFINITY;
  for (int64_t j = 0; j < n; ++j) best = std::max(best, x[j]);
  return best;
}

CL_AVX512 bool at_least_avx512(const float* x, int64_t n, float thr, int32_t offset, size_t cap, std::vector<int32_t>& out) {
  const __m512 v = _mm512_set1_ps(thr);
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    for (__mmask16 m = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + j), v, _CMP_GE_OQ); m; m &= m - 1)
      out.push_back(offset + int32_t(j + __builtin_ctz(m)));
    if (out.size() > cap) return false;
  }
  for (; j < n; ++j)
    if (x[j] >= thr) out.push_back(offset + int32_t(j));
  return out.size() <= cap;
}

// Appends offset + j for the x[j] ≥ thr to out; false (out partial) once it holds more than cap.
bool at_least(const float* x, int64_t n, float thr, int32_t offset, size_t cap, std::vector<int32_t>& out) {
  if (kAvx512) return at_least_avx512(x, n, thr, offset, cap, out);
  for (int64_t j = 0; j < n; ++j)
    if (x[j] >= thr) {
      out.push_back(offset + int32_t(j));
      if (out.size() > cap) return false;
    }
  return true;
}

// Rows of similarities (one entry per atom) are searched through the maxima
// of their chunks of kChunk entries: only the chunks whose maximum reaches a
// threshold hold entries above it.
constexpr int64_t kChunk = 64;

void chunk_maxima(const float* x, int64_t n, std::vector<float>& maxes) {
  maxes.resize((n + kChunk - 1) / kChunk);
  for (size_t b = 0; b < maxes.size(); ++b) maxes[b] = row_max(x + b * kChunk, std::min(kChunk, n - int64_t(b) * kChunk));
}

// The j with x[j] ≥ thr, into out; false (out partial) when there are more than cap.
bool entries_at_least(const float* x, int64_t n, const std::vector<float>& maxes, float thr, size_t cap,
                      std::vector<int32_t>& out) {
  out.clear();
  for (size_t b = 0; b < maxes.size(); ++b) {
    const int64_t j0 = int64_t(b) * kChunk;
    if (maxes[b] >= thr && !at_least(x + j0, std::min(kChunk, n - j0), thr, int32_t(j0), cap, out)) return false;
  }
  return true;
}

// The (at most) k largest entries above floor, unordered, into out. A
// chunk's maximum is one of its entries, so at least k entries reach the
// k-th largest chunk maximum.
void top_above(const float* x, int64_t n, const std::vector<float>& maxes, float floor, size_t k, std::vector<float>& tmp,
               std::vector<int32_t>& out) {
  float thr = floor;
  if (k > 0 && maxes.size() > k) {
    tmp.assign(maxes.begin(), maxes.end());
    std::nth_element(tmp.begin(), tmp.begin() + (k - 1), tmp.end(), std::greater<float>());
    thr = std::max(thr, tmp[k - 1]);
  }
  entries_at_least(x, n, maxes, thr, size_t(n), out);
  if (out.size() <= k) return;
  std::nth_element(out.begin(), out.begin() + k, out.end(), [&](int32_t a, int32_t b) { return x[a] > x[b]; });
  out.resize(k);
}

// ---- problem, certificate ----------------------------------------------------------

// The dictionary as fp32 rows (fp16 converted once), with the samples and λ.
struct Problem {
  std::vector<float> converted;
  const float* C = nullptr;
  int64_t c = 0, d = 0;
  MatrixView Z;
  double l1 = 0;
  double max_norm = 0;       // largest ‖c_j‖, bounds the rounding of fp32 similarities
  std::vector<double> Cd;    // float64 copy, made for FISTA only

  Problem(const MatrixView& dict, const MatrixView& samples, double l1_) : c(dict.rows), d(dict.cols), Z(samples), l1(l1_) {
    if (dict.dtype == DType::F32) {
      C = dict.f32();
    } else {
      converted.resize(dict.rows * dict.cols);
      rows_to_f32(dict, 0, dict.rows, converted.data());
      C = converted.data();
    }
    for (int64_t j = 0; j < c; ++j) {
      double n2 = 0;
      for (int64_t t = 0; t < d; ++t) n2 += double(C[j * d + t]) * C[j * d + t];
      max_norm = std::max(max_norm, std::sqrt(n2));
    }
  }

  const float* row(int64_t j) const { return C + j * d; }

  // Bound on how far an fp32 dot product of length d (a GEMM entry c_j·r̃,
  // r̃ = fp32(r), or c_j·c_k) is from the exact one, per unit of the other
  // vector's norm: d·ε·‖c_j‖, doubled to cover the rounding of r.
  double fp32_slack(double other_norm) const { return 2.0 * double(d) * 6e-8 * max_norm * other_norm; }
};

void validate(const MatrixView& dict, const MatrixView& samples) {
  require(dict.rows >= 1 && dict.cols >= 1, "dictionary: expected at least 1 concept of dimension ≥ 1, got " +
                                                 std::to_string(dict.rows) + "×" + std::to_string(dict.cols));
  require(samples.cols == dict.cols, "samples: expected dimension d = " + std::to_string(dict.cols) +
                                         " (the dictionary's), got " + std::to_string(samples.cols));
  require_finite(dict, "dictionary");
  require_finite(samples, "samples");
}

// One row of weights as its non-zeros (float64).
struct SparseRow {
  std::vector<int32_t> idx;
  std::vector<double> val;
};

template <typename T>
SparseRow sparse_row(const T* w, int64_t c) {
  SparseRow r;
  for (int64_t j = 0; j < c; ++j)
    if (w[j] != 0) r.idx.push_back(int32_t(j)), r.val.push_back(double(w[j]));
  return r;
}

// The sums of a residual r = z − Cᵀw that its certificate needs.
struct Residual {
  double rr = 0, rz = 0, l1w = 0;  // ‖r‖², r·z, ‖w‖₁
};

// r = z − Cᵀw in float64 (w's zeros skipped).
Residual residual(const Problem& pb, const float* z, const SparseRow& w, double* r) {
  Residual out;
  std::copy(z, z + pb.d, r);
  for (size_t e = 0; e < w.idx.size(); ++e)
    if (w.val[e] != 0) axpy(-w.val[e], pb.row(w.idx[e]), r, pb.d), out.l1w += w.val[e];
  for (int64_t t = 0; t < pb.d; ++t) out.rr += r[t] * r[t], out.rz += r[t] * z[t];
  return out;
}

struct Certificate {
  double objective, gap;
};

// Objective and duality gap, given an upper bound max_cr ≥ max_j (C r)_j. The
// dual point is the residual 2r scaled into {ν : Cν ≤ λ} and then to its best
// multiple.
Certificate certificate(const Problem& pb, const Residual& rs, double max_cr) {
  const double xi = 2.0 * max_cr;
  double scale = rs.rr > 0 ? std::max(0.0, rs.rz / rs.rr) : 0.0;
  if (xi > 0) scale = std::min(scale, pb.l1 / xi);
  const double primal = rs.rr + pb.l1 * rs.l1w, dual = 2 * scale * rs.rz - scale * scale * rs.rr;
  return {primal, std::max(0.0, primal - dual)};
}

bool converged(const Certificate& ct, double tol) { return ct.gap <= tol * std::max(ct.objective, 1e-30); }

// max_j (C·r)_j from an fp32 GEMM row cr (chunk maxima `maxes`) whose entries
// are within slack of c_j·r: the entries near the top are recomputed in
// float64 (the gap needs the maximum to better than fp32's d·ε relative
// error on a dot product).
double max_similarity(const Problem& pb, const float* cr, const std::vector<float>& maxes, const double* r, double slack,
                      std::vector<int32_t>& idx) {
  const float top = *std::max_element(maxes.begin(), maxes.end());
  entries_at_least(cr, pb.c, maxes, float(top - 2 * slack), size_t(pb.c), idx);
  double best = -INFINITY;
  for (int32_t j : idx) best = std::max(best, dot(pb.row(j), r, pb.d));  // a handful: the ties at the top
  return best;
}

// out[m×c] = A[m×d] · Cᵀ (similarities of m vectors with every concept).
void times_ct(const Problem& pb, const float* A, int64_t m, float* out) {
  sgemm(false, true, m, pb.c, pb.d, 1.0f, A, pb.d, pb.C, pb.d, 0.0f, out, pb.c);
}

// ---- the working-set solver ----------------------------------------------------

constexpr int64_t kBlockRows = 512;   // samples per block: one GEMM of block × c × d
constexpr size_t kInitialSet = 40;    // working set seeded with the largest similarities
constexpr size_t kMinGrowth = 16;     // a round adds max(kMinGrowth, set size) violators
constexpr size_t kRowCandidates = 512;  // a check from an older GEMM row recomputes at most this many atoms
constexpr size_t kMaxColumnBytes = 256 << 10;  // a sample's Gram columns beyond this are formed again each round

// One sample's working set: atoms x.idx with weights x.val, h_a = c_a·z − λ/2.
// Its Gram is kept for the atoms that have been free (a "column" each, formed
// when the atom is first freed and extended as the set grows): approx, their
// fp32 dot products with every atom of the set (stride size()), prices the
// fixed atoms; exact, the float64 ones among those atoms (stride ncols),
// builds the Cholesky factor. r is the residual at x; gemm_r the residual at
// which the sample's latest full-dictionary GEMM row (Scratch::sim, chunk
// maxima row_max) was exact up to gemm_err per entry.
struct WorkingSet {
  SparseRow x;
  std::vector<double> h, exact, r, gemm_r;
  std::vector<float> approx, row_max;
  std::vector<int32_t> slot, owner;  // slot[a]: column of atom a, or -1; owner[s]: atom of column s
  int ncols = 0;
  double gemm_err = 0;
  Residual res;
  std::vector<std::pair<double, int32_t>> violators;  // from the latest check: c_j·r, atom j
  int size() const { return static_cast<int>(x.idx.size()); }
  void clear() {
    x.idx.clear(), x.val.clear(), h.clear();
    clear_columns();
  }
  void clear_columns() {
    exact.clear(), approx.clear(), owner.clear(), slot.assign(x.idx.size(), -1);
    ncols = 0;
  }
  // Large sets (small λ: hundreds of atoms in the support) would keep
  // megabytes per sample across a whole block; theirs are dropped instead.
  void limit_columns() {
    if (approx.size() * sizeof(float) + exact.size() * sizeof(double) <= kMaxColumnBytes) return;
    std::vector<float>().swap(approx);
    std::vector<double>().swap(exact);
    clear_columns();
  }
};

// Buffers of the per-sample solves, kept by each worker.
struct SetBuffers {
  std::vector<double> L, x, y, u, g, zd, row, exact, dots;
  std::vector<float> approx;
  std::vector<const float*> rows;
  std::vector<int> free, keep;
  std::vector<char> blocked;
};

// The problem restricted to one working set: min wᵀGw − 2hᵀw over w ≥ 0,
// G = A Aᵀ for the set's rows A, solved exactly by a primal active-set method
// (Lawson–Hanson) on a Cholesky factor of the free block, grown one row per
// freed atom and downdated for each atom a step fixes at zero. The factor is
// built from exact entries; fixed atoms are priced from the fp32 columns, and
// only those whose price is within the fp32 error of zero are priced
// exactly, from the residual.
class SetProblem {
 public:
  SetProblem(const Problem& pb, WorkingSet& ws, const float* z, SetBuffers& b) : pb_(pb), ws_(ws), z_(z), b_(b) {}

  // Appends atoms at weight 0: their h, and their entries in the columns formed so far.
  void extend(const std::vector<int32_t>& add) {
    const int p = ws_.size(), q = p + static_cast<int>(add.size());
    ws_.x.idx.insert(ws_.x.idx.end(), add.begin(), add.end());
    ws_.x.val.resize(q, 0.0), ws_.slot.resize(q, -1), ws_.h.resize(q);
    b_.approx.resize(size_t(ws_.ncols) * q);
    for (int s = 0; s < ws_.ncols; ++s) std::copy_n(ws_.approx.data() + size_t(s) * p, p, b_.approx.data() + size_t(s) * q);
    b_.zd.assign(z_, z_ + pb_.d);
    rows_of(p, q);
    dots(b_.zd.data(), b_.rows.data(), q - p, pb_.d, ws_.h.data() + p);
    for (int a = p; a < q; ++a) ws_.h[a] -= pb_.l1 / 2;
    for (int s = 0; s < ws_.ncols; ++s)
      dots32(atom(ws_.owner[s]), b_.rows.data(), q - p, pb_.d, b_.approx.data() + size_t(s) * q + p);
    ws_.approx.swap(b_.approx);
  }

  // Minimises over the set from the weights in ws.x (feasible), leaving the
  // residual at the solution in ws.r, ws.res.
  void solve() {
    const int p = ws_.size();
    b_.L.resize(size_t(p) * p), b_.x.resize(p), b_.y.resize(p), b_.g.resize(p), b_.blocked.assign(p, 0);
    double scale = 1;
    for (double h : ws_.h) scale = std::max(scale, std::fabs(h));
    kkt_eps_ = 1e-13 * scale;
    b_.free.clear();
    for (int a = 0; a < p; ++a)
      if (w(a) > 0) b_.free.push_back(a);
    refactor();
    int just_added = -1;
    for (int iter = 0; iter < 10 * p + 50; ++iter) {
      solve_free();
      if (step_blocked(just_added)) {
        just_added = -1;
        continue;
      }
      for (size_t f = 0; f < b_.free.size(); ++f) w(b_.free[f]) = b_.x[f];
      const int j = most_violating();
      if (j < 0) return;
      if (!add(j)) b_.blocked[j] = 1;
      just_added = j;
    }
    ws_.res = residual(pb_, z_, ws_.x, ws_.r.data());  // the iteration limit: where it stopped
  }

 private:
  const float* atom(int a) const { return pb_.row(ws_.x.idx[a]); }
  double& w(int a) { return ws_.x.val[a]; }
  double exact(int a, int b) const { return ws_.exact[size_t(ws_.slot[a]) * ws_.ncols + ws_.slot[b]]; }

  // b_.rows: the rows of atoms [a0, a1) of the set.
  void rows_of(int a0, int a1) {
    b_.rows.clear();
    for (int a = a0; a < a1; ++a) b_.rows.push_back(atom(a));
  }

  // Atom a's column: fp32 entries with the whole set, float64 ones with the
  // atoms that have columns.
  void form_column(int a) {
    if (ws_.slot[a] >= 0) return;
    const int p = ws_.size(), s = ws_.ncols, n = s + 1;
    ws_.slot[a] = s, ws_.owner.push_back(a), ws_.ncols = n;
    ws_.approx.resize(size_t(n) * p);
    rows_of(0, p);
    dots32(atom(a), b_.rows.data(), p, pb_.d, ws_.approx.data() + size_t(s) * p);
    b_.exact.resize(size_t(n) * n);
    for (int t = 0; t < s; ++t) std::copy_n(ws_.exact.data() + size_t(t) * s, s, b_.exact.data() + size_t(t) * n);
    b_.row.assign(atom(a), atom(a) + pb_.d);
    b_.rows.clear();
    for (int t = 0; t < n; ++t) b_.rows.push_back(atom(ws_.owner[t]));
    b_.dots.resize(n);
    dots(b_.row.data(), b_.rows.data(), n, pb_.d, b_.dots.data());
    for (int t = 0; t < n; ++t) b_.exact[size_t(t) * n + s] = b_.exact[size_t(s) * n + t] = b_.dots[t];
    ws_.exact.swap(b_.exact);
  }

  // Row free.size() of L for atom j; false when G_jj is (numerically) dependent.
  bool add(int j) {
    form_column(j);
    const int f = static_cast<int>(b_.free.size()), p = ws_.size();
    double dd = exact(j, j);
    for (int a = 0; a < f; ++a) {
      double v = exact(j, b_.free[a]);
      const double* la = b_.L.data() + size_t(a) * p;
      for (int c = 0; c < a; ++c) v -= la[c] * b_.y[c];
      b_.y[a] = v / la[a];
      dd -= b_.y[a] * b_.y[a];
    }
    if (!(dd > 1e-10 * exact(j, j))) return false;
    std::copy_n(b_.y.data(), f, b_.L.data() + size_t(f) * p);
    b_.L[size_t(f) * p + f] = std::sqrt(dd);
    b_.free.push_back(j);
    return true;
  }

  void refactor() {
    b_.keep.swap(b_.free);
    b_.free.clear();
    for (int j : b_.keep)
      if (!add(j)) w(j) = 0, b_.blocked[j] = 1;
  }

  // x = G_FF⁻¹ h_F by the two triangular solves.
  void solve_free() {
    const int f = static_cast<int>(b_.free.size());
    for (int a = 0; a < f; ++a) b_.x[a] = ws_.h[b_.free[a]];
    cholesky_solve(b_.L.data(), ws_.size(), f, b_.x.data());
  }

  // When the unconstrained solution leaves the orthant, moves w towards it as
  // far as feasibility allows and fixes the atoms that reach zero.
  bool step_blocked(int just_added) {
    const auto& free = b_.free;
    auto ratio = [&](size_t a) {
      const double wa = w(free[a]);
      return wa <= 0 ? 0.0 : wa / (wa - b_.x[a]);
    };
    double alpha = 1;
    bool blocked = false;
    for (size_t a = 0; a < free.size(); ++a)
      if (b_.x[a] <= 0) blocked = true, alpha = std::min(alpha, ratio(a));
    if (!blocked) return false;
    for (size_t a = free.size(); a-- > 0;) {  // from the back: removing shifts the later positions
      const int j = free[a];
      const bool limiting = b_.x[a] <= 0 && ratio(a) <= alpha;  // exactly zero, not a rounding residue
      w(j) = limiting ? 0.0 : std::max(0.0, w(j) + alpha * (b_.x[a] - w(j)));
      if (w(j) > 0) continue;
      remove(a);
      if (j == just_added) b_.blocked[j] = 1;  // added, yet not wanted: numerically tied
    }
    return true;
  }

  // Drops position k of the free set from the factor in O(f²): the rows
  // below k lose their k-th entry, and the block they form takes back, as a
  // rank-one update, what that entry carried.
  void remove(size_t k) {
    auto& free = b_.free;
    const size_t f = free.size(), p = ws_.size();
    double* L = b_.L.data();
    auto& u = b_.u;
    u.resize(f);
    for (size_t j = k + 1; j < f; ++j) {
      double* row = L + j * p;
      u[j - 1] = row[k];
      std::copy(row, row + k, L + (j - 1) * p);
      std::copy(row + k + 1, row + j + 1, L + (j - 1) * p + k);
    }
    free.erase(free.begin() + k);
    for (size_t i = k; i + 1 < f; ++i) {
      double& lii = L[i * p + i];
      const double r = std::hypot(lii, u[i]), c = r / lii, s = u[i] / lii;
      lii = r;
      for (size_t j = i + 1; j + 1 < f; ++j) {
        double& lji = L[j * p + i];
        lji = (lji + s * u[j]) / c;
        u[j] = c * u[j] - s * lji;
      }
    }
  }

  // The fixed atom with the most negative gradient (Gw − h)_a, or -1 at a KKT
  // point. Prices from the fp32 columns are within tau of the exact ones, so
  // one below −tau is violating; when none is, the prices that cannot settle
  // the sign are recomputed exactly from the residual: g_a = λ/2 − c_a·r.
  int most_violating() {
    const int p = ws_.size();
    double l1w = 0;
    for (int a = 0; a < p; ++a) b_.g[a] = -ws_.h[a];
    for (int k : b_.free) {
      const float* col = ws_.approx.data() + size_t(ws_.slot[k]) * p;
      l1w += w(k);
      for (int a = 0; a < p; ++a) b_.g[a] += w(k) * col[a];
    }
    const double tau = pb_.fp32_slack(pb_.max_norm) * l1w;
    int best = -1;
    for (int a = 0; a < p; ++a)
      if (w(a) <= 0 && !b_.blocked[a] && (best < 0 || b_.g[a] < b_.g[best])) best = a;
    if (best >= 0 && b_.g[best] < -tau) return best;
    ws_.res = residual(pb_, z_, ws_.x, ws_.r.data());
    best = -1;
    double best_g = -kkt_eps_;
    for (int a = 0; a < p; ++a) {
      if (w(a) > 0 || b_.blocked[a] || b_.g[a] >= tau) continue;
      const double g = pb_.l1 / 2 - dot(atom(a), ws_.r.data(), pb_.d);
      if (g < best_g) best_g = g, best = a;
    }
    return best;
  }

  const Problem& pb_;
  WorkingSet& ws_;
  const float* z_;
  SetBuffers& b_;
  double kkt_eps_ = 0;
};

// Grows v to at least n elements, never shrinking it: growing again within
// the capacity would zero the tail each time.
template <typename T>
void at_least_size(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

// Per-worker buffers, sized for one block, kept across blocks and calls. sim
// holds Cz for the block, then each sample's latest GEMM row; CR takes a
// GEMM's rows; the rest serve the working-set solver.
struct Scratch {
  std::vector<float> Z, sim, R, CR, maxes, tmp;
  std::vector<double> rd, vals;
  std::vector<const float*> rows;
  std::vector<char> mark;
  std::vector<int32_t> idx, add;
  std::vector<WorkingSet> ws;
  SetBuffers set;
  void size(int64_t m, int64_t c, int64_t d) {
    at_least_size(Z, m * d), at_least_size(sim, m * c), at_least_size(R, m * d);
    mark.assign(c, 0), idx.reserve(c);
  }
};

// Workers' buffers (tens of MB each) outlive a call: first touches of fresh
// pages cost more than the solve itself on VMs with slow page faults.
class ScratchPool {
 public:
  std::unique_ptr<Scratch> take() {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.empty()) return std::make_unique<Scratch>();
    auto s = std::move(free_.back());
    free_.pop_back();
    return s;
  }
  void give(std::unique_ptr<Scratch> s) {
    std::lock_guard<std::mutex> lock(mu_);
    if (int(free_.size()) < compute_threads()) free_.push_back(std::move(s));
  }

 private:
  std::mutex mu_;
  std::vector<std::unique_ptr<Scratch>> free_;
};

ScratchPool& scratch_pool() {
  static ScratchPool pool;
  return pool;
}

// Runs fn(r0, m, scratch) over blocks of samples on the pool, advancing progress per block.
void for_blocks(const Problem& pb, Progress& progress, const std::function<void(int64_t, int64_t, Scratch&)>& fn) {
  const int64_t n = pb.Z.rows;
  const int64_t per = std::max<int64_t>(1, (n + compute_threads() - 1) / compute_threads());
  const int64_t rows = std::min(kBlockRows, per), blocks = (n + rows - 1) / rows;
  std::vector<std::unique_ptr<Scratch>> scratch(parallel_workers(blocks));
  for (auto& s : scratch) s = scratch_pool().take();
  parallel_for(blocks, [&](int64_t b, int worker) {
    progress.check();
    int64_t r0 = b * rows, m = std::min(rows, n - r0);
    Scratch& s = *scratch[worker];
    s.size(m, pb.c, pb.d);
    rows_to_f32(pb.Z, r0, m, s.Z.data());
    fn(r0, m, s);
    progress.advance(m);
  });  // on an exception the buffers are dropped: they may be mid-update
  for (auto& s : scratch) scratch_pool().give(std::move(s));
}

// Objective and duality gap of the weights w[a] of block rows rows[a], on the
// full dictionary (one GEMM for all of them).
void certify(const Problem& pb, const float* Zb, const std::vector<int32_t>& rows,
             const std::vector<const SparseRow*>& w, Scratch& s, Certificate* out) {
  const int64_t c = pb.c, d = pb.d, k = static_cast<int64_t>(rows.size());
  at_least_size(s.rd, k * d);
  std::vector<Residual> rs(k);
  for (int64_t a = 0; a < k; ++a) {
    rs[a] = residual(pb, Zb + rows[a] * d, *w[a], s.rd.data() + a * d);
    std::copy_n(s.rd.data() + a * d, d, s.R.data() + a * d);
  }
  times_ct(pb, s.R.data(), k, s.sim.data());
  for (int64_t a = 0; a < k; ++a) {
    const float* cr = s.sim.data() + a * c;
    chunk_maxima(cr, c, s.maxes);
    const double slack = pb.fp32_slack(std::sqrt(rs[a].rr));
    out[a] = certificate(pb, rs[a], max_similarity(pb, cr, s.maxes, s.rd.data() + a * d, slack, s.idx));
  }
}

// Per block: screening from Cz seeds each sample's working set; then rounds
// of (exact solve on the set, full-dictionary check, growth by the most
// violating atoms) until the relative duality gap is below tol. A sample's
// check reuses its latest GEMM row while its residual has moved little
// since: |c_j·r − row_j| ≤ gemm_err + ‖c_j‖·‖r − gemm_r‖, so only the atoms
// whose row entry is within that of λ/2 are recomputed (exactly, in
// float64); the samples with too many of them join one GEMM.
class WorkingSetSolver {
 public:
  WorkingSetSolver(const Problem& pb, const SpliceOptions& opt, Scratch& s) : pb_(pb), opt_(opt), s_(s) {}

  void run(int64_t m, const float* warm, float* W, Certificate* cert, int32_t* rounds, Progress& progress) {
    const int64_t c = pb_.c;
    times_ct(pb_, s_.Z.data(), m, s_.sim.data());
    if (s_.ws.size() < size_t(m)) s_.ws.resize(m);
    const int max_rounds = opt_.max_iter > 0 ? opt_.max_iter : 200;
    std::vector<int32_t> pending, checked, next_pending, next_checked;  // awaiting a GEMM row, or checked
    for (int64_t i = 0; i < m; ++i) start(i, warm ? warm + i * c : nullptr), step(i, cert[i], pending, checked);
    // A sample goes from its check straight to its next solve and check,
    // while its rows are in cache.
    for (int round = 1; !pending.empty() || !checked.empty(); ++round) {
      progress.check();
      next_pending.clear(), next_checked.clear();
      auto advance = [&](int32_t i, const float* gemm_row) {
        rounds[i] = round;
        if (converged(cert[i], opt_.tol) || round == max_rounds) return;
        if (gemm_row) adopt(i, gemm_row);
        if (grow(i)) step(i, cert[i], next_pending, next_checked);
      };
      gemm_rows(pending);
      for (size_t a = 0; a < pending.size(); ++a) {
        const float* row = s_.CR.data() + a * c;
        cert[pending[a]] = check_fresh(pending[a], row);
        advance(pending[a], row);
      }
      for (int32_t i : checked) advance(i, nullptr);
      pending.swap(next_pending), checked.swap(next_checked);
    }
    for (int64_t i = 0; i < m; ++i) {  // each output row written once
      const SparseRow& x = s_.ws[i].x;
      float* row = W + i * c;
      std::memset(row, 0, sizeof(float) * c);
      for (size_t k = 0; k < x.idx.size(); ++k) row[x.idx[k]] = float(x.val[k]);
    }
  }

 private:
  const float* z(int64_t i) const { return s_.Z.data() + i * pb_.d; }
  float* sim(int64_t i) { return s_.sim.data() + i * pb_.c; }
  SetProblem set(int64_t i) { return SetProblem(pb_, s_.ws[i], z(i), s_.set); }

  // The concepts most similar to z among those within a factor 2 of
  // violating KKT at w = 0 (2(Cz)_j > λ/2), and the warm start's support.
  // The screening row is the sample's first GEMM row, at r = z.
  void start(int64_t i, const float* warm) {
    WorkingSet& ws = s_.ws[i];
    ws.clear();
    chunk_maxima(sim(i), pb_.c, ws.row_max);
    auto& add = s_.add;
    top_above(sim(i), pb_.c, ws.row_max, std::nextafter(float(pb_.l1 / 4), INFINITY), kInitialSet, s_.tmp, add);
    if (warm) {
      const size_t seeds = add.size();
      for (int32_t j : add) s_.mark[j] = 1;
      for (int64_t j = 0; j < pb_.c; ++j)
        if (warm[j] > 0 && !s_.mark[j]) add.push_back(int32_t(j));
      for (size_t t = 0; t < seeds; ++t) s_.mark[add[t]] = 0;
    }
    set(i).extend(add);
    for (int a = 0; warm && a < ws.size(); ++a) ws.x.val[a] = warm[ws.x.idx[a]];
    ws.r.resize(pb_.d);
    ws.gemm_r.assign(z(i), z(i) + pb_.d);
    ws.gemm_err = pb_.fp32_slack(std::sqrt(std::inner_product(ws.gemm_r.begin(), ws.gemm_r.end(), ws.gemm_r.begin(), 0.0)));
  }

  // Solves sample i on its set, then checks it from its GEMM row if it can,
  // else queues it for the next GEMM.
  void step(int64_t i, Certificate& cert, std::vector<int32_t>& pending, std::vector<int32_t>& checked) {
    set(i).solve();
    s_.ws[i].limit_columns();
    (check_from_row(i, cert) ? checked : pending).push_back(int32_t(i));
  }

  // The check from the sample's latest GEMM row, when at most kRowCandidates
  // atoms could reach λ/2: their c_j·r in float64 give the maximum (λ/2
  // bounds every other atom) and the violators. False when more could.
  bool check_from_row(int64_t i, Certificate& cert) {
    WorkingSet& ws = s_.ws[i];
    double moved = 0;
    for (int64_t t = 0; t < pb_.d; ++t) moved += (ws.r[t] - ws.gemm_r[t]) * (ws.r[t] - ws.gemm_r[t]);
    const double half = pb_.l1 / 2, err = ws.gemm_err + pb_.max_norm * std::sqrt(moved);
    auto& idx = s_.idx;
    if (!entries_at_least(sim(i), pb_.c, ws.row_max, std::nextafter(float(half - err), -INFINITY), kRowCandidates, idx))
      return false;
    s_.rows.clear();
    for (int32_t j : idx) s_.rows.push_back(pb_.row(j));
    at_least_size(s_.vals, idx.size());
    dots(ws.r.data(), s_.rows.data(), int64_t(idx.size()), pb_.d, s_.vals.data());
    double best = half;
    ws.violators.clear();
    mark(ws, 1);
    for (size_t e = 0; e < idx.size(); ++e) {
      best = std::max(best, s_.vals[e]);
      if (s_.vals[e] > half && !s_.mark[idx[e]]) ws.violators.push_back({s_.vals[e], idx[e]});
    }
    mark(ws, 0);
    cert = certificate(pb_, ws.res, best);
    return true;
  }

  // Flags (1) or unflags (0) the set's atoms in Scratch::mark.
  void mark(const WorkingSet& ws, char v) {
    for (int32_t j : ws.x.idx) s_.mark[j] = v;
  }

  // GEMM rows of the samples `rows`, into Scratch::CR.
  void gemm_rows(const std::vector<int32_t>& rows) {
    const int64_t k = static_cast<int64_t>(rows.size()), d = pb_.d;
    if (k == 0) return;
    at_least_size(s_.CR, k * pb_.c);
    for (int64_t a = 0; a < k; ++a) std::copy_n(s_.ws[rows[a]].r.data(), d, s_.R.data() + a * d);
    times_ct(pb_, s_.R.data(), k, s_.CR.data());
  }

  // The check from a fresh GEMM row: its maximum refined in float64; as
  // violators, its largest entries above λ/2 (less their error) outside the
  // set, as many as grow() may add. Leaves the row's chunk maxima in s_.maxes.
  Certificate check_fresh(int64_t i, const float* row) {
    WorkingSet& ws = s_.ws[i];
    const double err = pb_.fp32_slack(std::sqrt(ws.res.rr));
    chunk_maxima(row, pb_.c, s_.maxes);
    const double best = max_similarity(pb_, row, s_.maxes, ws.r.data(), err, s_.idx);
    auto& idx = s_.idx;
    top_above(row, pb_.c, s_.maxes, std::nextafter(float(pb_.l1 / 2 - err), -INFINITY), growth(ws) + ws.size(), s_.tmp, idx);
    ws.violators.clear();
    mark(ws, 1);
    for (int32_t j : idx)
      if (!s_.mark[j]) ws.violators.push_back({row[j], j});
    mark(ws, 0);
    return certificate(pb_, ws.res, best);
  }

  // Makes the fresh GEMM row just checked sample i's row for later checks.
  void adopt(int64_t i, const float* row) {
    WorkingSet& ws = s_.ws[i];
    std::copy_n(row, pb_.c, sim(i));
    ws.row_max = s_.maxes;
    ws.gemm_r = ws.r;
    ws.gemm_err = pb_.fp32_slack(std::sqrt(ws.res.rr));
  }

  static size_t growth(const WorkingSet& ws) { return std::max(kMinGrowth, ws.x.idx.size()); }

  // Adds the most violating atoms, at most doubling the set. False when there are none.
  bool grow(int64_t i) {
    WorkingSet& ws = s_.ws[i];
    auto& v = ws.violators;
    if (v.empty()) return false;
    const size_t k = std::min(v.size(), growth(ws));
    std::partial_sort(v.begin(), v.begin() + k, v.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    auto& add = s_.add;
    add.clear();
    for (size_t t = 0; t < k; ++t) add.push_back(v[t].second);
    set(i).extend(add);
    return true;
  }

  const Problem& pb_;
  const SpliceOptions& opt_;
  Scratch& s_;
};

// ---- full-dictionary first-order solvers ------------------------------------

// CᵀC (d×d) in float64, from one wide fp32 GEMM.
std::vector<double> gram_dd(const Problem& pb) {
  const int64_t d = pb.d;
  std::vector<float> m(d * d);
  {
    WideBlas guard(compute_threads());
    sgemm(true, false, d, d, pb.c, 1.0f, pb.C, d, pb.C, d, 0.0f, m.data(), d);
  }
  return std::vector<double>(m.begin(), m.end());
}

// (ρ/2·I + CᵀC)⁻¹ in fp32: with Woodbury, ADMM's c×c system (2CCᵀ + ρI)x = v
// becomes x = (v − C K⁻¹ Cᵀ v)/ρ.
std::vector<float> admm_kernel_inverse(const Problem& pb, double rho) {
  const int64_t d = pb.d;
  std::vector<double> K = gram_dd(pb);
  for (int64_t t = 0; t < d; ++t) K[t * d + t] += rho / 2;
  for (int64_t j = 0; j < d; ++j) {  // Cholesky in place (lower)
    for (int64_t k = 0; k < j; ++k) K[j * d + j] -= K[j * d + k] * K[j * d + k];
    require(K[j * d + j] > 0, "admm: ρ/2·I + CᵀC is not positive definite (ρ = " + std::to_string(rho) + ")");
    K[j * d + j] = std::sqrt(K[j * d + j]);
    for (int64_t i = j + 1; i < d; ++i) {
      double v = K[i * d + j];
      for (int64_t k = 0; k < j; ++k) v -= K[i * d + k] * K[j * d + k];
      K[i * d + j] = v / K[j * d + j];
    }
  }
  std::vector<float> inv(d * d);
  std::vector<double> y(d);
  for (int64_t col = 0; col < d; ++col) {
    std::fill(y.begin(), y.end(), 0.0);
    y[col] = 1.0;
    cholesky_solve(K.data(), d, d, y.data());
    for (int64_t i = 0; i < d; ++i) inv[i * d + col] = float(y[i]);
  }
  return inv;
}

int default_iterations(const SpliceOptions& opt, int fallback) { return opt.max_iter > 0 ? opt.max_iter : fallback; }

// Certifies the rows `active` of the dense block X (stride c); returns the ones
// not yet converged.
template <typename T>
std::vector<int32_t> certify_active(const Problem& pb, const SpliceOptions& opt, Scratch& s, const T* X,
                                    const std::vector<int32_t>& active, int it, Certificate* cert, int32_t* iters) {
  std::vector<SparseRow> w;
  std::vector<const SparseRow*> ptr;
  for (int32_t i : active) w.push_back(sparse_row(X + i * pb.c, pb.c));
  for (auto& r : w) ptr.push_back(&r);
  std::vector<Certificate> ct(active.size());
  certify(pb, s.Z.data(), active, ptr, s, ct.data());
  std::vector<int32_t> next;
  for (size_t a = 0; a < active.size(); ++a) {
    cert[active[a]] = ct[a], iters[active[a]] = it;
    if (!converged(ct[a], opt.tol)) next.push_back(active[a]);
  }
  return next;
}

// FISTA on the full dictionary with gradient-based adaptive restart
// (O'Donoghue & Candès), all samples of the block through shared float64
// GEMMs (fp32 gradients stall the duality gap near 1e-5).
void fista_block(const Problem& pb, const SpliceOptions& opt, double L, int64_t m, float* W, Certificate* cert,
                 int32_t* iters, Scratch& s, Progress& progress) {
  const int64_t c = pb.c, d = pb.d;
  std::vector<double> X(W, W + m * c), Y(X), U(m * d), CR(m * c), prev(c), t(m, 1.0);
  std::vector<int32_t> active(m);
  std::iota(active.begin(), active.end(), 0);
  const int max_iter = default_iterations(opt, 20000);
  for (int it = 1; it <= max_iter && !active.empty(); ++it) {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, d, c, 1.0, Y.data(), c, pb.Cd.data(), d, 0.0, U.data(), d);
    for (int64_t k = 0; k < m * d; ++k) U[k] = s.Z[k] - U[k];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, c, d, 1.0, U.data(), d, pb.Cd.data(), d, 0.0, CR.data(), c);
    for (int32_t i : active) {
      double *x = X.data() + i * c, *y = Y.data() + i * c;
      const double* cr = CR.data() + i * c;
      double restart = 0;
      for (int64_t j = 0; j < c; ++j) {
        double xn = std::max(0.0, y[j] + (2 * cr[j] - pb.l1) / L);
        restart += (y[j] - xn) * (xn - x[j]);
        prev[j] = x[j], x[j] = xn;
      }
      double tn = restart > 0 ? 1.0 : (1 + std::sqrt(1 + 4 * t[i] * t[i])) / 2, mom = restart > 0 ? 0.0 : (t[i] - 1) / tn;
      t[i] = tn;
      for (int64_t j = 0; j < c; ++j) y[j] = x[j] + mom * (x[j] - prev[j]);
    }
    if (it % 10 == 0 || it == max_iter) {
      active = certify_active(pb, opt, s, X.data(), active, it, cert, iters);
      progress.check();
    }
  }
  std::copy(X.begin(), X.begin() + m * c, W);
}

// The reference's ADMM (x-update by the Woodbury form of its Cholesky solve,
// soft-threshold z-update, scaled dual u), stopping when every sample of the
// block has primal and dual residuals below tol.
void admm_block(const Problem& pb, const SpliceOptions& opt, const std::vector<float>& Kinv, int64_t m, float* W,
                Certificate* cert, int32_t* iters, Scratch& s, Progress& progress) {
  const int64_t c = pb.c, d = pb.d;
  const float rho = float(opt.rho), thr = float(pb.l1 / opt.rho);
  std::vector<float> S(m * c), u(m * c, 0.0f), v(m * c), T(m * d), T2(m * d);
  times_ct(pb, s.Z.data(), m, S.data());
  const int max_iter = default_iterations(opt, 2000);
  int it = 1;
  for (; it <= max_iter; ++it) {
    for (int64_t k = 0; k < m * c; ++k) v[k] = 2 * S[k] + rho * (W[k] - u[k]);
    sgemm(false, false, m, d, c, 1.0f, v.data(), c, pb.C, d, 0.0f, T.data(), d);
    sgemm(false, false, m, d, d, 1.0f, T.data(), d, Kinv.data(), d, 0.0f, T2.data(), d);
    sgemm(false, true, m, c, d, -1.0f, T2.data(), d, pb.C, d, 1.0f, v.data(), c);  // v ← v − C K⁻¹ Cᵀ v
    double prim = 0, dual = 0;
    for (int64_t i = 0; i < m; ++i) {
      double p2 = 0, d2 = 0;
      for (int64_t j = i * c; j < (i + 1) * c; ++j) {
        float x = v[j] / rho, zn = std::max(0.0f, x + u[j] - thr);
        u[j] += x - zn;
        p2 += double(x - zn) * (x - zn), d2 += double(zn - W[j]) * (zn - W[j]);
        W[j] = zn;
      }
      prim = std::max(prim, std::sqrt(p2)), dual = std::max(dual, double(rho) * std::sqrt(d2));
    }
    if (prim < opt.tol && dual < opt.tol) break;
    if (it % 10 == 0) progress.check();
  }
  std::vector<int32_t> all(m);
  std::iota(all.begin(), all.end(), 0);
  certify_active(pb, opt, s, W, all, std::min(it, max_iter), cert, iters);
}

void solve_problem(Problem& pb, const SpliceOptions& opt, const float* warm, const SpliceOutput& out,
                   Progress& progress) {
  const int64_t c = pb.c;
  std::vector<Certificate> cert(pb.Z.rows);
  std::vector<int32_t> iters(pb.Z.rows);
  SpliceSolver solver = opt.solver == SpliceSolver::Auto ? SpliceSolver::WorkingSet : opt.solver;
  double L = 0;
  std::vector<float> Kinv;
  if (solver == SpliceSolver::Fista) {
    L = 2 * top_eigenvalue(gram_dd(pb), pb.d);
    pb.Cd.assign(pb.C, pb.C + c * pb.d);
  }
  if (solver == SpliceSolver::Admm) Kinv = admm_kernel_inverse(pb, opt.rho);
  for_blocks(pb, progress, [&](int64_t r0, int64_t m, Scratch& s) {
    float* W = out.weights + r0 * c;
    Certificate* ct = cert.data() + r0;
    int32_t* it = iters.data() + r0;
    const float* warm_rows = warm ? warm + r0 * c : nullptr;
    if (solver == SpliceSolver::WorkingSet) {
      WorkingSetSolver(pb, opt, s).run(m, warm_rows, W, ct, it, progress);
      return;
    }
    if (warm_rows)
      std::memcpy(W, warm_rows, sizeof(float) * m * c);
    else
      std::memset(W, 0, sizeof(float) * m * c);
    if (solver == SpliceSolver::Fista)
      fista_block(pb, opt, L, m, W, ct, it, s, progress);
    else
      admm_block(pb, opt, Kinv, m, W, ct, it, s, progress);
  });
  for (int64_t i = 0; i < pb.Z.rows; ++i) {
    if (out.objective) out.objective[i] = cert[i].objective;
    if (out.gap) out.gap[i] = cert[i].gap;
    if (out.iterations) out.iterations[i] = iters[i];
  }
}

}  // namespace

void check_splice_options(const SpliceOptions& opt) {
  require(std::isfinite(opt.l1) && opt.l1 >= 0, "l1: expected a finite λ ≥ 0, got " + show(opt.l1));
  require(opt.tol > 0 && std::isfinite(opt.tol), "tol: expected a finite tolerance > 0, got " + show(opt.tol));
  require(opt.rho > 0 && std::isfinite(opt.rho), "rho: expected a finite ρ > 0, got " + show(opt.rho));
  require(opt.max_iter >= 0, "maxIter: expected ≥ 0 (0: the solver's default), got " + std::to_string(opt.max_iter));
}

double top_eigenvalue(const std::vector<double>& M, int64_t d) {
  std::vector<double> v(d), u(d);
  for (int64_t t = 0; t < d; ++t) v[t] = 1.0 + 0.01 * double(t % 7);
  double lambda = 0;
  for (int it = 0; it < 1000; ++it) {
    double n = std::sqrt(std::inner_product(v.begin(), v.end(), v.begin(), 0.0));
    for (auto& x : v) x /= n;
    cblas_dgemv(CblasRowMajor, CblasNoTrans, d, d, 1.0, M.data(), d, v.data(), 1, 0.0, u.data(), 1);
    double next = std::inner_product(u.begin(), u.end(), v.begin(), 0.0);
    v.swap(u);
    if (std::fabs(next - lambda) <= 1e-10 * next) return next * 1.01;
    lambda = next;
  }
  return lambda * 1.01;
}


void splice_solve(const MatrixView& dictionary, const MatrixView& samples, const SpliceOptions& opt,
                  const float* warm, const SpliceOutput& out, Progress& progress) {
  validate(dictionary, samples);
  check_splice_options(opt);
  progress.set_total(samples.rows);
  Problem pb(dictionary, samples, opt.l1);
  solve_problem(pb, opt, warm, out, progress);
}

double splice_l1_max(const MatrixView& dictionary, const MatrixView& samples) {
  validate(dictionary, samples);
  Problem pb(dictionary, samples, 0);
  std::vector<double> best(samples.rows, 0.0);
  Progress none;
  for_blocks(pb, none, [&](int64_t r0, int64_t m, Scratch& s) {
    times_ct(pb, s.Z.data(), m, s.sim.data());
    for (int64_t i = 0; i < m; ++i)
      best[r0 + i] = 2.0 * *std::max_element(s.sim.data() + i * pb.c, s.sim.data() + (i + 1) * pb.c);
  });
  return std::max(0.0, *std::max_element(best.begin(), best.end()));
}

std::vector<SplicePathPoint> splice_path(const MatrixView& dictionary, const MatrixView& samples,
                                         const SpliceOptions& opt, const SplicePathOptions& path,
                                         const SpliceOutput& out, Progress& progress) {
  require(std::isfinite(path.target_l0) && path.target_l0 >= 0 && path.target_l0 <= dictionary.rows,
          "targetL0: expected a mean l0 in [0, " + std::to_string(dictionary.rows) + "], got " + std::to_string(path.target_l0));
  require(path.l0_tol > 0, "l0Tol: expected > 0, got " + std::to_string(path.l0_tol));
  require(path.max_steps >= 1, "maxSteps: expected ≥ 1, got " + std::to_string(path.max_steps));
  check_splice_options(opt);
  const double l1_max = splice_l1_max(dictionary, samples);
  const int64_t n = samples.rows, c = dictionary.rows;
  progress.set_total(n * path.max_steps);
  std::vector<double> objective(n);
  std::vector<float> warm;
  std::vector<SplicePathPoint> points;
  double lo = l1_max * 1e-4, hi = l1_max;  // l0(hi) = 0 ≤ target ≤ l0(lo), typically
  auto solve_at = [&](double l1) {
    SpliceOptions o = opt;
    o.l1 = l1;
    Problem pb(dictionary, samples, l1);
    SpliceOutput so = out;
    so.objective = so.objective ? so.objective : objective.data();
    solve_problem(pb, o, warm.empty() ? nullptr : warm.data(), so, progress);
    double nnz = 0, obj = 0;
    for (int64_t k = 0; k < n * c; ++k) nnz += out.weights[k] > 0;
    for (int64_t i = 0; i < n; ++i) obj += so.objective[i];
    points.push_back({l1, nnz / double(n), obj / double(n)});
    warm.assign(out.weights, out.weights + n * c);
  };
  for (int step = 0; step < path.max_steps; ++step) {
    double l1 = std::sqrt(lo * hi);
    solve_at(l1);
    const double l0 = points.back().mean_l0;
    if (std::fabs(l0 - path.target_l0) <= path.l0_tol) break;
    (l0 > path.target_l0 ? lo : hi) = l1;
  }
  auto best = std::min_element(points.begin(), points.end(), [&](const SplicePathPoint& a, const SplicePathPoint& b) {
    return std::fabs(a.mean_l0 - path.target_l0) < std::fabs(b.mean_l0 - path.target_l0);
  });
  if (best != points.end() - 1) solve_at(best->l1);  // leave the closest λ's solution in out
  return points;
}

}  // namespace cl
