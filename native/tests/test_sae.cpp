// SAE training step against a float64 re-implementation written from the
// definitions (loss, gradients, Adam, tangent projection, renormalisation).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>
#include <set>
#include <unistd.h>
#include <string>
#include <vector>

#include "../core/fp16.h"
#include "../core/sae.h"
#include "../core/threads.h"
#include "check.h"

namespace {

using cl::Sae;
using cl::SaeConfig;
using cl::SaeKind;
using Vec = std::vector<double>;

using check::randn;

// The reference trainer: same parameter layout as cl::SaeLayout, in double.
struct Ref {
  SaeConfig c;
  cl::SaeLayout lay;
  Vec p, m1, m2, grad;
  int t = 0;
  double loss = 0;

  Ref(const SaeConfig& cfg, const float* storage) : c(cfg), lay(cfg.d, cfg.m) {
    p.assign(storage, storage + lay.params);
    m1.assign(storage + lay.params, storage + 2 * lay.params);
    m2.assign(storage + 2 * lay.params, storage + 3 * lay.params);
  }
  double& We(int64_t j, int64_t c_) { return p[lay.we + j * c.d + c_]; }
  double& Dj(int64_t j, int64_t c_) { return p[lay.dec + j * c.d + c_]; }

  // Codes of one batch: value per (item, latent), the k-selection as defined.
  std::vector<Vec> encode(const std::vector<Vec>& xc, std::vector<Vec>& pre) {
    const int64_t n = xc.size(), m = c.m;
    pre.assign(n, Vec(m));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < m; ++j) {
        double s = p[lay.be + j];
        for (int64_t q = 0; q < c.d; ++q) s += We(j, q) * xc[i][q];
        pre[i][j] = s;
      }
    std::vector<Vec> f(n, Vec(m, 0.0));
    if (c.kind == SaeKind::BatchTopK) {
      Vec all;
      for (auto& r : pre) all.insert(all.end(), r.begin(), r.end());
      std::sort(all.rbegin(), all.rend());
      double thr = std::max(0.0, all[n * c.k - 1]);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < m; ++j) f[i][j] = pre[i][j] > 0 && pre[i][j] >= thr ? pre[i][j] : 0;
    } else {
      for (int64_t i = 0; i < n; ++i) {
        Vec s = pre[i];
        std::sort(s.rbegin(), s.rend());
        double thr = c.kind == SaeKind::TopK ? s[c.k - 1] : 0;
        for (int64_t j = 0; j < m; ++j) f[i][j] = pre[i][j] > 0 && pre[i][j] >= thr ? pre[i][j] : 0;
      }
    }
    return f;
  }

  // aux codes: the aux_k largest positive pre-activations (every latent dead).
  std::vector<Vec> aux_codes(const std::vector<Vec>& pre) {
    std::vector<Vec> a(pre.size(), Vec(c.m, 0.0));
    if (c.kind == SaeKind::ReluL1) return a;
    for (size_t i = 0; i < pre.size(); ++i) {
      Vec s = pre[i];
      std::sort(s.rbegin(), s.rend());
      double thr = std::max(1e-300, s[c.aux_k - 1]);
      for (int64_t j = 0; j < c.m; ++j) a[i][j] = pre[i][j] >= thr ? pre[i][j] : 0;
    }
    return a;
  }

  void step(const std::vector<float>& xf, int64_t n) {
    const int64_t d = c.d, m = c.m;
    std::vector<Vec> x(n, Vec(d)), xc(n, Vec(d)), pre;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t q = 0; q < d; ++q) {
        x[i][q] = xf[i * d + q];
        xc[i][q] = x[i][q] - p[lay.b + q];
      }
    auto f = encode(xc, pre);
    auto a = aux_codes(pre);
    grad.assign(lay.params, 0.0);
    loss = 0;
    std::vector<Vec> g(n, Vec(d)), h(n, Vec(d, 0.0));
    for (int64_t i = 0; i < n; ++i) {
      double se = 0, l1 = 0, ae = 0;
      for (int64_t q = 0; q < d; ++q) {
        double xh = p[lay.b + q], eh = 0;
        for (int64_t j = 0; j < m; ++j) {
          xh += f[i][j] * Dj(j, q);
          eh += a[i][j] * Dj(j, q);
        }
        double r = xh - x[i][q];
        se += r * r;
        g[i][q] = 2 * r / double(n * d);
        double diff = -r - eh;
        ae += diff * diff;
        h[i][q] = -2 * c.aux_coef * diff / double(n * d);
      }
      for (int64_t j = 0; j < m; ++j) l1 += std::fabs(f[i][j]);
      loss += (se / d + c.l1 * l1 + (c.kind == SaeKind::ReluL1 ? 0 : c.aux_coef * ae / d)) / n;
    }
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < m; ++j) {
        double dpre = 0;
        double gd = 0, hd = 0;
        for (int64_t q = 0; q < d; ++q) {
          gd += g[i][q] * Dj(j, q);
          hd += h[i][q] * Dj(j, q);
          grad[lay.dec + j * d + q] += f[i][j] * g[i][q] + a[i][j] * h[i][q];
        }
        if (f[i][j] > 0) dpre += gd + c.l1 / double(n);
        if (a[i][j] > 0) dpre += hd;
        grad[lay.be + j] += dpre;
        for (int64_t q = 0; q < d; ++q) grad[lay.we + j * d + q] += dpre * xc[i][q];
      }
    for (int64_t q = 0; q < d; ++q) {
      double s = 0;
      for (int64_t i = 0; i < n; ++i) s += g[i][q];
      for (int64_t j = 0; j < m; ++j) s -= grad[lay.be + j] * We(j, q);
      grad[lay.b + q] = s;
    }
    for (int64_t j = 0; j < m; ++j) {  // remove the component along atom j
      double ga = 0, aa = 0;
      for (int64_t q = 0; q < d; ++q) {
        ga += grad[lay.dec + j * d + q] * Dj(j, q);
        aa += Dj(j, q) * Dj(j, q);
      }
      for (int64_t q = 0; q < d; ++q) grad[lay.dec + j * d + q] -= ga / aa * Dj(j, q);
    }
    ++t;
    for (int64_t k = 0; k < lay.params; ++k) {
      m1[k] = c.beta1 * m1[k] + (1 - c.beta1) * grad[k];
      m2[k] = c.beta2 * m2[k] + (1 - c.beta2) * grad[k] * grad[k];
      double mh = m1[k] / (1 - std::pow(double(c.beta1), t)), vh = m2[k] / (1 - std::pow(double(c.beta2), t));
      p[k] -= c.lr * mh / (std::sqrt(vh) + c.eps);
    }
    for (int64_t j = 0; j < m; ++j) {
      double nn = 0;
      for (int64_t q = 0; q < d; ++q) nn += Dj(j, q) * Dj(j, q);
      for (int64_t q = 0; q < d; ++q) Dj(j, q) /= std::sqrt(nn);
    }
  }
};

