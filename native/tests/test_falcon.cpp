// FALCON kernels against the definitions, on hand-built cases.
#include <algorithm>
#include <cmath>
#include <vector>

#include "../core/falcon.h"
#include "check.h"

namespace {

cl::MatrixView view(const std::vector<float>& v, int64_t rows, int64_t cols) {
  return cl::MatrixView{v.data(), cl::DType::F32, rows, cols};
}

}  // namespace

TEST(firing_threshold_and_sets_follow_the_definition) {
  // 13 rows × 4: a few rows with one dominant feature, the rest spread out.
  const int64_t n = 13, d = 4;
  std::vector<float> r(n * d, 1.0f);
  r[0 * d + 2] = 40, r[1 * d + 2] = 40, r[2 * d + 1] = 30, r[3 * d + 0] = 0, r[4 * d + 3] = -5;
  for (int64_t c = 0; c < d; ++c) r[12 * d + c] = 0;  // a zero row stays zero
  double sum = 0, sq = 0;
  std::vector<double> hat(n * d);
  for (int64_t i = 0; i < n; ++i) {
    double nn = 0;
    for (int64_t c = 0; c < d; ++c) nn += double(r[i * d + c]) * r[i * d + c];
    for (int64_t c = 0; c < d; ++c) hat[i * d + c] = nn > 0 ? r[i * d + c] / std::sqrt(nn) : 0;
  }
  for (double v : hat) sum += v;
  double mean = sum / (n * d);
  for (double v : hat) sq += (v - mean) * (v - mean);
  double sd = std::sqrt(sq / (n * d - 1));
  cl::Progress p;
  cl::Firing f = cl::falcon_firing(view(r, n, d), 1.0, p);
  CHECK_NEAR(f.mean, mean, 1e-6);  // R̂ is formed in fp32
  CHECK_NEAR(f.std, sd, 1e-6);
  CHECK_NEAR(f.tau, mean + sd, 1e-6);
  CHECK(f.inv_norms[12] == 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    std::vector<int32_t> want;
    for (int64_t c = 0; c < d; ++c)
      if (hat[i * d + c] >= mean + sd) want.push_back(int32_t(c));
    std::vector<int32_t> got(f.features.begin() + f.offsets[i], f.features.begin() + f.offsets[i + 1]);
    CHECK(got == want);
  }
  CHECK(f.offsets[1] - f.offsets[0] == 1 && f.features[f.offsets[0]] == 2);
}

TEST(firing_rejects_non_finite_input) {
  std::vector<float> r = {1, 2, NAN, 4};
  cl::Progress p;
  CHECK_THROWS_WITH(cl::falcon_firing(view(r, 2, 2), 5.0, p), "representations");
}

TEST(bilinear_resize_matches_half_pixel_centres) {
  std::vector<float> src = {0, 1, 2, 3}, dst(16);
  cl::resize_bilinear(src.data(), 2, 2, dst.data(), 4, 4);
  // Sample positions along an axis: -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1).
  const float ax[4] = {0, 0.25f, 0.75f, 1};
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) CHECK_NEAR(dst[y * 4 + x], 2 * ax[y] + ax[x], 1e-6);
}

TEST(largest_box_over_two_islands) {
  // Island A: 2×3 block (area 6); island B: an L over rows 4..6, cols 3..6 whose box is 3×4 = 12.
  const int h = 8, w = 8;
  std::vector<float> m(h * w, 0.1f);
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 3; ++x) m[y * w + x] = 0.9f;
  for (int x = 3; x < 7; ++x) m[6 * w + x] = 0.6f;  // exactly at the threshold counts
  for (int y = 4; y < 7; ++y) m[y * w + 3] = 0.7f;
  m[4 * w + 6] = 0.99f;  // a one-pixel island inside B's box, not connected to B
  cl::Box b = cl::largest_island_box(m.data(), h, w, 0.6f);
  CHECK(b.left == 3 && b.top == 4 && b.right == 7 && b.bottom == 7);
  std::vector<float> none(h * w, 0.5f);
  cl::Box all = cl::largest_island_box(none.data(), h, w, 0.6f);
  CHECK(all.left == 0 && all.top == 0 && all.right == w && all.bottom == h);
}

