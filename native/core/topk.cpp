#include "topk.h"

#include <immintrin.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <algorithm>
#include <cstring>
#include <limits>
#include <string>

#include "blas.h"
#include "error.h"
#include "threads.h"
#include "topk_lanes.h"
#include "topk_prepared.h"

namespace cl {
namespace {

// Tile shape: a tile's fp32 rows (256 KiB to 1 MiB at d = 512) stay in a
// Zen/Skylake L2 while every query block passes over them; on the BLAS path
// a 256 × 512 score tile (512 KiB) joins them, so selection reads scores
// while they are hot.
constexpr int64_t kTileRows = 512;
constexpr int64_t kDenseTileRows = 128;
constexpr int64_t kQueryBlock = 256;
// Rows a task scans in order: the softmax sums are folded task by task in
// row order, so they do not depend on which worker took which task.
constexpr int64_t kTaskRows = 2048;
constexpr float kInf = std::numeric_limits<float>::infinity();

// 1/‖row‖ from the row x's sum of squares ss. A row with none (ss not > 0)
// has no cosine: its norm is zero, it holds a NaN or an infinity (ERR_NAN), or
// its squares pass float32's range; the error names `what`, the row and the
// column. `lenient` gives a zero row 0 instead.
float inverse_norm(double ss, const float* x, int64_t d, const char* what, int64_t row, bool lenient = false) {
  if (lenient && ss == 0) return 0.0f;
  if (!(ss > 0 && std::isfinite(ss))) {
    const std::string name = std::string(what) + ": row " + std::to_string(row);
    if (ss == 0) fail(name + " has zero norm, cosine is undefined");
    int64_t c = 0;
    while (c < d && std::isfinite(x[c])) ++c;
    if (c < d) fail(ErrorCode::NaN, name + " holds a NaN or infinite value (column " + std::to_string(c) + "), cosine is undefined");
    c = std::max_element(x, x + d, [](float a, float b) { return std::fabs(a) < std::fabs(b); }) - x;
    fail(name + ": expected a sum of squares within float32's range (a norm up to 1.8e19), got values up to " + show(x[c]) +
         " (column " + std::to_string(c) + "); scale the rows down");
  }
  return static_cast<float>(1.0 / std::sqrt(ss));
}

void normalise_rows(float* x, int64_t n, int64_t d, const char* what) {
  for (int64_t i = 0; i < n; ++i) {
    double s = 0;
    for (int64_t j = 0; j < d; ++j) s += double(x[i * d + j]) * x[i * d + j];
    const float inv = inverse_norm(s, x + i * d, d, what, i);
    for (int64_t j = 0; j < d; ++j) x[i * d + j] *= inv;
  }
}

// 1/‖row‖ for n rows.
void inverse_norms(const float* v, int64_t n, int64_t d, int64_t id0, float* inv, bool lenient) {
  for (int64_t i = 0; i < n; ++i) inv[i] = inverse_norm(sum_squares(v + i * d, d), v + i * d, d, "vocabulary", id0 + i, lenient);
}

#define CL_TILE __attribute__((target("avx512f,avx512bw,avx512vl")))

// Rows [r0, r0 + n) of m as fp32 (fp16 decoded into dst, fp32 read in
// place) and, when inv is given, 1/‖row‖ of each from the same pass.
CL_TILE const float* tile_avx512(const MatrixView& m, int64_t r0, int64_t n, float* dst, float* inv, int64_t id0, bool lenient) {
  const int64_t d = m.cols;
  const bool half = m.dtype == DType::F16;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t at = (r0 + i) * d;
    __m512 ss = _mm512_setzero_ps();
    // k is a constant full mask in the main loop, so its loads and stores
    // compile unmasked (AMD's masked ones are slow).
    auto step = [&](int64_t j, __mmask16 k) CL_TILE {
      const bool full = k == 0xffff;
      __m512 x;
      if (half) {
        const __m256i h = full ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m.f16() + at + j))
                               : _mm256_maskz_loadu_epi16(k, m.f16() + at + j);
        x = _mm512_cvtph_ps(h);
        if (full) _mm512_storeu_ps(dst + i * d + j, x);
        else _mm512_mask_storeu_ps(dst + i * d + j, k, x);
      } else {
        x = full ? _mm512_loadu_ps(m.f32() + at + j) : _mm512_maskz_loadu_ps(k, m.f32() + at + j);
      }
      ss = _mm512_fmadd_ps(x, x, ss);
    };
    int64_t j = 0;
    for (; j + 16 <= d; j += 16) step(j, 0xffff);
    if (j < d) step(j, static_cast<__mmask16>((1u << (d - j)) - 1));
    if (!inv) continue;
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, ss);
    double sum = 0;
    for (float l : lanes) sum += l;
    inv[i] = inverse_norm(sum, half ? dst + i * d : m.f32() + at, d, "vocabulary", id0 + i, lenient);
  }
  return half ? dst : m.f32() + r0 * d;
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

}  // namespace

