#include "topk_prepared.h"

#include <cmath>
#include <string>

#include "error.h"
#include "threads.h"
#include "topk.h"

namespace cl {
namespace {

constexpr int64_t kPrepareRows = 2048;  // rows per task: a tile decoded in cache, then rounded

bool finite_nonnegative(const std::vector<float>& v) {
  for (float x : v)
    if (!(x >= 0) || !std::isfinite(x)) return false;
  return true;
}

bool power_of_two(float x) {
  int e = 0;
  return x > 0 && std::isfinite(x) && std::frexp(x, &e) == 0.5f;
}

}  // namespace

std::optional<ScreenFormat> prepared_format(int64_t d) {
  for (ScreenFormat f : {ScreenFormat::Int8, ScreenFormat::Bf16})
    if (screening_available(f) && screen_fits(f, d)) return f;
  return std::nullopt;
}

PreparedVocab prepare_vocab(const MatrixView& rows, const float* inv_norms, Progress& progress) {
  require(rows.rows > 0 && rows.cols > 0, "vocabulary: expected at least one row of dimension > 0");
  PreparedVocab p;
  p.format = prepared_format(rows.cols);
  p.rows = rows.rows;
  p.d = rows.cols;
  const int64_t d = p.d;
  if (p.format) {
    p.frame = fit_screen_frame(rows);
    p.screen.resize(p.rows, screen_steps(*p.format, d));
  }
  p.inv.resize(static_cast<size_t>(p.rows));
  const int64_t ntasks = (p.rows + kPrepareRows - 1) / kPrepareRows;
  std::vector<std::vector<float>> buf(parallel_workers(ntasks));
  progress.set_total(p.rows);
  parallel_for(ntasks, [&](int64_t task, int w) {
    progress.check();
    const int64_t r0 = task * kPrepareRows, n = std::min(kPrepareRows, p.rows - r0);
    buf[w].resize(static_cast<size_t>(rows.dtype == DType::F16 ? kPrepareRows * d : 0));
    float* inv = p.inv.data() + r0;
    const float* v = tile_rows_f32(rows, r0, n, buf[w].data(), inv_norms ? nullptr : inv, r0, true);
    if (inv_norms) std::copy(inv_norms + r0, inv_norms + r0 + n, inv);
    if (p.format) round_screen_rows(*p.format, p.frame, v, n, d, r0, p.screen, r0);
    progress.advance(n);
  });
  return p;
}

void check_prepared(const PreparedVocab& p) {
  const std::string what = "prepared vocabulary: ";
  require(p.rows > 0 && p.d > 0, what + "expected rows > 0 and dimension > 0");
  const size_t n = static_cast<size_t>(p.rows);
  require(p.inv.size() == n && finite_nonnegative(p.inv), what + "expected " + std::to_string(n) + " finite inverse norms >= 0");
  if (!p.format) return require(p.screen.rows() == 0 && p.frame.identity(), what + "screening terms without a format");
  const ScreenRows& s = p.screen;
  require(s.steps == screen_steps(*p.format, p.d) && s.packed.size() == n * static_cast<size_t>(s.steps),
          what + "expected " + std::to_string(p.rows) + " x " + std::to_string(screen_steps(*p.format, p.d)) + " packed steps");
  for (const auto* v : {&s.scale, &s.err, &s.norm, &s.vnorm})
    require(v->size() == n && finite_nonnegative(*v), what + "expected " + std::to_string(n) + " finite terms >= 0 per row");
  if (p.frame.identity()) return;
  require(p.frame.mu.size() == static_cast<size_t>(p.d) && p.frame.inv_c.size() == static_cast<size_t>(p.d),
          what + "frame of the wrong dimension");
  for (int64_t j = 0; j < p.d; ++j)
    require(std::isfinite(p.frame.mu[j]) && power_of_two(p.frame.inv_c[j]),
            what + "frame value " + std::to_string(j) + " is not finite or its scale not a power of two");
}

}  // namespace cl