// max |got − ref| ≤ tol · max |ref|
void check_rel(const float* got, const Vec& ref, int64_t off, int64_t n, double tol, const char* what) {
  double scale = 1e-30, err = 0;
  for (int64_t k = 0; k < n; ++k) {
    scale = std::max(scale, std::fabs(ref[off + k]));
    err = std::max(err, std::fabs(double(got[off + k]) - ref[off + k]));
  }
  if (err > tol * scale) check::failure(__FILE__, __LINE__, std::string(what) + ": max error " + std::to_string(err) +
                                                                 " > " + std::to_string(tol) + " x " + std::to_string(scale));
}

SaeConfig small(SaeKind kind) {
  SaeConfig c;
  c.d = 16;
  c.m = 64;
  c.kind = kind;
  c.k = 4;
  c.l1 = kind == SaeKind::ReluL1 ? 3e-3f : 1e-3f;
  c.lr = 1e-2f;
  c.aux_k = 8;
  c.aux_coef = 0.25f;
  c.dead_steps = 0;  // every latent counts as dead for the aux loss
  c.seed = 7;
  return c;
}

// Random biases so every term of the gradient is exercised.
void perturb(Sae& s) {
  auto be = randn(s.config().m, 11, 0.1f), b = randn(s.config().d, 12, 0.2f);
  std::copy(be.begin(), be.end(), s.params() + s.layout().be);
  std::copy(b.begin(), b.end(), s.params() + s.layout().b);
}