// Per-worker scratch, sized on first use.
struct TopKAccumulator::Scratch {
  std::vector<char> raw;  // a tile read from a file
  std::vector<float> rows, scores, inv, thr;
  ScreenScratch screen;
  HeapSet heaps;
  RunningLse lse;
};

namespace {

// The BLAS path (CPUs without AVX-512): adds T·score terms of one row of a
// score tile to a running (max, sum of exp) pair.
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

// CPUs without AVX-512: a BLAS score tile per block of the nq × d queries
// `q`, then selection (and, when T > 0, the softmax terms) row by row.
void blas_tile(const float* q, int64_t nq, int64_t d, float T, const float* v, int64_t nb, const float* inv, int64_t id0,
               std::vector<float>& scores, HeapSet& heaps, RunningLse& lse) {
  scores.resize(kQueryBlock * kTileRows);
  for (int64_t qb = 0; qb < nq; qb += kQueryBlock) {
    const int64_t nqb = std::min(kQueryBlock, nq - qb);
    sgemm(false, true, nqb, nb, d, 1.0f, q + qb * d, d, v, d, 0.0f, scores.data(), nb);
    for (int64_t i = 0; i < nqb; ++i) {
      const float* row = scores.data() + i * nb;
      if (!select_row_scalar(row, inv, nb, id0, heaps.at(qb + i))) {
        int64_t j = 0;
        while (j < nb && std::isfinite(inv ? row[j] * inv[j] : row[j])) ++j;
        fail_non_finite_score(id0 + j);
      }
      if (T > 0) accumulate_lse(row, inv, nb, T, lse.max[qb + i], lse.sum[qb + i]);
    }
  }
}

// The source bytes of the tile from row r0 (empty at the shard's end).
Bytes tile_bytes(const MatrixView& m, int64_t r0, int64_t tile_rows) {
  const int64_t n = std::min(tile_rows, m.rows - r0);
  const size_t row = m.cols * m.element_size();
  return {static_cast<const char*>(m.data) + r0 * row, static_cast<size_t>(n) * row};
}

// A file read at offsets from several threads at once (pread).
class ReadOnlyFile {
 public:
  explicit ReadOnlyFile(const std::string& path) : path_(path), fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
    if (fd_ < 0) fail(ErrorCode::File, path + ": cannot open (" + std::strerror(errno) + ")");
  }
  ~ReadOnlyFile() { ::close(fd_); }
  ReadOnlyFile(const ReadOnlyFile&) = delete;
  ReadOnlyFile& operator=(const ReadOnlyFile&) = delete;

  // Starts the kernel reading [at, at + n) ahead of the scan (a file not in the page cache).
  void will_need(int64_t at, int64_t n) const { ::posix_fadvise(fd_, at, n, POSIX_FADV_WILLNEED); }

  void read(int64_t at, size_t n, char* dst) const {
    for (size_t done = 0; done < n;) {
      const ssize_t got = ::pread(fd_, dst + done, n - done, at + static_cast<int64_t>(done));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) fail(ErrorCode::File, path_ + ": cannot read (" + std::strerror(errno) + ")");
      if (got == 0)
        fail(ErrorCode::File, path_ + ": ends at byte " + std::to_string(at + static_cast<int64_t>(done)) + ", expected " +
                                  std::to_string(at + static_cast<int64_t>(n)) + " (truncated?)");
      done += static_cast<size_t>(got);
    }
  }

 private:
  std::string path_;
  int fd_;
};

