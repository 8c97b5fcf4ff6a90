#include "sae.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <immintrin.h>
#include <limits>

#include "blas.h"
#include "error.h"
#include "threads.h"

namespace cl {

// Active entries of a batch's codes: CSR by item, plus a by-latent index
// (CSC) so per-latent reductions run in parallel without atomics.
struct SaeCodes {
  std::vector<int64_t> ptr;   // n + 1
  std::vector<int32_t> col;   // latent of each entry
  std::vector<int32_t> item;  // item of each entry
  std::vector<float> val;     // activation
  std::vector<float> grad;    // ∂loss/∂pre at the entry
  std::vector<int64_t> cptr;  // m + 1
  std::vector<int64_t> cent;  // entries grouped by latent
  // Per-item lists the codes are flattened from (kept for their capacity).
  std::vector<std::vector<int32_t>> rcols;
  std::vector<std::vector<float>> rvals;

  void start(int64_t n) {
    rcols.resize(n);
    rvals.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      rcols[i].clear();
      rvals[i].clear();
    }
    ptr.assign(1, 0);
  }
  int64_t nnz() const { return ptr.empty() ? 0 : ptr.back(); }
};

namespace {

constexpr char kMagic[8] = {'C', 'L', 'S', 'A', 'E', '0', '0', '1'};
constexpr int64_t kRowBlock = 64;

int64_t blocks(int64_t n, int64_t b) { return (n + b - 1) / b; }

// fn(i) over [0, n) in parallel blocks of rows.
template <class F>
void rows_parallel(int64_t n, F&& fn) {
  parallel_for(blocks(n, kRowBlock), [&](int64_t blk, int) {
    for (int64_t i = blk * kRowBlock, e = std::min(n, i + kRowBlock); i < e; ++i) fn(i);
  });
}

// dot and axpy run per active code on d-long rows: AVX-512 when the CPU has
// it (the build targets baseline x86-64), else scalar.
const bool kAvx512 = __builtin_cpu_supports("avx512f");

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

void wide_sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                int64_t ldb, float beta, float* c, int64_t ldc) {
  WideBlas guard(compute_threads());
  sgemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}

// The k-th largest of row[0..m): a size-k min-heap, so most values cost one compare.
float kth_largest(const float* row, int64_t m, int k) {
  std::vector<float> h(row, row + k);
  std::make_heap(h.begin(), h.end(), std::greater<float>());
  for (int64_t j = k; j < m; ++j)
    if (row[j] > h.front()) {
      std::pop_heap(h.begin(), h.end(), std::greater<float>());
      h.back() = row[j];
      std::push_heap(h.begin(), h.end(), std::greater<float>());
    }
  return h.front();
}