void compare_steps(SaeConfig cfg, bool expect_sparse, int64_t n = 32) {
  Sae s(cfg, nullptr);
  perturb(s);
  Ref ref(cfg, s.params());
  const auto& L = s.layout();
  for (int step = 0; step < 3; ++step) {
    auto x = randn(n * cfg.d, 100 + step, 1.0f, 0.3f);
    cl::MatrixView xv{x.data(), cl::DType::F32, n, cfg.d};
    std::vector<float> before(s.params(), s.params() + L.params);
    Vec ref_before = ref.p;
    cl::SaeStats st = s.step(xv, 0, n);
    ref.step(x, n);
    CHECK(st.sparse == expect_sparse);
    CHECK_NEAR(st.loss, ref.loss, 1e-5 * ref.loss);
    double var = 0;  // Σ‖x − mean‖², the fvu's denominator
    for (int64_t q = 0; q < cfg.d; ++q) {
      double mean = 0;
      for (int64_t i = 0; i < n; ++i) mean += x[i * cfg.d + q] / double(n);
      for (int64_t i = 0; i < n; ++i) var += std::pow(x[i * cfg.d + q] - mean, 2);
    }
    CHECK_NEAR(st.fvu, st.mse * double(n * cfg.d) / var, 1e-9 * st.fvu);
    check_rel(s.grads(), ref.grad, 0, L.params, 1e-5, "gradients");
    check_rel(s.params(), ref.p, 0, L.params, 1e-5, "parameters");
    // The update itself (params move by ~lr), not only the parameters.
    Vec dref(L.params);
    std::vector<float> dgot(L.params);
    for (int64_t k = 0; k < L.params; ++k) {
      dref[k] = ref.p[k] - ref_before[k];
      dgot[k] = s.params()[k] - before[k];
    }
    check_rel(dgot.data(), dref, 0, L.params, 1e-3, "update");
    check_rel(s.params() + 2 * L.params, ref.m2, 0, L.params, 1e-5, "adam second moment");
    check_rel(s.params() + L.params, ref.m1, 0, L.params, 1e-5, "adam first moment");
    for (int64_t j = 0; j < cfg.m; ++j) {
      double nn = 0;
      for (int64_t q = 0; q < cfg.d; ++q) nn += std::pow(s.params()[L.dec + j * cfg.d + q], 2);
      CHECK_NEAR(nn, 1.0, 1e-5);
    }
    // Re-sync the reference from the float state so the next step is compared alone.
    ref.p.assign(s.params(), s.params() + L.params);
    ref.m1.assign(s.params() + L.params, s.params() + 2 * L.params);
    ref.m2.assign(s.params() + 2 * L.params, s.params() + 3 * L.params);
  }
}

TEST(relu_l1_dense_step_matches_float64_reference) {
  auto c = small(SaeKind::ReluL1);
  c.sparse_below = 0;
  compare_steps(c, false);
}

TEST(relu_l1_sparse_step_matches_float64_reference) {
  auto c = small(SaeKind::ReluL1);
  c.sparse_below = 2;
  compare_steps(c, true);
}

// 32 items take the GEMM encoder, 300 the screened one (kScreenMinItems).
TEST(topk_step_with_aux_loss_matches_float64_reference) {
  compare_steps(small(SaeKind::TopK), true);
  compare_steps(small(SaeKind::TopK), true, 300);
}

// d = 20: the residual's 16-wide loop and the spread's 8-wide loop, each
// with a scalar tail of 4 (the other float64 comparisons use d = 8, 16, 512).
TEST(topk_step_with_a_ragged_width_matches_float64_reference) {
  auto c = small(SaeKind::TopK);
  c.d = 20;
  compare_steps(c, true);
  compare_steps(c, true, 300);
}

