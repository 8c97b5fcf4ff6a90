// SAE training step against a float64 re-implementation written from the
// definitions (loss, gradients, Adam, tangent projection, renormalisation).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <set>
#include <unistd.h>
#include <string>
#include <vector>

#include "../core/sae.h"
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

void compare_steps(SaeConfig cfg, bool expect_sparse) {
  const int64_t n = 32;
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

TEST(topk_step_with_aux_loss_matches_float64_reference) { compare_steps(small(SaeKind::TopK), true); }

TEST(batchtopk_step_with_aux_loss_matches_float64_reference) { compare_steps(small(SaeKind::BatchTopK), true); }

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

}  // namespace