// The rank-th largest positive value of a[0..count), or 0 when there are
// fewer positives. A strided sample gives a bound that keeps about 2·rank
// candidates; one parallel pass collects them and nth_element picks exactly.
float kth_largest_positive(const float* a, int64_t count, int64_t rank) {
  const int64_t stride = std::max<int64_t>(1, count / 65536);
  std::vector<float> sample;
  for (int64_t i = 0; i < count; i += stride) sample.push_back(a[i]);
  const int64_t sr = 2 * rank / stride + 1;
  float bound = 0;
  if (sr < static_cast<int64_t>(sample.size())) {
    std::nth_element(sample.begin(), sample.begin() + sr, sample.end(), std::greater<float>());
    bound = std::max(0.0f, sample[sr]);
  }
  const int64_t nb = blocks(count, 1 << 16);
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

// Keeps row entries with v > 0 and v >= thr, zeroing the rest; returns the
// count kept and adds their sum to *sum.
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

// Appends the (latent, value) of a thresholded row's nonzero entries.
void row_codes(const float* row, int64_t m, int64_t count, std::vector<int32_t>& cols, std::vector<float>& vals) {
  cols.reserve(count);
  vals.reserve(count);
  for (int64_t j = 0; j < m; ++j)
    if (row[j] > 0) {
      cols.push_back(static_cast<int32_t>(j));
      vals.push_back(row[j]);
    }
}

template <class T>
void put(std::ofstream& f, const T& v) {
  f.write(reinterpret_cast<const char*>(&v), sizeof(T));
}
template <class T>
void get(std::ifstream& f, T& v) {
  f.read(reinterpret_cast<char*>(&v), sizeof(T));
}

const char* kind_name(SaeKind k) {
  return k == SaeKind::ReluL1 ? "relu-l1" : k == SaeKind::TopK ? "topk" : "batchtopk";
}

// Flattens the per-item (latent, value) lists into codes with a by-latent index.
void codes_from_rows(int64_t n, int64_t m, SaeCodes& c) {
  const auto& cols = c.rcols;
  const auto& vals = c.rvals;
  c.ptr.assign(n + 1, 0);
  for (int64_t i = 0; i < n; ++i) c.ptr[i + 1] = c.ptr[i] + static_cast<int64_t>(cols[i].size());
  c.col.resize(c.nnz());
  c.item.resize(c.nnz());
  c.val.resize(c.nnz());
  c.grad.assign(c.nnz(), 0.0f);
  rows_parallel(n, [&](int64_t i) {
    std::copy(cols[i].begin(), cols[i].end(), c.col.begin() + c.ptr[i]);
    std::copy(vals[i].begin(), vals[i].end(), c.val.begin() + c.ptr[i]);
    std::fill(c.item.begin() + c.ptr[i], c.item.begin() + c.ptr[i + 1], static_cast<int32_t>(i));
  });
  c.cptr.assign(m + 1, 0);
  for (int32_t j : c.col) ++c.cptr[j + 1];
  for (int64_t j = 0; j < m; ++j) c.cptr[j + 1] += c.cptr[j];
  c.cent.resize(c.nnz());
  std::vector<int64_t> at(c.cptr.begin(), c.cptr.end() - 1);
  for (int64_t e = 0; e < c.nnz(); ++e) c.cent[at[c.col[e]]++] = e;
}

// out[i] += Σ_e val[e] · D[col[e]]  (decode the codes)
void codes_decode(const SaeCodes& c, const float* D, int64_t d, float* out) {
  rows_parallel(static_cast<int64_t>(c.ptr.size()) - 1, [&](int64_t i) {
    for (int64_t e = c.ptr[i]; e < c.ptr[i + 1]; ++e) axpy(c.val[e], D + c.col[e] * d, out + i * d, d);
  });
}

// out[j] += Σ_{e in latent j} w[e] · rows[item(e)], over latents in parallel.
void codes_scatter(const SaeCodes& c, const std::vector<float>& w, const float* rows, int64_t d, float* out) {
  const int64_t m = static_cast<int64_t>(c.cptr.size()) - 1;
  parallel_for(blocks(m, 16), [&](int64_t blk, int) {
    for (int64_t j = blk * 16, je = std::min(m, j + 16); j < je; ++j)
      for (int64_t q = c.cptr[j]; q < c.cptr[j + 1]; ++q) {
        int64_t e = c.cent[q];
        axpy(w[e], rows + int64_t(c.item[e]) * d, out + j * d, d);
      }
  });
}

}  // namespace

Sae::~Sae() = default;

Sae::Sae(const SaeConfig& cfg, float* storage)
    : cfg_(cfg), lay_(cfg.d, cfg.m), main_(new SaeCodes), aux_(new SaeCodes), rng_(cfg.seed) {
  require(cfg.d >= 1 && cfg.m >= 1, "sae: d and m must be >= 1, got d=" + std::to_string(cfg.d) +
                                        ", m=" + std::to_string(cfg.m));
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
  require(x.cols == d, "sae step: features have " + std::to_string(x.cols) + " columns, expected d=" + std::to_string(d));
  require(r0 >= 0 && n >= 1 && r0 + n <= x.rows, "sae step: rows [" + std::to_string(r0) + ", " +
                                                     std::to_string(r0 + n) + ") outside 0.." + std::to_string(x.rows));
  x_.resize(n * d);
  xc_.resize(n * d);
  std::vector<int64_t> bad(n, -1);
  const float* b = p_ + lay_.b;
  rows_parallel(n, [&](int64_t i) {
    float* xi = x_.data() + i * d;
    rows_to_f32(x, r0 + i, 1, xi);
    for (int64_t c = 0; c < d; ++c) {
      if (!std::isfinite(xi[c]) && bad[i] < 0) bad[i] = c;
      xc_[i * d + c] = xi[c] - b[c];
    }
  });
  for (int64_t i = 0; i < n; ++i)
    if (bad[i] >= 0)
      fail("sae step " + std::to_string(t_ + 1) + ": feature item " + std::to_string(ids ? ids[i] : r0 + i) +
           " column " + std::to_string(bad[i]) + " is " + (std::isnan(x_[i * d + bad[i]]) ? "NaN" : "Inf"));
}