TEST(batchtopk_step_with_aux_loss_matches_float64_reference) { compare_steps(small(SaeKind::BatchTopK), true); }

// Sizes past the sparse kernels' blocks: more items than one span of the
// per-latent pass, latents and items in partial tiles; ReLU-L1's codes dense
// enough to be walked in tiles, TopK's and BatchTopK's in one sweep. With
// thousands of items some gradients come near Adam's eps, where g / (|g| +
// eps) turns rounding into visible update differences (the float64 and any
// float32 trainer part there); a larger eps keeps the parameter check sharp.
SaeConfig wide(SaeKind kind) {
  auto c = small(kind);
  c.d = 8;
  c.m = 160;
  c.eps = 1e-4f;
  return c;
}

TEST(relu_l1_tiled_sparse_step_matches_float64_reference) {
  auto c = wide(SaeKind::ReluL1);
  c.sparse_below = 2;
  compare_steps(c, true, 2100);
}

TEST(topk_and_batchtopk_steps_over_several_spans_match_float64_reference) {
  compare_steps(wide(SaeKind::TopK), true, 2100);
  compare_steps(wide(SaeKind::BatchTopK), true, 2100);
}

// Every reduction runs in fixed blocks summed in a fixed order, so the
// thread count (or scheduling) cannot change a bit of the result.
TEST(steps_are_bit_identical_across_thread_counts) {
  for (SaeKind kind : {SaeKind::ReluL1, SaeKind::TopK, SaeKind::BatchTopK})
    for (float sparse_below : {0.0f, 2.0f}) {
      auto c = wide(kind);
      c.m = 200;
      c.d = 40;
      c.sparse_below = sparse_below;
      c.dead_steps = 1;
      std::vector<std::vector<float>> got;
      for (int threads : {1, 2, 1}) {
        cl::set_compute_threads(threads);
        Sae s(c, nullptr);
        for (int step = 0; step < 3; ++step) {
          auto x = randn(300 * c.d, 40 + step, 1.0f, 0.2f);
          s.step({x.data(), cl::DType::F32, 300, c.d}, 0, 300);
        }
        got.emplace_back(s.params(), s.params() + s.layout().total());
      }
      cl::set_compute_threads(0);
      CHECK(got[0] == got[1]);
      CHECK(got[0] == got[2]);
    }
}

TEST(batchtopk_keeps_n_times_k_codes) {
  auto c = small(SaeKind::BatchTopK);
  c.m = 256;
  Sae s(c, nullptr);
  auto x = randn(64 * c.d, 5);
  cl::SaeStats st = s.step({x.data(), cl::DType::F32, 64, c.d}, 0, 64);
  CHECK_NEAR(st.l0, c.k, 1e-9);
}