// The rows fit_screen_frame samples from `rows` rows (every max(1, rows/1024)-th), read from a file.
std::vector<char> frame_sample(const ReadOnlyFile& file, const FileRows& f, int64_t& n) {
  const int64_t stride = std::max<int64_t>(1, f.rows / 1024);
  const size_t row = static_cast<size_t>(f.cols) * (f.dtype == DType::F16 ? 2 : 4);
  n = (f.rows + stride - 1) / stride;
  std::vector<char> out(static_cast<size_t>(n) * row);
  for (int64_t i = 0; i < n; ++i) file.read(f.data_offset + (f.first + i * stride) * static_cast<int64_t>(row), row, out.data() + i * row);
  return out;
}

// The screening format a kernel choice asks for; none for fp32 tiles.
std::optional<ScreenFormat> screen_format(ScanKernel kernel, bool softmax, int64_t d) {
  if (kernel == ScanKernel::Sgemm) return std::nullopt;
  if (kernel == ScanKernel::Auto) return softmax ? std::nullopt : prepared_format(d);
  const ScreenFormat f = kernel == ScanKernel::Int8 ? ScreenFormat::Int8 : ScreenFormat::Bf16;
  const std::string name = screen_format_name(f);
  if (softmax) fail("kernel: '" + name + "' cannot compute softmax scoring, which needs every score");
  if (!screening_available(f))
    fail("kernel: '" + name + "' needs a CPU with " + (f == ScreenFormat::Int8 ? "AVX512-VNNI" : "AVX512-BF16") +
         "; use 'auto' or 'sgemm'");
  if (!screen_fits(f, d))
    fail("kernel: '" + name + "' screens dimensions up to " + std::to_string(kInt8MaxDim) +
         " (beyond, its integer sums overflow), got " + std::to_string(d) + "; use 'auto', 'bf16' or 'sgemm'");
  return f;
}

}  // namespace

const float* tile_rows_f32(const MatrixView& m, int64_t r0, int64_t n, float* dst, float* inv, int64_t id0, bool lenient) {
  static const bool avx512 = __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  if (avx512) return tile_avx512(m, r0, n, dst, inv, id0, lenient);
  const float* v = m.f32() + r0 * m.cols;
  if (m.dtype == DType::F16) rows_to_f32(m, r0, n, dst), v = dst;
  if (inv) inverse_norms(v, n, m.cols, id0, inv, lenient);
  return v;
}

const char* TopKAccumulator::arithmetic() const { return screen_ ? screen_format_name(*screen_) : "fp32"; }

TopKAccumulator::TopKAccumulator(const float* queries, int64_t nq, int64_t d, const TopKOptions& opt)
    : nq_(nq), d_(d), opt_(opt), q_(queries, queries + nq * d), final_(nq, opt.k) {
  require(nq > 0, "queries: expected at least one query, got 0");
  require(d > 0, "queries: expected dimension > 0, got " + std::to_string(d));
  require(opt.k > 0, "k: expected k >= 1, got " + std::to_string(opt.k));
  require(!(opt.softmax_temperature < 0) && std::isfinite(opt.softmax_temperature),
          "softmaxTemperature: expected a finite value >= 0");
  require_finite(MatrixView{q_.data(), DType::F32, nq, d}, "queries");
  if (opt.metric == Metric::Cosine) normalise_rows(q_.data(), nq, d, "queries");
  screen_ = screen_format(opt.kernel, softmax(), d);
  if (!screened() && dense_available()) dq_ = pack_dense_queries(q_.data(), nq, d);
  if (softmax()) {
    chunk_ = HeapSet(nq, opt.k);
    chunk_lse_.reset(nq);
  }
}

int64_t TopKAccumulator::tile_rows() const { return dq_.nq > 0 ? kDenseTileRows : kTileRows; }

