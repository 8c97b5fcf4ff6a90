#include "splice.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <numeric>

#include "blas.h"
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

constexpr int64_t kBlockRows = 512;  // samples per block: one GEMM of block × c × d
constexpr int kInitialSet = 40;      // working set seeded with the largest similarities

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
};

void validate(const MatrixView& dict, const MatrixView& samples, double l1) {
  require(dict.rows >= 1 && dict.cols >= 1, "dictionary: expected at least 1 concept of dimension ≥ 1, got " +
                                                 std::to_string(dict.rows) + "×" + std::to_string(dict.cols));
  require(samples.cols == dict.cols, "samples: expected dimension d = " + std::to_string(dict.cols) +
                                         " (the dictionary's), got " + std::to_string(samples.cols));
  require(std::isfinite(l1) && l1 >= 0, "l1: expected a finite λ ≥ 0, got " + std::to_string(l1));
  require_finite(dict, "dictionary");
  require_finite(samples, "samples");
}

// Per-worker buffers, sized for one block. sim holds Cz for the block, and
// later C·r of the rows being certified.
struct Scratch {
  std::vector<float> Z, sim, R;
  std::vector<char> mark;
  std::vector<int32_t> idx;
  void size(int64_t m, int64_t c, int64_t d) {
    Z.resize(m * d), sim.resize(m * c), R.resize(m * d);
    mark.assign(c, 0), idx.reserve(c);
  }
};

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

// out[m×c] = A[m×d] · Cᵀ (similarities of m vectors with every concept).
void times_ct(const Problem& pb, const float* A, int64_t m, float* out) {
  sgemm(false, true, m, pb.c, pb.d, 1.0f, A, pb.d, pb.C, pb.d, 0.0f, out, pb.c);
}

// max_j (C·r)_j: the fp32 GEMM row cr locates the candidates, which are
// recomputed in float64 (the gap needs this maximum to better than fp32's
// d·ε relative error on a dot product).
double max_similarity(const Problem& pb, const float* cr, const double* r, double r_norm) {
  const float top = *std::max_element(cr, cr + pb.c);
  const double slack = 2.0 * double(pb.d) * 6e-8 * pb.max_norm * r_norm;
  double best = -INFINITY;
  for (int64_t j = 0; j < pb.c; ++j) {
    if (cr[j] < top - slack) continue;
    const float* cj = pb.C + j * pb.d;
    double v = 0;
    for (int64_t t = 0; t < pb.d; ++t) v += cj[t] * r[t];
    best = std::max(best, v);
  }
  return best;
}

struct Certificate {
  double objective, gap;
};

// Objective (exact, in float64 over the support) and duality gap of the
// weights w[a] of block rows rows[a]. The dual point is the residual 2r scaled
// into {ν : Cν ≤ λ} and then to its best multiple; s.sim keeps C·r, one row per
// entry of `rows`.
void certify(const Problem& pb, const float* Zb, const std::vector<int32_t>& rows,
             const std::vector<const SparseRow*>& w, Scratch& s, Certificate* out) {
  const int64_t c = pb.c, d = pb.d;
  const int64_t k = static_cast<int64_t>(rows.size());
  std::vector<double> rd(k * d), rr(k), rz(k), l1w(k);
  for (int64_t a = 0; a < k; ++a) {
    const float* z = Zb + rows[a] * d;
    double* r = rd.data() + a * d;
    for (int64_t t = 0; t < d; ++t) r[t] = z[t];
    double sum = 0;
    for (size_t e = 0; e < w[a]->idx.size(); ++e) {
      const double wj = w[a]->val[e];
      const float* cj = pb.C + int64_t(w[a]->idx[e]) * d;
      sum += wj;
      for (int64_t t = 0; t < d; ++t) r[t] -= wj * cj[t];
    }
    double n2 = 0, dz = 0;
    for (int64_t t = 0; t < d; ++t) n2 += r[t] * r[t], dz += r[t] * z[t], s.R[a * d + t] = float(r[t]);
    rr[a] = n2, rz[a] = dz, l1w[a] = sum;
  }
  times_ct(pb, s.R.data(), k, s.sim.data());
  for (int64_t a = 0; a < k; ++a) {
    const float* cr = s.sim.data() + a * c;
    double xi = 2.0 * max_similarity(pb, cr, rd.data() + a * d, std::sqrt(rr[a]));
    double scale = rr[a] > 0 ? std::max(0.0, rz[a] / rr[a]) : 0.0;
    if (xi > 0) scale = std::min(scale, pb.l1 / xi);
    double primal = rr[a] + pb.l1 * l1w[a];
    double dual = 2 * scale * rz[a] - scale * scale * rr[a];
    out[a] = {primal, std::max(0.0, primal - dual)};
  }
}