TEST(resampling_reinitialises_exactly_the_dead_latents) {
  auto c = small(SaeKind::ReluL1);
  Sae s(c, nullptr);
  const auto& L = s.layout();
  const std::set<int64_t> planted = {3, 17, 40, 63};
  for (int64_t j : planted) s.params()[L.be + j] = -1e6f;  // can never fire
  const int64_t n = 48;
  auto x = randn(n * c.d, 21, 1.0f, 0.5f);
  cl::MatrixView xv{x.data(), cl::DType::F32, n, c.d};
  s.step(xv, 0, n);
  std::vector<int64_t> dead = s.dead();
  CHECK(std::set<int64_t>(dead.begin(), dead.end()) == planted);
  s.resample_begin();
  std::vector<float> b(s.params() + L.b, s.params() + L.b + c.d);  // the collecting step centres by this b
  s.step(xv, 0, n);
  std::vector<float> snap(s.params(), s.params() + L.total());
  double alive = 0;
  for (int64_t j = 0; j < c.m; ++j)
    if (!planted.count(j)) {
      double nn = 0;
      for (int64_t q = 0; q < c.d; ++q) nn += std::pow(snap[L.we + j * c.d + q], 2);
      alive += std::sqrt(nn) / double(c.m - planted.size());
    }
  std::vector<int64_t> got = s.resample_apply();
  CHECK(std::set<int64_t>(got.begin(), got.end()) == planted);
  for (int64_t j = 0; j < c.m; ++j) {
    const float* D = s.params() + L.dec + j * c.d;
    const float* We = s.params() + L.we + j * c.d;
    if (!planted.count(j)) {  // untouched, moments included
      for (int64_t sec = 0; sec < 3; ++sec)
        for (int64_t q = 0; q < c.d; ++q) {
          CHECK(s.params()[sec * L.params + L.dec + j * c.d + q] == snap[sec * L.params + L.dec + j * c.d + q]);
          CHECK(s.params()[sec * L.params + L.we + j * c.d + q] == snap[sec * L.params + L.we + j * c.d + q]);
        }
      continue;
    }
    // Decoder atom = some centred input x − b, normalised; encoder row = 0.2 · mean alive norm · atom.
    bool matched = false;
    for (int64_t i = 0; i < n && !matched; ++i) {
      double nn = 0;
      for (int64_t q = 0; q < c.d; ++q) nn += std::pow(double(x[i * c.d + q]) - b[q], 2);
      bool same = true;
      for (int64_t q = 0; q < c.d; ++q) same = same && std::fabs(D[q] - (x[i * c.d + q] - b[q]) / std::sqrt(nn)) < 1e-6;
      matched = same;
    }
    CHECK(matched);
    for (int64_t q = 0; q < c.d; ++q) CHECK_NEAR(We[q], 0.2 * alive * D[q], 1e-6);
    CHECK(s.params()[L.be + j] == 0.0f);
    for (int64_t sec = 1; sec < 3; ++sec) {
      CHECK(s.params()[sec * L.params + L.be + j] == 0.0f);
      for (int64_t q = 0; q < c.d; ++q) {
        CHECK(s.params()[sec * L.params + L.dec + j * c.d + q] == 0.0f);
        CHECK(s.params()[sec * L.params + L.we + j * c.d + q] == 0.0f);
      }
    }
  }
  CHECK(s.dead().size() == static_cast<size_t>(c.m));  // counts restart
}

TEST(fp16_features_train_as_their_fp32_values) {
  auto c = small(SaeKind::TopK);
  auto x = randn(40 * c.d, 9);
  std::vector<uint16_t> h(x.size());
  cl::floats_to_halves(x.data(), h.data(), int64_t(x.size()));
  cl::halves_to_floats(h.data(), x.data(), int64_t(x.size()));
  Sae a(c, nullptr), b(c, nullptr);
  for (int step = 0; step < 2; ++step) {
    a.step({x.data(), cl::DType::F32, 40, c.d}, 8, 32);
    b.step({h.data(), cl::DType::F16, 40, c.d}, 8, 32);
  }
  CHECK(std::equal(a.params(), a.params() + a.layout().total(), b.params()));
}

TEST(nan_feature_names_step_and_item) {
  auto c = small(SaeKind::ReluL1);
  Sae s(c, nullptr);
  auto x = randn(8 * c.d, 3);
  s.step({x.data(), cl::DType::F32, 8, c.d}, 0, 8);
  x[5 * c.d + 2] = std::nanf("");
  int64_t ids[8] = {10, 11, 12, 13, 14, 1234, 16, 17};
  CHECK_THROWS_WITH(s.step({x.data(), cl::DType::F32, 8, c.d}, 0, 8, ids), "sae step 2: feature item 1234 column 2 is NaN");
}