TEST(analytic_gap_cam_equals_explicit_gradients) {
  // 2 images, 3 channels, 3×4 maps; group {0, 2}.
  const int64_t n = 2, c = 3, h = 3, w = 4, hw = h * w;
  std::vector<float> acts(n * c * hw), grads(n * c * hw, 0.0f);
  for (size_t i = 0; i < acts.size(); ++i) acts[i] = float((i * 7) % 11) / 3.0f;
  for (int64_t img = 0; img < n; ++img)
    for (int64_t ch : {0, 2})
      for (int64_t p = 0; p < hw; ++p) grads[(img * c + ch) * hw + p] = 1.0f / hw;
  std::vector<int32_t> group = {0, 2};
  cl::CamOptions opt;
  opt.out_height = h, opt.out_width = w;
  std::vector<float> a(n * hw), b(n * hw);
  std::vector<cl::Box> ba(n), bb(n);
  cl::Progress p;
  cl::falcon_cams({{acts.data(), nullptr, c, h, w}}, n, group, opt, a.data(), ba.data(), p);
  cl::falcon_cams({{acts.data(), grads.data(), c, h, w}}, n, group, opt, b.data(), bb.data(), p);
  for (int64_t img = 0; img < n; ++img) {
    // Definition: ReLU(A_0 + A_2) min-max scaled (same size, so no resize).
    std::vector<double> s(hw);
    for (int64_t q = 0; q < hw; ++q) s[q] = acts[(img * c) * hw + q] + acts[(img * c + 2) * hw + q];
    double lo = *std::min_element(s.begin(), s.end()), hi = *std::max_element(s.begin(), s.end());
    for (int64_t q = 0; q < hw; ++q) {
      CHECK_NEAR(a[img * hw + q], (s[q] - lo) / (hi - lo), 1e-5);
      CHECK_NEAR(b[img * hw + q], a[img * hw + q], 1e-5);
    }
  }
}

TEST(cams_average_layers_then_rescale) {
  // Two 1×2 layers with opposite maps: the mean is flat, so the rescaled CAM is 0.
  std::vector<float> l1 = {0, 1}, l2 = {1, 0};
  std::vector<float> cam(2);
  std::vector<cl::Box> box(1);
  cl::CamOptions opt;
  opt.out_height = 1, opt.out_width = 2;
  cl::Progress p;
  cl::falcon_cams({{l1.data(), nullptr, 1, 1, 2}, {l2.data(), nullptr, 1, 1, 2}}, 1, {0}, opt, cam.data(), box.data(), p);
  CHECK_NEAR(cam[0], 0.0, 1e-6);
  CHECK_NEAR(cam[1], 0.0, 1e-6);
}

TEST(cams_reject_a_layer_without_spatial_dimensions_and_bad_groups) {
  std::vector<float> acts(8, 1.0f), cam(4);
  std::vector<cl::Box> box(1);
  cl::CamOptions opt;
  opt.out_height = 2, opt.out_width = 2;
  cl::Progress p;
  CHECK_THROWS_WITH(cl::falcon_cams({{acts.data(), nullptr, 8, 1, 1}}, 1, {0}, opt, cam.data(), box.data(), p),
                    "GradCAM needs a spatial map, got 1×1");
  CHECK_THROWS_WITH(cl::falcon_cams({{acts.data(), nullptr, 2, 2, 2}}, 1, {}, opt, cam.data(), box.data(), p),
                    "group: expected at least one feature");
  CHECK_THROWS_WITH(cl::falcon_cams({{acts.data(), nullptr, 2, 2, 2}}, 1, {5}, opt, cam.data(), box.data(), p),
                    "channels in [0, 2)");
  CHECK_THROWS_WITH(cl::falcon_cams({{acts.data(), nullptr, 2, 2, 2}}, 1, {1, 1}, opt, cam.data(), box.data(), p),
                    "distinct ascending");
}