// pre_ (n × m) becomes the codes f in place, in one pass per item that also
// sums l1 and counts active latents; fills `main` when sparse, and `aux` (the
// dead-latent codes of the TopK kinds, taken before selection).
void Sae::activate(int64_t n, bool sparse, SaeCodes& main, SaeCodes& aux, std::vector<double>& l1,
                   std::vector<int64_t>& active) {
  const int64_t m = cfg_.m;
  float* F = pre_.data();
  aux.start(n);
  main.start(n);
  if (cfg_.kind != SaeKind::ReluL1 && cfg_.aux_coef > 0) {
    std::vector<int32_t> dead;
    for (int64_t j = 0; j < m; ++j)
      if (t_ - last_fired_[j] >= cfg_.dead_steps) dead.push_back(static_cast<int32_t>(j));
    if (!dead.empty()) {
      rows_parallel(n, [&](int64_t i) {
        const float* row = F + i * m;
        auto& cs = aux.rcols[i];
        for (int32_t j : dead)
          if (row[j] > 0) cs.push_back(j);
        auto by_value = [&](int32_t a, int32_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); };
        if (static_cast<int64_t>(cs.size()) > cfg_.aux_k) {
          std::nth_element(cs.begin(), cs.begin() + cfg_.aux_k, cs.end(), by_value);
          cs.resize(cfg_.aux_k);
        }
        std::sort(cs.begin(), cs.end());
        for (int32_t j : cs) aux.rvals[i].push_back(row[j]);
      });
      codes_from_rows(n, m, aux);
    }
  }
  const float batch_thr = cfg_.kind == SaeKind::BatchTopK ? kth_largest_positive(F, n * m, n * int64_t(cfg_.k)) : 0.0f;
  rows_parallel(n, [&](int64_t i) {
    float* row = F + i * m;
    const float thr = cfg_.kind == SaeKind::TopK ? kth_largest(row, m, cfg_.k) : batch_thr;
    double s = 0;
    int64_t a = threshold_row(row, m, thr, &s);
    for (int64_t j = m - 1; cfg_.kind == SaeKind::TopK && a > cfg_.k && j >= 0; --j)
      if (row[j] > 0 && row[j] == thr) {  // ties at the k-th value: keep the first k
        row[j] = 0;
        s -= thr;
        --a;
      }
    if (sparse) row_codes(row, m, a, main.rcols[i], main.rvals[i]);
    l1[i] = s;
    active[i] = a;
  });
  if (sparse) codes_from_rows(n, m, main);
}

void Sae::forward_backward(int64_t n, SaeStats& st) {
  std::fill(grad_.begin(), grad_.end(), 0.0f);
  std::vector<double> l1(n), sq(n), item_loss(n);
  std::vector<int64_t> active(n);
  const int64_t nnz = encode_batch(n, st, l1, active);
  residual(n, st.sparse, sq);
  statistics(n, nnz, l1, sq, item_loss, st);
  decoder_backward(n, st.sparse);
  if (aux_->nnz() > 0) aux_backward(n, st);
  encoder_backward(n, st.sparse);
  count_fired(n, st.sparse, active);
  if (collecting_) collect(n, item_loss);
}

// pre = x̄ W_eᵀ + b_e, then the activation; ReLU-L1 takes the sparse path
// when the previous batch was sparse enough. Returns the active count.
int64_t Sae::encode_batch(int64_t n, SaeStats& st, std::vector<double>& l1, std::vector<int64_t>& active) {
  const int64_t d = cfg_.d, m = cfg_.m;
  const float* be = p_ + lay_.be;
  pre_.resize(n * m);
  rows_parallel(n, [&](int64_t i) { std::copy(be, be + m, pre_.data() + i * m); });
  wide_sgemm(false, true, n, m, d, xc_.data(), d, p_ + lay_.we, d, 1.0f, pre_.data(), m);
  st.sparse = cfg_.kind != SaeKind::ReluL1 || density_ < cfg_.sparse_below;
  activate(n, st.sparse, *main_, *aux_, l1, active);
  int64_t nnz = 0;
  for (int64_t a : active) nnz += a;
  density_ = double(nnz) / double(n * m);
  return nnz;
}