bool converged(const Certificate& ct, double tol) { return ct.gap <= tol * std::max(ct.objective, 1e-30); }

// ---- the working-set solver ------------------------------------------------

// Minimises wᵀGw − 2hᵀw over w ≥ 0 exactly, G = AAᵀ (A: p×d rows), by a
// primal active-set method (Lawson–Hanson) with a Cholesky factor of the free
// block grown one row per added variable. Only the Gram columns of variables
// that become free are formed (p·d each), not all p². w holds a feasible warm
// start on entry.
class ActiveSetQP {
 public:
  void solve(const double* A, int64_t d, const double* h, int p, double* w) {
    A_ = A, d_ = d, h_ = h, p_ = p, w_ = w;
    L_.assign(size_t(p) * p, 0), x_.resize(p), y_.resize(p), blocked_.assign(p, 0);
    cols_.resize(size_t(p) * p), have_.assign(p, 0);
    double scale = 1;
    for (int j = 0; j < p; ++j) scale = std::max(scale, std::fabs(h[j]));
    const double kkt_eps = 1e-13 * scale;
    free_.clear();
    for (int j = 0; j < p; ++j)
      if (w[j] > 0) free_.push_back(j);
    refactor();
    int just_added = -1;
    for (int iter = 0; iter < 10 * p + 50; ++iter) {
      solve_free();
      if (!step_blocked(just_added)) {
        for (size_t a = 0; a < free_.size(); ++a) w_[free_[a]] = x_[a];
        int j = most_violating(kkt_eps);
        if (j < 0) return;
        if (!add(j)) blocked_[j] = 1;
        just_added = j;
      } else {
        just_added = -1;
      }
    }
  }

 private:
  // Row free_.size() of L for variable j; false when G_jj is (numerically) dependent.
  bool add(int j) {
    const int f = static_cast<int>(free_.size());
    const double* gj = column(j);
    double dd = gj[j];
    for (int a = 0; a < f; ++a) {
      double v = gj[free_[a]];
      for (int b = 0; b < a; ++b) v -= L_[a * p_ + b] * y_[b];
      y_[a] = v / L_[a * p_ + a];
      dd -= y_[a] * y_[a];
    }
    if (!(dd > 1e-10 * gj[j])) return false;
    for (int b = 0; b < f; ++b) L_[f * p_ + b] = y_[b];
    L_[f * p_ + f] = std::sqrt(dd);
    free_.push_back(j);
    return true;
  }

  void refactor() {
    std::vector<int> old;
    old.swap(free_);
    for (int j : old)
      if (!add(j)) w_[j] = 0, blocked_[j] = 1;
  }

  // x = G_FF⁻¹ h_F by the two triangular solves.
  void solve_free() {
    const int f = static_cast<int>(free_.size());
    for (int a = 0; a < f; ++a) x_[a] = h_[free_[a]];
    cholesky_solve(L_.data(), p_, f, x_.data());
  }