void TopKAccumulator::scan_tile(const MatrixView& src, int64_t r0, int64_t nb, int64_t id0, const float* inv_norms,
                                Scratch& s, Bytes next) {
  const bool cosine = opt_.metric == Metric::Cosine, dense = dq_.nq > 0;
  const float T = softmax() ? opt_.softmax_temperature : 0;
  if (s.heaps.count() == 0) s.heaps = HeapSet(nq_, opt_.k);
  // fp16 rows are decoded here, a tile at a time, into memory that stays in cache.
  s.rows.resize(src.dtype == DType::F16 ? tile_rows() * d_ : 0);
  s.inv.resize(tile_rows());
  const bool norms = cosine && !inv_norms;
  const float* v = tile_rows_f32(src, r0, nb, s.rows.data(), norms ? s.inv.data() : nullptr, id0);
  const float* inv = !cosine ? nullptr : inv_norms ? inv_norms : s.inv.data();
  if (screened()) scan_tile_screened(qs_, ScreenTile{v, nb, inv, id0}, s.heaps, s.screen, floor_.get());
  else if (dense) scan_tile_dense(dq_, DenseTile{v, nb, inv, id0}, s.heaps, s.thr, T, s.lse, next);
  else blas_tile(q_.data(), nq_, d_, T, v, nb, inv, id0, s.scores, s.heaps, s.lse);
}

void TopKAccumulator::scan_rows(int64_t rows, Progress& progress,
                                const std::function<void(int64_t r0, int64_t n, int64_t next_r0, Scratch& s)>& tile) {
  take_floor();
  const int64_t tr = tile_rows(), per_task = std::max<int64_t>(1, kTaskRows / tr);
  const int64_t ntasks = (rows + per_task * tr - 1) / (per_task * tr);
  const int64_t lanes = dq_.nq > 0 ? dq_.blocks * kLanes : nq_;
  std::vector<Scratch> scratch(parallel_workers(ntasks));
  std::vector<RunningLse> sums(softmax() ? ntasks : 0);
  progress.set_total(rows);
  parallel_for(ntasks, [&](int64_t task, int w) {
    Scratch& s = scratch[w];
    if (softmax()) s.lse.reset(lanes);
    const int64_t end = std::min(rows, (task + 1) * per_task * tr);
    for (int64_t r0 = task * per_task * tr; r0 < end; r0 += tr) {
      progress.check();
      const int64_t nb = std::min(tr, end - r0);
      tile(r0, nb, r0 + nb < end ? r0 + nb : rows, s);
      progress.advance(nb);
    }
    if (softmax()) sums[task] = std::move(s.lse);
  });
  HeapSet& dst = target();
  const float T = opt_.softmax_temperature;
  const int64_t qchunk = 64;
  parallel_for((nq_ + qchunk - 1) / qchunk, [&](int64_t c, int) {
    for (int64_t q = c * qchunk; q < std::min(nq_, (c + 1) * qchunk); ++q) {
      HeapView out = dst.at(q);
      for (Scratch& s : scratch)
        if (s.heaps.count() > 0)
          for (const Scored& e : s.heaps.at(q)) out.push(e);
      for (const RunningLse& part : sums) chunk_lse_.merge(q, part.max[q], part.sum[q], T);
    }
  });
  rows_seen_ += rows;
  chunk_open_ = softmax();
}

void TopKAccumulator::take_floor() {
  if (!floor_) floor_ = std::make_unique<ScreenFloor>(nq_, opt_.k);
  for (int64_t q = 0; q < nq_; ++q) floor_->reset(q, target().at(q).threshold());
}

void TopKAccumulator::add(const MatrixView& shard, int64_t id_offset, const float* inv_norms, Progress& progress) {
  require(shard.cols == d_, "vocabulary: expected dimension " + std::to_string(d_) + " (the queries'), got " +
                                std::to_string(shard.cols));
  // The screening frame comes from the first shard and serves the rest.
  if (screened() && qs_.nq == 0) qs_ = pack_screen_queries(*screen_, fit_screen_frame(shard), q_.data(), nq_, d_);
  scan_rows(shard.rows, progress, [&](int64_t r0, int64_t nb, int64_t next_r0, Scratch& s) {
    // The task's next tile comes out of DRAM while this one is scanned.
    scan_tile(shard, r0, nb, id_offset + r0, inv_norms ? inv_norms + r0 : nullptr, s,
              tile_bytes(shard, next_r0, tile_rows()));
  });
}