TEST(checkpoint_round_trip_and_shape_refusal) {
  auto c = small(SaeKind::ReluL1);
  Sae a(c, nullptr);
  auto x = randn(16 * c.d, 4);
  a.step({x.data(), cl::DType::F32, 16, c.d}, 0, 16);
  const std::string path = "/tmp/test_sae_ckpt_" + std::to_string(::getpid()) + ".bin";
  a.save(path);
  c.seed = 99;
  Sae b(c, nullptr);
  b.load(path);
  CHECK(b.steps() == 1);
  CHECK(std::equal(a.params(), a.params() + a.layout().total(), b.params()));
  // Resumed training continues identically.
  auto sa = a.step({x.data(), cl::DType::F32, 16, c.d}, 0, 16);
  auto sb = b.step({x.data(), cl::DType::F32, 16, c.d}, 0, 16);
  CHECK(sa.loss == sb.loss);
  CHECK(std::equal(a.params(), a.params() + a.layout().total(), b.params()));
  auto other = c;
  other.m = 32;
  Sae wrong(other, nullptr);
  CHECK_THROWS_WITH(wrong.load(path), "shape d=16, m=64");
  CHECK(Sae::read_config(path).m == 64);
  std::remove(path.c_str());
}

// A training schedule with dead-latent resampling in the middle: step t
// trains on batch t % 5; collecting starts before step 6, resampling after
// step 11. Latents 3 and 9 can never fire, so they are resampled.
struct Schedule {
  static constexpr int kSteps = 16, kBegin = 6, kApply = 11;
  SaeConfig cfg;
  std::vector<float> x;
  const int64_t n = 24;

  explicit Schedule(SaeKind kind) : cfg(small(kind)), x(randn(5 * 24 * 16, 77, 1.0f, 0.3f)) {
    cfg.dead_steps = 2;      // the TopK kinds' aux loss starts on the way
    cfg.sparse_below = 0.42f;  // ReLU-L1's codes thin out past it by step 8: both paths run
  }
  void start(Sae& s) const {
    for (int64_t j : {3, 9}) s.params()[s.layout().be + j] = -1e6f;
  }
  // Steps [from, to) with the resampling calls due.
  void run(Sae& s, int from, int to) const {
    for (int t = from; t < to; ++t) {
      if (t == kBegin) s.resample_begin();
      s.step({x.data(), cl::DType::F32, 5 * n, cfg.d}, (t % 5) * n, n);
      if (t + 1 == kApply) CHECK(s.resample_apply().size() >= 2);
    }
  }
};

std::string file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

TEST(resume_from_any_checkpoint_continues_bit_for_bit) {
  const std::string path = "/tmp/test_sae_resume_" + std::to_string(::getpid()) + ".bin";
  const std::string whole_path = path + ".whole";
  for (SaeKind kind : {SaeKind::ReluL1, SaeKind::TopK, SaeKind::BatchTopK}) {
    Schedule plan(kind);
    Sae whole(plan.cfg, nullptr);
    plan.start(whole);
    plan.run(whole, 0, Schedule::kSteps);
    whole.save(whole_path);
    // Before and while collecting (heap and pool filled), right after the
    // resample, and past it.
    for (int at : {3, Schedule::kBegin, Schedule::kBegin + 2, Schedule::kApply, 14}) {
      Sae first(plan.cfg, nullptr);
      plan.start(first);
      plan.run(first, 0, at);
      first.save(path);
      auto other = plan.cfg;
      other.seed = 1234;  // a different initial state and RNG, all replaced by the checkpoint
      Sae resumed(other, nullptr);
      resumed.load(path);
      CHECK(resumed.collecting() == (at > Schedule::kBegin && at < Schedule::kApply));
      plan.run(resumed, at, Schedule::kSteps);
      CHECK(resumed.steps() == whole.steps());
      CHECK(std::equal(whole.params(), whole.params() + whole.layout().total(), resumed.params()));
      CHECK(std::equal(whole.fired(), whole.fired() + plan.cfg.m, resumed.fired()));
      // As the trainer resumes, with the checkpoint's own config: the final
      // checkpoint equals the uninterrupted run's byte for byte.
      Sae again(Sae::read_config(path), nullptr);
      again.load(path);
      plan.run(again, at, Schedule::kSteps);
      again.save(path);
      CHECK(file_bytes(path) == file_bytes(whole_path));
    }
  }
  std::remove(path.c_str());
  std::remove(whole_path.c_str());
}