  // When the unconstrained solution leaves the orthant, moves w towards it as
  // far as feasibility allows and frees the variables that reach zero.
  bool step_blocked(int just_added) {
    auto ratio = [&](size_t a) {
      double wa = w_[free_[a]];
      return wa <= 0 ? 0.0 : wa / (wa - x_[a]);
    };
    double alpha = 1;
    bool blocked = false;
    for (size_t a = 0; a < free_.size(); ++a)
      if (x_[a] <= 0) blocked = true, alpha = std::min(alpha, ratio(a));
    if (!blocked) return false;
    std::vector<int> keep;
    for (size_t a = 0; a < free_.size(); ++a) {
      int j = free_[a];
      bool limiting = x_[a] <= 0 && ratio(a) <= alpha;  // exactly zero, not a rounding residue
      w_[j] = limiting ? 0.0 : std::max(0.0, w_[j] + alpha * (x_[a] - w_[j]));
      if (w_[j] > 0) keep.push_back(j);
      else if (j == just_added) blocked_[j] = 1;  // added, yet not wanted: numerically tied
    }
    free_.swap(keep);
    refactor();
    return true;
  }

  // The bound variable with the most negative gradient (Gw − h)_j, or -1 at a KKT point.
  int most_violating(double eps) const {
    int best = -1;
    double best_g = -eps;
    for (int j = 0; j < p_; ++j) {
      if (w_[j] > 0 || blocked_[j]) continue;
      double g = -h_[j];
      for (int k : free_) g += cols_[size_t(k) * p_ + j] * w_[k];
      if (g < best_g) best_g = g, best = j;
    }
    return best;
  }

  // Column j of G (= row j, G being symmetric), formed on first use.
  const double* column(int j) {
    double* g = cols_.data() + size_t(j) * p_;
    if (!have_[j]) cblas_dgemv(CblasRowMajor, CblasNoTrans, p_, d_, 1.0, A_, d_, A_ + j * d_, 1, 0.0, g, 1), have_[j] = 1;
    return g;
  }

  const double* A_ = nullptr;
  int64_t d_ = 0;
  const double* h_ = nullptr;
  double* w_ = nullptr;
  int p_ = 0;
  std::vector<double> L_, x_, y_, cols_;
  std::vector<char> have_;
  std::vector<int> free_;
  std::vector<char> blocked_;
};

// A sample's working set: dictionary rows (idx) and their weights (val).
using WorkingSet = SparseRow;

class WorkingSetSolver {
 public:
  WorkingSetSolver(const Problem& pb, const SpliceOptions& opt, Scratch& s) : pb_(pb), opt_(opt), s_(s) {}

  void run(int64_t m, const float* warm, float* W, Certificate* cert, int32_t* rounds, Progress& progress) {
    const int64_t c = pb_.c;
    times_ct(pb_, s_.Z.data(), m, s_.sim.data());
    std::vector<WorkingSet> ws(m);
    std::vector<int32_t> active(m);
    for (int64_t i = 0; i < m; ++i) seed(ws[i], warm ? warm + i * c : nullptr, s_.sim.data() + i * c), active[i] = int32_t(i);
    const int max_rounds = opt_.max_iter > 0 ? opt_.max_iter : 200;
    std::vector<Certificate> ct;
    std::vector<const SparseRow*> rows;
    for (int round = 1; round <= max_rounds && !active.empty(); ++round) {
      progress.check();
      rows.clear();
      for (int32_t i : active) solve(ws[i], s_.Z.data() + i * pb_.d), rows.push_back(&ws[i]);
      ct.resize(active.size());
      certify(pb_, s_.Z.data(), active, rows, s_, ct.data());
      std::vector<int32_t> next;
      for (size_t a = 0; a < active.size(); ++a) {
        int32_t i = active[a];
        cert[i] = ct[a], rounds[i] = round;
        if (!converged(ct[a], opt_.tol) && grow(ws[i], s_.sim.data() + a * c)) next.push_back(i);
      }
      active.swap(next);
    }
    for (int64_t i = 0; i < m; ++i) {  // each output row written once
      float* row = W + i * c;
      std::memset(row, 0, sizeof(float) * c);
      for (size_t k = 0; k < ws[i].idx.size(); ++k) row[ws[i].idx[k]] = float(ws[i].val[k]);
    }
  }

