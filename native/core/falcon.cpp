#include "falcon.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "error.h"
#include "threads.h"

namespace cl {
namespace {

constexpr int64_t kRowsPerTask = 256;

int64_t row_tasks(int64_t rows) { return (rows + kRowsPerTask - 1) / kRowsPerTask; }

// Runs fn(r0, n, scratch) over blocks of rows converted to fp32, in parallel;
// scratch holds the block (per worker, so fp16 input is converted once per block).
template <class Fn>
void for_row_blocks(const MatrixView& r, Progress& progress, Fn fn) {
  int64_t tasks = row_tasks(r.rows);
  std::vector<std::vector<float>> scratch(parallel_workers(tasks));
  parallel_for(tasks, [&](int64_t t, int w) {
    progress.check();
    int64_t r0 = t * kRowsPerTask, n = std::min(kRowsPerTask, r.rows - r0);
    std::vector<float>& buf = scratch[w];
    buf.resize(n * r.cols);
    rows_to_f32(r, r0, n, buf.data());
    fn(t, r0, n, buf.data());
    progress.advance(n);
  });
}

double sum(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s;
}

}  // namespace

Firing falcon_firing(const MatrixView& r, double sigmas, Progress& progress) {
  require(r.rows >= 1 && r.cols >= 1,
          "representations: expected at least 1×1, got " + std::to_string(r.rows) + "×" + std::to_string(r.cols));
  require(std::isfinite(sigmas) && sigmas > 0, "sigmas: expected a finite number > 0 (τ = mean + sigmas·std above the mean), got " + std::to_string(sigmas));
  require_finite(r, "representations");
  const int64_t d = r.cols, tasks = row_tasks(r.rows);
  progress.set_total(3 * r.rows);
  Firing f;
  f.inv_norms.resize(r.rows);
  std::vector<double> part(tasks);

  // Pass 1: row norms and the sum of R̂.
  for_row_blocks(r, progress, [&](int64_t t, int64_t r0, int64_t n, const float* x) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float* row = x + i * d;
      double nn = 0, rs = 0;
      for (int64_t c = 0; c < d; ++c) nn += double(row[c]) * row[c];
      float inv = nn > 0 ? float(1.0 / std::sqrt(nn)) : 0.0f;
      for (int64_t c = 0; c < d; ++c) rs += row[c] * inv;
      f.inv_norms[r0 + i] = inv;
      s += rs;
    }
    part[t] = s;
  });
  const double count = double(r.rows) * double(d);
  f.mean = sum(part) / count;

  // Pass 2: squared deviations (two-pass, so no cancellation at large N·D).
  for_row_blocks(r, progress, [&](int64_t t, int64_t r0, int64_t n, const float* x) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < d; ++c) {
        double v = double(x[i * d + c] * f.inv_norms[r0 + i]) - f.mean;
        s += v * v;
      }
    part[t] = s;
  });
  f.std = count > 1 ? std::sqrt(sum(part) / (count - 1)) : 0.0;
  f.tau = float(f.mean + sigmas * f.std);

  // Pass 3: firing sets, gathered per block and concatenated in row order.
  std::vector<std::vector<int32_t>> feats(tasks);
  std::vector<int64_t> counts(r.rows);
  for_row_blocks(r, progress, [&](int64_t t, int64_t r0, int64_t n, const float* x) {
    for (int64_t i = 0; i < n; ++i) {
      size_t before = feats[t].size();
      for (int64_t c = 0; c < d; ++c)
        if (x[i * d + c] * f.inv_norms[r0 + i] >= f.tau) feats[t].push_back(int32_t(c));
      counts[r0 + i] = int64_t(feats[t].size() - before);
    }
  });
  f.offsets.assign(r.rows + 1, 0);
  for (int64_t i = 0; i < r.rows; ++i) f.offsets[i + 1] = f.offsets[i] + counts[i];
  f.features.reserve(f.offsets.back());
  for (auto& v : feats) f.features.insert(f.features.end(), v.begin(), v.end());
  return f;
}

void resize_bilinear(const float* src, int64_t sh, int64_t sw, float* dst, int64_t dh, int64_t dw) {
  // Source index and weight of the next sample along one axis.
  auto axis = [](int64_t d, int64_t s_len, int64_t d_len, int64_t& i0, float& a) {
    double f = (d + 0.5) * double(s_len) / double(d_len) - 0.5;
    i0 = int64_t(std::floor(f));
    a = float(f - double(i0));
    if (i0 < 0) i0 = 0, a = 0;
    if (i0 >= s_len - 1) i0 = s_len - 1, a = 0;
  };
  for (int64_t y = 0; y < dh; ++y) {
    int64_t y0;
    float ay;
    axis(y, sh, dh, y0, ay);
    int64_t y1 = std::min(y0 + 1, sh - 1);
    for (int64_t x = 0; x < dw; ++x) {
      int64_t x0;
      float ax;
      axis(x, sw, dw, x0, ax);
      int64_t x1 = std::min(x0 + 1, sw - 1);
      float top = src[y0 * sw + x0] * (1 - ax) + src[y0 * sw + x1] * ax;
      float bottom = src[y1 * sw + x0] * (1 - ax) + src[y1 * sw + x1] * ax;
      dst[y * dw + x] = top * (1 - ay) + bottom * ay;
    }
  }
}

