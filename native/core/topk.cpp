#include "topk.h"

#include <immintrin.h>

#include <cmath>
#include <limits>
#include <string>

#include "blas.h"
#include "error.h"
#include "threads.h"

namespace cl {
namespace {

// Tile shape: a 256 × 512 score tile (512 KiB) plus the vocabulary tile stay
// in a Zen/Skylake L2, so selection reads scores while they are hot.
constexpr int64_t kTileRows = 512;
constexpr int64_t kQueryBlock = 256;
constexpr float kInf = std::numeric_limits<float>::infinity();

void normalise_rows(float* x, int64_t n, int64_t d, const char* what) {
  for (int64_t i = 0; i < n; ++i) {
    double s = 0;
    for (int64_t j = 0; j < d; ++j) s += double(x[i * d + j]) * x[i * d + j];
    require(s > 0, std::string(what) + ": row " + std::to_string(i) + " has zero norm, cosine is undefined");
    float inv = static_cast<float>(1.0 / std::sqrt(s));
    for (int64_t j = 0; j < d; ++j) x[i * d + j] *= inv;
  }
}

// 1/‖row‖ for n rows.
void inverse_norms(const float* v, int64_t n, int64_t d, int64_t id0, float* inv) {
  for (int64_t i = 0; i < n; ++i) {
    double ss = sum_squares(v + i * d, d);
    require(ss > 0, "vocabulary: row " + std::to_string(id0 + i) + " has zero norm, cosine is undefined");
    inv[i] = static_cast<float>(1.0 / std::sqrt(ss));
  }
}

// Pushes every score of `row` (times inv[j] when given) that beats the heap.
// Returns false if a score is NaN or Inf.
bool select_row_scalar(const float* row, const float* inv, int64_t n, int64_t id0, HeapView heap) {
  float t = heap.threshold();
  bool finite = true;
  for (int64_t j = 0; j < n; ++j) {
    float v = inv ? row[j] * inv[j] : row[j];
    finite &= std::isfinite(v);
    if (v > t) {
      heap.push({v, id0 + j});
      t = heap.threshold();
    }
  }
  return finite;
}

__attribute__((target("avx512f"))) bool select_row_avx512(const float* row, const float* inv, int64_t n, int64_t id0,
                                                          HeapView heap) {
  float t = heap.threshold();
  const __m512 inf = _mm512_set1_ps(kInf);
  __mmask16 bad = 0;
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    __m512 v = _mm512_loadu_ps(row + j);
    if (inv) v = _mm512_mul_ps(v, _mm512_loadu_ps(inv + j));
    bad |= _mm512_cmp_ps_mask(_mm512_abs_ps(v), inf, _CMP_NLT_UQ);
    __mmask16 hit = _mm512_cmp_ps_mask(v, _mm512_set1_ps(t), _CMP_GT_OQ);
    if (!hit) continue;
    alignas(64) float vals[16];
    _mm512_store_ps(vals, v);
    for (unsigned m = hit; m; m &= m - 1) {
      int b = __builtin_ctz(m);
      if (vals[b] > t) {
        heap.push({vals[b], id0 + j + b});
        t = heap.threshold();
      }
    }
  }
  bool finite = bad == 0;
  if (j < n) finite &= select_row_scalar(row + j, inv ? inv + j : nullptr, n - j, id0 + j, heap);
  return finite;
}

bool has_avx512() {
  static const bool yes = __builtin_cpu_supports("avx512f");
  return yes;
}

// Per-worker scratch, sized on first use.
struct Scratch {
  std::vector<float> rows, scores, inv;
  ScreenScratch screen;
  HeapSet heaps;
  std::vector<float> lse_max;
  std::vector<double> lse_sum;
};

// Adds T·score terms of one row to a running (max, sum of exp) pair.
void accumulate_lse(const float* row, const float* inv, int64_t n, float T, float& mx, double& sum) {
  float m = mx;
  for (int64_t j = 0; j < n; ++j) m = std::max(m, inv ? row[j] * inv[j] : row[j]);
  if (m > mx) {
    sum *= std::exp(double(T) * (mx - m));
    mx = m;
  }
  float acc = 0;
  for (int64_t j = 0; j < n; ++j) acc += std::exp(T * ((inv ? row[j] * inv[j] : row[j]) - m));
  sum += acc;
}

void merge_lse(float& mx, double& sum, float omx, double osum, float T) {
  if (osum == 0) return;
  float m = std::max(mx, omx);
  sum = (sum == 0 ? 0 : sum * std::exp(double(T) * (mx - m))) + osum * std::exp(double(T) * (omx - m));
  mx = m;
}

// The screening format a kernel choice asks for; none for sgemm tiles.
std::optional<ScreenFormat> screen_format(ScanKernel kernel, bool softmax) {
  if (kernel == ScanKernel::Sgemm) return std::nullopt;
  if (kernel == ScanKernel::Auto) {
    if (softmax) return std::nullopt;
    for (ScreenFormat f : {ScreenFormat::Int8, ScreenFormat::Bf16})
      if (screening_available(f)) return f;
    return std::nullopt;
  }
  const ScreenFormat f = kernel == ScanKernel::Int8 ? ScreenFormat::Int8 : ScreenFormat::Bf16;
  const std::string name = screen_format_name(f);
  if (softmax) fail("kernel: '" + name + "' cannot compute softmax scoring, which needs every score");
  if (!screening_available(f))
    fail("kernel: '" + name + "' needs a CPU with " + (f == ScreenFormat::Int8 ? "AVX512-VNNI" : "AVX512-BF16") +
         "; use 'auto' or 'sgemm'");
  return f;
}

}  // namespace