TEST(checkpoint_refuses_truncation_and_loads_version_1) {
  auto c = small(SaeKind::TopK);
  Sae a(c, nullptr);
  auto x = randn(16 * c.d, 4);
  a.step({x.data(), cl::DType::F32, 16, c.d}, 0, 16);
  const std::string path = "/tmp/test_sae_v1_" + std::to_string(::getpid()) + ".bin";
  a.save(path);
  const std::string bytes = file_bytes(path);
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size() - 5));
  }
  Sae b(c, nullptr);
  CHECK_THROWS_WITH(b.load(path), "truncated");
  // Version 1: magic, config, step, parameters and moments, firing counts.
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    const int64_t t = a.steps();
    f.write("CLSAE001", 8);
    f.write(reinterpret_cast<const char*>(&c), sizeof c);
    f.write(reinterpret_cast<const char*>(&t), 8);
    f.write(reinterpret_cast<const char*>(a.params()), 4 * a.layout().total());
    std::vector<int64_t> last(c.m, 1);
    f.write(reinterpret_cast<const char*>(a.fired()), 8 * c.m);
    f.write(reinterpret_cast<const char*>(last.data()), 8 * c.m);
  }
  b.load(path);
  CHECK(b.steps() == 1 && !b.collecting());
  CHECK(std::equal(a.params(), a.params() + a.layout().total(), b.params()));
  std::remove(path.c_str());
}

// Latents with identical encoder rows tie on every item: TopK keeps the
// lower ones, exactly k codes per item.
TEST(topk_ties_go_to_the_lower_latents) {
  auto c = small(SaeKind::TopK);
  c.aux_coef = 0;
  Sae s(c, nullptr);
  const auto& L = s.layout();
  for (int64_t j = 1; j < 8; ++j) std::copy(s.params() + L.we, s.params() + L.we + c.d, s.params() + L.we + j * c.d);
  for (int64_t j = 0; j < 8; ++j) s.params()[L.be + j] = 100;  // the eight lead every item
  auto x = randn(20 * c.d, 8);
  cl::SaeStats st = s.step({x.data(), cl::DType::F32, 20, c.d}, 0, 20);
  CHECK(st.l0 == c.k);
  for (int64_t j = 0; j < c.m; ++j) CHECK(s.fired()[j] == (j < c.k ? 20 : 0));
}

// encode's codes against a selection written from the definition in double:
// each item keeps k entries (TopK) or its entries above the batch's n·k-th
// (BatchTopK), and none left out is larger than one kept.
TEST(encode_keeps_the_largest_preactivations) {
  for (SaeKind kind : {SaeKind::TopK, SaeKind::BatchTopK}) {
    auto c = wide(kind);
    c.k = 5;
    Sae s(c, nullptr);
    perturb(s);
    const int64_t n = 90;
    auto x = randn(n * c.d, 31, 1.0f, 0.1f);
    std::vector<float> f(n * c.m);
    s.encode({x.data(), cl::DType::F32, n, c.d}, 0, n, f.data());
    const auto& L = s.layout();
    double worst_kept = 1e300, best_dropped = -1e300;
    int64_t kept = 0;
    for (int64_t i = 0; i < n; ++i) {
      double row_kept = 1e300, row_dropped = -1e300;
      for (int64_t j = 0; j < c.m; ++j) {
        double pre = s.params()[L.be + j];
        for (int64_t q = 0; q < c.d; ++q) pre += double(s.params()[L.we + j * c.d + q]) * (x[i * c.d + q] - s.params()[L.b + q]);
        if (f[i * c.m + j] > 0) {
          CHECK_NEAR(f[i * c.m + j], pre, 1e-5);
          row_kept = std::min(row_kept, pre);
          ++kept;
        } else {
          row_dropped = std::max(row_dropped, pre);
        }
      }
      if (kind == SaeKind::TopK) CHECK(row_kept >= row_dropped - 1e-5);
      worst_kept = std::min(worst_kept, row_kept);
      best_dropped = std::max(best_dropped, row_dropped);
    }
    CHECK(kept == n * c.k);
    if (kind == SaeKind::BatchTopK) CHECK(worst_kept >= best_dropped - 1e-5);
  }
}