// r_ = x̂ − x with x̂ = f D + b; sq[i] = ‖r_i‖².
void Sae::residual(int64_t n, bool sparse, std::vector<double>& sq) {
  const int64_t d = cfg_.d, m = cfg_.m;
  const float* b = p_ + lay_.b;
  r_.resize(n * d);
  rows_parallel(n, [&](int64_t i) { std::copy(b, b + d, r_.data() + i * d); });
  if (sparse)
    codes_decode(*main_, p_ + lay_.dec, d, r_.data());
  else
    wide_sgemm(false, false, n, d, m, pre_.data(), m, p_ + lay_.dec, d, 1.0f, r_.data(), d);
  rows_parallel(n, [&](int64_t i) {
    double s = 0;
    for (int64_t c = 0; c < d; ++c) {
      float rc = r_[i * d + c] - x_[i * d + c];
      r_[i * d + c] = rc;
      s += double(rc) * rc;
    }
    sq[i] = s;
  });
}

void Sae::statistics(int64_t n, int64_t nnz, const std::vector<double>& l1, const std::vector<double>& sq,
                     std::vector<double>& item_loss, SaeStats& st) const {
  const int64_t d = cfg_.d;
  std::vector<double> mean(d, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < d; ++c) mean[c] += x_[i * d + c];
  double var = 0, sse = 0, l1sum = 0;
  for (int64_t c = 0; c < d; ++c) mean[c] /= double(n);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t c = 0; c < d; ++c) var += (x_[i * d + c] - mean[c]) * (x_[i * d + c] - mean[c]);
    sse += sq[i];
    l1sum += l1[i];
    item_loss[i] = sq[i] / double(d) + cfg_.l1 * l1[i];
  }
  st.mse = sse / double(n * d);
  st.l0 = double(nnz) / double(n);
  st.fvu = var > 0 ? sse / var : 0;
  st.loss = st.mse + cfg_.l1 * l1sum / double(n);
}

// r_ becomes g = ∂loss/∂x̂ = 2 r / (n d); gradients of b (direct), D, and
// ∂loss/∂pre of the main codes (in the codes, or gbuf_ on the dense path).
void Sae::decoder_backward(int64_t n, bool sparse) {
  const int64_t d = cfg_.d, m = cfg_.m;
  const float* D = p_ + lay_.dec;
  float* gD = grad_.data() + lay_.dec;
  float* g = r_.data();
  const float gscale = 2.0f / float(n * d), lam = cfg_.l1 / float(n);
  for (int64_t i = 0; i < n * d; ++i) g[i] *= gscale;
  for (int64_t i = 0; i < n; ++i) axpy(1.0f, g + i * d, grad_.data() + lay_.b, d);
  if (sparse) {
    SaeCodes& c = *main_;
    codes_scatter(c, c.val, g, d, gD);
    rows_parallel(n, [&](int64_t i) {
      for (int64_t e = c.ptr[i]; e < c.ptr[i + 1]; ++e) c.grad[e] = dot(g + i * d, D + c.col[e] * d, d) + lam;
    });
  } else {
    const float* F = pre_.data();
    wide_sgemm(true, false, m, d, n, F, m, g, d, 0.0f, gD, d);
    gbuf_.resize(n * m);
    wide_sgemm(false, true, n, m, d, g, d, D, d, 0.0f, gbuf_.data(), m);
    rows_parallel(n, [&](int64_t i) { mask_grad(F + i * m, gbuf_.data() + i * m, m, lam); });
  }
}

// Aux loss α·mean (e − ê)²: the dead latents' codes reconstruct the detached
// residual e = x − x̂ (= −g / gscale).
void Sae::aux_backward(int64_t n, SaeStats& st) {
  const int64_t d = cfg_.d;
  const float* D = p_ + lay_.dec;
  const float* g = r_.data();
  SaeCodes& c = *aux_;
  std::vector<float> h(n * d, 0.0f);
  codes_decode(c, D, d, h.data());  // ê
  double asq = 0;
  const float gscale = 2.0f / float(n * d), hscale = 2.0f * cfg_.aux_coef / float(n * d);
  for (int64_t i = 0; i < n * d; ++i) {
    float diff = -g[i] / gscale - h[i];
    asq += double(diff) * diff;
    h[i] = -hscale * diff;
  }
  st.aux = asq / double(n * d);
  st.loss += cfg_.aux_coef * st.aux;
  codes_scatter(c, c.val, h.data(), d, grad_.data() + lay_.dec);
  rows_parallel(n, [&](int64_t i) {
    for (int64_t e = c.ptr[i]; e < c.ptr[i + 1]; ++e) c.grad[e] = dot(h.data() + i * d, D + c.col[e] * d, d);
  });
}