Box largest_island_box(const float* map, int64_t height, int64_t width, float threshold) {
  std::vector<uint8_t> seen(height * width, 0);
  std::vector<int64_t> stack;
  Box best{0, 0, int32_t(width), int32_t(height)};
  int64_t best_area = 0;
  for (int64_t start = 0; start < height * width; ++start) {
    if (seen[start] || !(map[start] >= threshold)) continue;
    Box b{int32_t(width), int32_t(height), 0, 0};
    seen[start] = 1;
    stack.assign(1, start);
    while (!stack.empty()) {
      int64_t p = stack.back(), y = p / width, x = p % width;
      stack.pop_back();
      b.left = std::min(b.left, int32_t(x)), b.right = std::max(b.right, int32_t(x + 1));
      b.top = std::min(b.top, int32_t(y)), b.bottom = std::max(b.bottom, int32_t(y + 1));
      const int64_t next[4][2] = {{y - 1, x}, {y + 1, x}, {y, x - 1}, {y, x + 1}};
      for (const auto& q : next) {
        if (q[0] < 0 || q[0] >= height || q[1] < 0 || q[1] >= width) continue;
        int64_t qi = q[0] * width + q[1];
        if (!seen[qi] && map[qi] >= threshold) seen[qi] = 1, stack.push_back(qi);
      }
    }
    int64_t area = int64_t(b.right - b.left) * (b.bottom - b.top);
    if (area > best_area) best = b, best_area = area;
  }
  return best;
}

namespace {

// (m − min) / (max(m − min) + 1e-7), in place: pytorch-grad-cam's scale_cam_image.
void min_max_scale(float* m, int64_t n) {
  float lo = *std::min_element(m, m + n);
  for (int64_t i = 0; i < n; ++i) m[i] -= lo;
  float hi = *std::max_element(m, m + n);
  for (int64_t i = 0; i < n; ++i) m[i] /= (1e-7f + hi);
}

// ReLU(Σ_c w_c A_c) for image `img` of one layer into cam (H·W).
void layer_cam(const CamLayer& l, int64_t img, const std::vector<int32_t>& group, float* cam) {
  const int64_t hw = l.height * l.width, base = img * l.channels * hw;
  std::fill(cam, cam + hw, 0.0f);
  auto add = [&](int64_t c, float w) {
    const float* a = l.acts + base + c * hw;
    for (int64_t p = 0; p < hw; ++p) cam[p] += w * a[p];
  };
  if (l.grads) {
    for (int64_t c = 0; c < l.channels; ++c) {
      const float* g = l.grads + base + c * hw;
      double s = 0;
      for (int64_t p = 0; p < hw; ++p) s += g[p];
      add(c, float(s / double(hw)));
    }
  } else {
    // d(Σ_group mean_hw A_c)/dA_c = 1/(H·W) on group channels, 0 elsewhere.
    for (int32_t c : group) add(c, 1.0f / float(hw));
  }
  for (int64_t p = 0; p < hw; ++p) cam[p] = std::max(cam[p], 0.0f);
}

void check_cam_args(const std::vector<CamLayer>& layers, int64_t n, const std::vector<int32_t>& group,
                    const CamOptions& opt) {
  require(!layers.empty(), "layers: expected at least one target layer, got none");
  require(n >= 1, "images: expected at least 1, got " + std::to_string(n));
  require(!group.empty(), "group: expected at least one feature, got none");
  require(opt.out_height >= 1 && opt.out_width >= 1, "size: expected at least 1×1, got " +
                                                          std::to_string(opt.out_height) + "×" +
                                                          std::to_string(opt.out_width));
  require(std::isfinite(opt.threshold), "threshold: expected a finite number");
  for (size_t i = 1; i < group.size(); ++i)
    require(group[i] > group[i - 1], "group: expected distinct ascending feature indices, got " +
                                         std::to_string(group[i - 1]) + " before " + std::to_string(group[i]));
  for (size_t i = 0; i < layers.size(); ++i) {
    const CamLayer& l = layers[i];
    const std::string name = "layers[" + std::to_string(i) + "]";
    require(l.acts != nullptr && l.channels >= 1, name + ": expected activations [N, C, H, W]");
    require(l.height * l.width >= 2, name + ": GradCAM needs a spatial map, got " + std::to_string(l.height) +
                                         "×" + std::to_string(l.width) + " (a pooled or fully connected layer)");
    if (!l.grads)
      require(group.front() >= 0 && group.back() < l.channels,
              name + ": group features must be channels in [0, " + std::to_string(l.channels) + "), got " +
                  std::to_string(group.front()) + ".." + std::to_string(group.back()));
  }
}

}  // namespace

void falcon_cams(const std::vector<CamLayer>& layers, int64_t n, const std::vector<int32_t>& group,
                 const CamOptions& opt, float* cams, Box* boxes, Progress& progress) {
  check_cam_args(layers, n, group, opt);
  const int64_t out = opt.out_height * opt.out_width;
  int64_t max_hw = 0;
  for (const auto& l : layers) max_hw = std::max(max_hw, l.height * l.width);
  struct Scratch {
    std::vector<float> cam, resized;
  };
  std::vector<Scratch> scratch(parallel_workers(n));
  progress.set_total(n);
  parallel_for(n, [&](int64_t img, int w) {
    progress.check();
    Scratch& s = scratch[w];
    s.cam.resize(max_hw);
    s.resized.resize(out);
    float* acc = cams + img * out;
    std::fill(acc, acc + out, 0.0f);
    for (const auto& l : layers) {
      layer_cam(l, img, group, s.cam.data());
      min_max_scale(s.cam.data(), l.height * l.width);
      resize_bilinear(s.cam.data(), l.height, l.width, s.resized.data(), opt.out_height, opt.out_width);
      for (int64_t p = 0; p < out; ++p) acc[p] += s.resized[p] / float(layers.size());
    }
    for (int64_t p = 0; p < out; ++p) acc[p] = std::max(acc[p], 0.0f);
    min_max_scale(acc, out);
    boxes[img] = largest_island_box(acc, opt.out_height, opt.out_width, opt.threshold);
    progress.advance(1);
  });
}

}  // namespace cl