// Encoder rows that the screen's int16 rounding blurs: every row is u plus a
// small private part (2e-4 of u, about half the rounding step ‖w‖/46,340),
// the biases 0.002 apart. The pre-activations' order then rests on
// differences of a few thousandths, which the estimates' rounding (about
// 0.004 here) scrambles on most items but fp32 (about 1e-5) keeps. encode's
// TopK codes must be the k largest float64 pre-activations, and a step must
// keep the same codes (its fired counts), on every item whose k-th and
// (k+1)-th differ by more than fp32 could blur (1e-4); at d = 512, CLIP's
// width, the compiled screening kernel runs.
TEST(topk_codes_follow_fp32_where_screening_blurs_the_order) {
  auto c = small(SaeKind::TopK);
  c.d = 512;
  c.m = 272;  // 17 register blocks: groups of four and a last single one
  c.k = 8;
  Sae s(c, nullptr);
  const auto& L = s.layout();
  const int64_t n = 300, d = c.d, m = c.m;  // two tasks of the screened encoder, the second part full
  auto u = randn(d, 3), r = randn(m * d, 4, 2e-4f), x = randn(n * d, 5);
  for (int64_t i = 0; i < n * d; ++i) x[i] += 0.2f * u[i % d];  // every pre-activation positive
  float* p = s.params();
  for (int64_t j = 0; j < m; ++j) {
    p[L.be + j] = 0.002f * float((j * 97) % m);
    for (int64_t q = 0; q < d; ++q) p[L.we + j * d + q] = u[q] + r[j * d + q];
  }
  // The screen's int16 steps: about a vector's norm over 46,340.
  auto rounded = [&](const float* v) {
    double ss = 0;
    for (int64_t q = 0; q < d; ++q) ss += double(v[q]) * v[q];
    return check::round_to_step(v, d, std::sqrt(ss) / 46340);
  };
  std::vector<std::vector<double>> we_hat(m);  // W_e's rows about as the screen rounds them
  for (int64_t j = 0; j < m; ++j) we_hat[j] = rounded(p + L.we + j * d);
  std::vector<float> f(n * m), kept_x;
  s.encode({x.data(), cl::DType::F32, n, d}, 0, n, f.data());
  std::vector<int64_t> counts(m, 0);
  int64_t blurred = 0, kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    Vec pre(m), est(m);
    std::vector<float> xc(d);
    for (int64_t q = 0; q < d; ++q) xc[q] = x[i * d + q] - p[L.b + q];
    const std::vector<double> xc_hat = rounded(xc.data());
    for (int64_t j = 0; j < m; ++j) {
      pre[j] = est[j] = p[L.be + j];
      for (int64_t q = 0; q < d; ++q) pre[j] += double(p[L.we + j * d + q]) * xc[q], est[j] += we_hat[j][q] * xc_hat[q];
    }
    auto order = [&](const Vec& v) {
      std::vector<int64_t> idx(m);
      for (int64_t j = 0; j < m; ++j) idx[j] = j;
      std::sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return v[a] > v[b]; });
      return idx;
    };
    const std::vector<int64_t> by_pre = order(pre), by_est = order(est);
    if (pre[by_pre[c.k - 1]] - pre[by_pre[c.k]] < 1e-4) continue;  // a near tie
    CHECK(pre[by_pre[c.k - 1]] > 0);
    const std::set<int64_t> want(by_pre.begin(), by_pre.begin() + c.k);
    blurred += std::set<int64_t>(by_est.begin(), by_est.begin() + c.k) != want;
    std::set<int64_t> got;
    for (int64_t j = 0; j < m; ++j)
      if (f[i * m + j] != 0) got.insert(j), ++counts[j];
    CHECK(got == want);
    kept_x.insert(kept_x.end(), x.begin() + i * d, x.begin() + (i + 1) * d);
    ++kept;
  }
  CHECK(kept >= n * 7 / 8 && blurred > kept / 2);  // the estimates alone would pick other codes
  s.step({kept_x.data(), cl::DType::F32, kept, d}, 0, kept);
  for (int64_t j = 0; j < m; ++j) CHECK(s.fired()[j] == counts[j]);
}

}  // namespace