// Encoder gradients from ∂loss/∂pre; b also feeds x̄ = x − b. Then each
// atom's gradient loses its component along the (unit) atom.
void Sae::encoder_backward(int64_t n, bool sparse) {
  const int64_t d = cfg_.d, m = cfg_.m;
  const float* We = p_ + lay_.we;
  float* gWe = grad_.data() + lay_.we;
  float* gbe = grad_.data() + lay_.be;
  if (sparse) {
    for (const SaeCodes* c : {main_.get(), aux_.get()}) {
      if (c->nnz() == 0) continue;
      codes_scatter(*c, c->grad, xc_.data(), d, gWe);
      for (int64_t e = 0; e < c->nnz(); ++e) gbe[c->col[e]] += c->grad[e];
    }
  } else {
    wide_sgemm(true, false, m, d, n, gbuf_.data(), m, xc_.data(), d, 0.0f, gWe, d);
    parallel_for(blocks(m, 256), [&](int64_t blk, int) {
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = blk * 256, je = std::min(m, j + 256); j < je; ++j) gbe[j] += gbuf_[i * m + j];
    });
  }
  for (int64_t j = 0; j < m; ++j) axpy(-gbe[j], We + j * d, grad_.data() + lay_.b, d);
  const float* D = p_ + lay_.dec;
  float* gD = grad_.data() + lay_.dec;
  parallel_for(blocks(m, 64), [&](int64_t blk, int) {
    for (int64_t j = blk * 64, je = std::min(m, j + 64); j < je; ++j)
      axpy(-dot(gD + j * d, D + j * d, d) / dot(D + j * d, D + j * d, d), D + j * d, gD + j * d, d);
  });
}

// Firing counts: from the by-latent index, else by latent blocks of F.
void Sae::count_fired(int64_t n, bool sparse, const std::vector<int64_t>& active) {
  const int64_t m = cfg_.m;
  const float* F = pre_.data();
  const SaeCodes& c = *main_;
  parallel_for(blocks(m, 256), [&](int64_t blk, int) {
    const int64_t j0 = blk * 256, je = std::min(m, j0 + 256);
    int64_t count[256] = {0};
    if (sparse) {
      for (int64_t j = j0; j < je; ++j) count[j - j0] = c.cptr[j + 1] - c.cptr[j];
    } else {
      for (int64_t i = 0; i < n; ++i)
        if (active[i] > 0)
          for (int64_t j = j0; j < je; ++j) count[j - j0] += F[i * m + j] > 0;
    }
    for (int64_t j = j0; j < je; ++j) {
      fired_[j] += count[j - j0];
      if (count[j - j0] > 0) last_fired_[j] = t_ + 1;
    }
  });
}

void Sae::adam() {
  ++t_;
  const float b1 = cfg_.beta1, b2 = cfg_.beta2;
  const double bc1 = 1 - std::pow(double(b1), double(t_)), bc2 = 1 - std::pow(double(b2), double(t_));
  const float step = float(cfg_.lr / bc1), inv_sqrt_bc2 = float(1 / std::sqrt(bc2));
  const int64_t P = lay_.params, chunk = 1 << 14;
  float* m1 = p_ + P;
  float* m2 = p_ + 2 * P;
  parallel_for(blocks(P, chunk), [&](int64_t blk, int) {
    for (int64_t q = blk * chunk, e = std::min(P, q + chunk); q < e; ++q) {
      float gq = grad_[q];
      m1[q] = b1 * m1[q] + (1 - b1) * gq;
      m2[q] = b2 * m2[q] + (1 - b2) * gq * gq;
      p_[q] -= step * m1[q] / (std::sqrt(m2[q]) * inv_sqrt_bc2 + cfg_.eps);
    }
  });
  const int64_t d = cfg_.d;
  float* D = p_ + lay_.dec;
  parallel_for(blocks(cfg_.m, 64), [&](int64_t blk, int) {
    for (int64_t j = blk * 64, je = std::min(cfg_.m, j + 64); j < je; ++j) {
      float* a = D + j * d;
      float s = 1.0f / std::sqrt(dot(a, a, d));
      for (int64_t c = 0; c < d; ++c) a[c] *= s;
    }
  });
}