TopKAccumulator::TopKAccumulator(const float* queries, int64_t nq, int64_t d, const TopKOptions& opt)
    : nq_(nq), d_(d), opt_(opt), q_(queries, queries + nq * d), final_(nq, opt.k) {
  require(nq > 0, "queries: expected at least one query, got 0");
  require(d > 0, "queries: expected dimension > 0, got " + std::to_string(d));
  require(opt.k > 0, "k: expected k >= 1, got " + std::to_string(opt.k));
  require(!(opt.softmax_temperature < 0) && std::isfinite(opt.softmax_temperature),
          "softmaxTemperature: expected a finite value >= 0");
  require_finite(MatrixView{q_.data(), DType::F32, nq, d}, "queries");
  if (opt.metric == Metric::Cosine) normalise_rows(q_.data(), nq, d, "queries");
  screen_ = screen_format(opt.kernel, softmax());
  if (softmax()) {
    chunk_ = HeapSet(nq, opt.k);
    chunk_max_.assign(nq, -kInf);
    chunk_sum_.assign(nq, 0.0);
  }
}

void TopKAccumulator::add(const MatrixView& shard, int64_t id_offset, const float* inv_norms, Progress& progress) {
  require(shard.cols == d_, "vocabulary: expected dimension " + std::to_string(d_) + " (the queries'), got " +
                                std::to_string(shard.cols));
  const bool cosine = opt_.metric == Metric::Cosine;
  const int64_t ntiles = (shard.rows + kTileRows - 1) / kTileRows;
  const int workers = parallel_workers(ntiles);
  std::vector<Scratch> scratch(workers);
  progress.set_total(shard.rows);
  // The screening frame comes from the first shard and serves the rest.
  if (screened() && qs_.nq == 0) qs_ = pack_screen_queries(*screen_, fit_screen_frame(shard), q_.data(), nq_, d_);

  parallel_for(ntiles, [&](int64_t tile, int w) {
    progress.check();
    Scratch& s = scratch[w];
    if (s.heaps.count() == 0) {
      s.scores.resize(screened() ? 0 : kQueryBlock * kTileRows);
      s.heaps = HeapSet(nq_, opt_.k);
      if (softmax()) {
        s.lse_max.assign(nq_, -kInf);
        s.lse_sum.assign(nq_, 0.0);
      }
    }
    const int64_t r0 = tile * kTileRows, nb = std::min(kTileRows, shard.rows - r0);
    const float* v = shard.f32() + r0 * d_;
    if (shard.dtype != DType::F32) {
      s.rows.resize(kTileRows * d_);
      rows_to_f32(shard, r0, nb, s.rows.data());
      v = s.rows.data();
    }
    const float* inv = nullptr;
    if (cosine) {
      if (inv_norms) {
        inv = inv_norms + r0;
      } else {
        s.inv.resize(kTileRows);
        inverse_norms(v, nb, d_, id_offset + r0, s.inv.data());
        inv = s.inv.data();
      }
    }
    if (screened()) {
      scan_tile_screened(qs_, ScreenTile{v, nb, inv, id_offset + r0}, s.heaps, s.screen);
      progress.advance(nb);
      return;
    }
    for (int64_t qb = 0; qb < nq_; qb += kQueryBlock) {
      const int64_t nqb = std::min(kQueryBlock, nq_ - qb);
      sgemm(false, true, nqb, nb, d_, 1.0f, q_.data() + qb * d_, d_, v, d_, 0.0f, s.scores.data(), nb);
      for (int64_t i = 0; i < nqb; ++i) {
        const float* row = s.scores.data() + i * nb;
        const int64_t q = qb + i;
        bool finite = has_avx512() ? select_row_avx512(row, inv, nb, id_offset + r0, s.heaps.at(q))
                                   : select_row_scalar(row, inv, nb, id_offset + r0, s.heaps.at(q));
        if (!finite) {
          int64_t j = 0;
          while (j < nb && std::isfinite(inv ? row[j] * inv[j] : row[j])) ++j;
          fail("vocabulary: row " + std::to_string(id_offset + r0 + j) +
               " gives a non-finite score (its vector holds NaN/Inf or overflows)");
        }
        if (softmax()) accumulate_lse(row, inv, nb, opt_.softmax_temperature, s.lse_max[q], s.lse_sum[q]);
      }
    }
    progress.advance(nb);
  });

  HeapSet& dst = target();
  const int64_t qchunk = 64;
  parallel_for((nq_ + qchunk - 1) / qchunk, [&](int64_t c, int) {
    for (int64_t q = c * qchunk; q < std::min(nq_, (c + 1) * qchunk); ++q) {
      HeapView out = dst.at(q);
      for (Scratch& s : scratch) {
        if (s.heaps.count() == 0) continue;
        for (const Scored& e : s.heaps.at(q)) out.push(e);
        if (softmax()) merge_lse(chunk_max_[q], chunk_sum_[q], s.lse_max[q], s.lse_sum[q], opt_.softmax_temperature);
      }
    }
  });
  rows_seen_ += shard.rows;
  chunk_open_ = softmax();
}

void TopKAccumulator::end_chunk() {
  if (!softmax() || !chunk_open_) return;
  const float T = opt_.softmax_temperature;
  for (int64_t q = 0; q < nq_; ++q) {
    const double lse = double(T) * chunk_max_[q] + std::log(chunk_sum_[q]);
    HeapView src = chunk_.at(q), out = final_.at(q);
    for (const Scored& e : src) out.push({static_cast<float>(std::exp(double(T) * e.score - lse)), e.id});
    src.clear();
    chunk_max_[q] = -kInf;
    chunk_sum_[q] = 0.0;
  }
  chunk_open_ = false;
}

void TopKAccumulator::result(float* scores, int64_t* ids) {
  end_chunk();
  for (int64_t q = 0; q < nq_; ++q) final_.at(q).write_sorted(scores + q * opt_.k, ids + q * opt_.k);
}

}  // namespace cl