void TopKAccumulator::add_file(const FileRows& f, int64_t id_offset, Progress& progress) {
  require(f.cols == d_, f.path + ": rows of dimension " + std::to_string(f.cols) + ", expected " + std::to_string(d_) +
                            " (the queries')");
  const ReadOnlyFile file(f.path);
  const int64_t row = f.cols * (f.dtype == DType::F16 ? 2 : 4);
  file.will_need(f.data_offset + f.first * row, f.rows * row);
  if (screened() && qs_.nq == 0) {
    int64_t n = 0;
    const std::vector<char> sample = frame_sample(file, f, n);
    qs_ = pack_screen_queries(*screen_, fit_screen_frame(MatrixView{sample.data(), f.dtype, n, f.cols}), q_.data(), nq_, d_);
  }
  scan_rows(f.rows, progress, [&](int64_t r0, int64_t nb, int64_t, Scratch& s) {
    // Read into a tile-sized buffer that stays in cache for the decode and the scan.
    s.raw.resize(static_cast<size_t>(tile_rows() * row));
    file.read(f.data_offset + (f.first + r0) * row, static_cast<size_t>(nb * row), s.raw.data());
    scan_tile(MatrixView{s.raw.data(), f.dtype, nb, f.cols}, 0, nb, id_offset + r0, nullptr, s, Bytes{});
  });
}

void TopKAccumulator::add_prepared(const PreparedVocab& p, const MatrixView& rows, int64_t first, int64_t id_offset,
                                   Progress& progress) {
  require(p.d == d_ && rows.cols == d_, "vocabulary: expected dimension " + std::to_string(d_) + " (the queries'), got " +
                                            std::to_string(rows.cols) + " rows prepared at " + std::to_string(p.d));
  require(first >= 0 && first + rows.rows <= p.rows, "vocabulary: rows [" + std::to_string(first) + ", " +
                                                         std::to_string(first + rows.rows) + ") are not all in the " +
                                                         std::to_string(p.rows) + " prepared rows");
  const float* inv = opt_.metric == Metric::Cosine ? p.inv.data() + first : nullptr;
  // A zero row is kept as inverse norm 0, fine for 'ip'; cosine is undefined there, as in add().
  if (inv)
    for (int64_t i = 0; i < rows.rows; ++i)
      if (inv[i] == 0) fail("vocabulary: row " + std::to_string(id_offset + i) + " has zero norm, cosine is undefined");
  if (!screened() || p.format != screen_) return add(rows, id_offset, inv, progress);
  // Any frame is exact; the rows' own keeps the bound as tight as their rounding.
  if (qs_.nq == 0 || qs_.frame.mu != p.frame.mu || qs_.frame.inv_c != p.frame.inv_c)
    qs_ = pack_screen_queries(*screen_, p.frame, q_.data(), nq_, d_);
  scan_rows(rows.rows, progress, [&](int64_t r0, int64_t nb, int64_t next_r0, Scratch& s) {
    if (s.heaps.count() == 0) s.heaps = HeapSet(nq_, opt_.k);
    const ScreenTile t{tile_bytes(rows, r0, nb).data, nb, inv ? inv + r0 : nullptr, id_offset + r0, rows.dtype};
    // The task's next tile comes out of DRAM while this one is scanned.
    const int64_t next_end = next_r0 < rows.rows ? first + std::min(rows.rows, next_r0 + tile_rows()) : 0;
    scan_screened(qs_, p.screen, first + r0, t, s.heaps, s.screen, floor_.get(), next_end);
  });
}

void TopKAccumulator::end_chunk() {
  if (!softmax() || !chunk_open_) return;
  const float T = opt_.softmax_temperature;
  for (int64_t q = 0; q < nq_; ++q) {
    const double lse = chunk_lse_.lse(q, T);
    HeapView src = chunk_.at(q), out = final_.at(q);
    for (const Scored& e : src) out.push({static_cast<float>(std::exp(double(T) * e.score - lse)), e.id});
    src.clear();
  }
  chunk_lse_.reset(nq_);
  chunk_open_ = false;
}

void TopKAccumulator::result(float* scores, int64_t* ids) {
  end_chunk();
  for (int64_t q = 0; q < nq_; ++q) final_.at(q).write_sorted(scores + q * opt_.k, ids + q * opt_.k);
}

}  // namespace cl