void Sae::encode(const MatrixView& x, int64_t r0, int64_t n, float* out) {
  const int64_t m = cfg_.m, d = cfg_.d;
  centre(x, r0, n, nullptr);
  const float* be = p_ + lay_.be;
  rows_parallel(n, [&](int64_t i) { std::copy(be, be + m, out + i * m); });
  wide_sgemm(false, true, n, m, d, xc_.data(), d, p_ + lay_.we, d, 1.0f, out, m);
  const float batch_thr = cfg_.kind == SaeKind::BatchTopK ? kth_largest_positive(out, n * m, n * int64_t(cfg_.k)) : 0.0f;
  rows_parallel(n, [&](int64_t i) {
    float* row = out + i * m;
    double s = 0;
    threshold_row(row, m, cfg_.kind == SaeKind::TopK ? kth_largest(row, m, cfg_.k) : batch_thr, &s);
  });
}

SaeStats Sae::step(const MatrixView& x, int64_t r0, int64_t n, const int64_t* item_ids) {
  centre(x, r0, n, item_ids);
  SaeStats st;
  forward_backward(n, st);
  if (!std::isfinite(st.loss))
    fail("sae step " + std::to_string(t_ + 1) + ": loss is " + std::to_string(st.loss) +
         " (diverged; lower --lr)");
  adam();
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
void Sae::collect(int64_t n, const std::vector<double>& item_loss) {
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
    std::copy(xc_.begin() + i * cfg_.d, xc_.begin() + (i + 1) * cfg_.d, pool_.begin() + slot * cfg_.d);
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

void Sae::save(const std::string& path) const {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    require(bool(f), "sae save: cannot write " + tmp);
    f.write(kMagic, 8);
    put(f, cfg_);
    put(f, t_);
    f.write(reinterpret_cast<const char*>(p_), sizeof(float) * lay_.total());
    f.write(reinterpret_cast<const char*>(fired_.data()), sizeof(int64_t) * cfg_.m);
    f.write(reinterpret_cast<const char*>(last_fired_.data()), sizeof(int64_t) * cfg_.m);
    f.flush();
    if (!f) {
      std::remove(tmp.c_str());
      fail("sae save: writing " + tmp + " failed (disk full?)");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    fail("sae save: cannot rename " + tmp + " to " + path);
  }
}

SaeConfig Sae::read_config(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  require(bool(f), "sae checkpoint " + path + ": cannot open");
  char magic[8];
  f.read(magic, 8);
  require(f && std::memcmp(magic, kMagic, 8) == 0, "sae checkpoint " + path + ": not a conceptlens SAE checkpoint");
  SaeConfig c;
  get(f, c);
  require(bool(f), "sae checkpoint " + path + ": truncated header");
  return c;
}

void Sae::load(const std::string& path) {
  SaeConfig c = read_config(path);
  if (c.d != cfg_.d || c.m != cfg_.m || c.kind != cfg_.kind || (c.kind != SaeKind::ReluL1 && c.k != cfg_.k))
    fail("sae checkpoint " + path + ": shape d=" + std::to_string(c.d) + ", m=" + std::to_string(c.m) + " (" +
         kind_name(c.kind) + ", k=" + std::to_string(c.k) + ") differs from the trainer's d=" + std::to_string(cfg_.d) +
         ", m=" + std::to_string(cfg_.m) + " (" + kind_name(cfg_.kind) + ", k=" + std::to_string(cfg_.k) + ")");
  std::ifstream f(path, std::ios::binary);
  f.seekg(8 + sizeof(SaeConfig));
  int64_t t = 0;
  get(f, t);
  std::vector<float> p(lay_.total());
  std::vector<int64_t> fired(cfg_.m), last(cfg_.m);
  f.read(reinterpret_cast<char*>(p.data()), sizeof(float) * p.size());
  f.read(reinterpret_cast<char*>(fired.data()), sizeof(int64_t) * cfg_.m);
  f.read(reinterpret_cast<char*>(last.data()), sizeof(int64_t) * cfg_.m);
  require(bool(f), "sae checkpoint " + path + ": truncated (expected " +
                       std::to_string(8 + sizeof(SaeConfig) + 8 + 4 * p.size() + 16 * cfg_.m) + " bytes)");
  std::copy(p.begin(), p.end(), p_);
  fired_ = std::move(fired);
  last_fired_ = std::move(last);
  t_ = t;
  collecting_ = false;
}

}  // namespace cl