 private:
  // Warm-start support, then the concepts most similar to z among those
  // within a factor 2 of violating KKT at w = 0 (2(Cz)_j > λ/2).
  void seed(WorkingSet& ws, const float* warm, const float* sim) {
    const int64_t c = pb_.c;
    if (warm)
      for (int64_t j = 0; j < c; ++j)
        if (warm[j] > 0) ws.idx.push_back(int32_t(j)), ws.val.push_back(warm[j]), s_.mark[j] = 1;
    const float floor = float(pb_.l1 / 4);
    auto& idx = s_.idx;
    idx.clear();
    for (int64_t j = 0; j < c; ++j)
      if (sim[j] > floor && sim[j] > 0 && !s_.mark[j]) idx.push_back(int32_t(j));
    auto k = std::min<size_t>(kInitialSet, idx.size());
    if (k > 0)
      std::nth_element(idx.begin(), idx.begin() + (k - 1), idx.end(), [&](int32_t a, int32_t b) { return sim[a] > sim[b]; });
    for (size_t t = 0; t < k; ++t) ws.idx.push_back(idx[t]), ws.val.push_back(0);
    for (int32_t j : ws.idx) s_.mark[j] = 0;
  }

  // Exact solution on the working set (float64 Gram), written into the weights row.
  void solve(WorkingSet& ws, const float* z) {
    const int p = static_cast<int>(ws.idx.size());
    const int64_t d = pb_.d;
    if (p == 0) return;
    A_.resize(size_t(p) * d), h_.resize(p), zd_.assign(z, z + d);
    for (int k = 0; k < p; ++k) std::copy_n(pb_.C + int64_t(ws.idx[k]) * d, d, A_.data() + int64_t(k) * d);
    cblas_dgemv(CblasRowMajor, CblasNoTrans, p, d, 1.0, A_.data(), d, zd_.data(), 1, 0.0, h_.data(), 1);
    for (int k = 0; k < p; ++k) h_[k] -= pb_.l1 / 2;
    qp_.solve(A_.data(), d, h_.data(), p, ws.val.data());
  }

  // Adds the concepts outside the set that violate KKT (2(Cr)_j > λ), most
  // violating first, at most doubling the set. False when there are none.
  bool grow(WorkingSet& ws, const float* cr) {
    for (int32_t j : ws.idx) s_.mark[j] = 1;
    std::vector<int32_t> v;
    for (int64_t j = 0; j < pb_.c; ++j)
      if (!s_.mark[j] && 2.0 * cr[j] > pb_.l1) v.push_back(int32_t(j));
    for (int32_t j : ws.idx) s_.mark[j] = 0;
    size_t k = std::min(v.size(), std::max<size_t>(16, ws.idx.size()));
    std::partial_sort(v.begin(), v.begin() + k, v.end(), [&](int32_t a, int32_t b) { return cr[a] > cr[b]; });
    for (size_t t = 0; t < k; ++t) ws.idx.push_back(v[t]), ws.val.push_back(0);
    return k > 0;
  }

  const Problem& pb_;
  const SpliceOptions& opt_;
  Scratch& s_;
  std::vector<double> A_, h_, zd_;
  ActiveSetQP qp_;
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

void validate_options(const SpliceOptions& opt) {
  require(opt.tol > 0 && std::isfinite(opt.tol), "tol: expected a finite tolerance > 0, got " + std::to_string(opt.tol));
  require(opt.rho > 0 && std::isfinite(opt.rho), "rho: expected a finite ρ > 0, got " + std::to_string(opt.rho));
  require(opt.max_iter >= 0, "maxIter: expected ≥ 0 (0: the solver's default), got " + std::to_string(opt.max_iter));
}

}  // namespace

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
  validate(dictionary, samples, opt.l1);
  validate_options(opt);
  progress.set_total(samples.rows);
  Problem pb(dictionary, samples, opt.l1);
  solve_problem(pb, opt, warm, out, progress);
}

double splice_l1_max(const MatrixView& dictionary, const MatrixView& samples) {
  validate(dictionary, samples, 0);
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
  validate_options(opt);
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
