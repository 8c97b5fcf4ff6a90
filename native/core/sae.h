// Sparse autoencoder training (Discover-then-Name, Rao et al. 2024) on the BLAS.
//   x̄ = x − b;  f = act(W_e x̄ + b_e);  x̂ = Dᵀ f + b
//   loss = mean_i [ mean_c (x − x̂)² + λ Σ_j |f_j| ]  (+ α·aux for TopK kinds)
// act is ReLU (ReLU-L1), per-item top-k (TopK) or batch-wide top n·k
// (BatchTopK). The decoder is held as D (m × d): row j is dictionary atom j,
// i.e. column j of the d × m decoder matrix; atoms stay unit-norm (gradient
// projected onto the tangent space before Adam, renormalised after).
// TopK's encoder, where the CPU has AVX512-VNNI, estimates W_e x̄ in int16 at
// twice the fp32 rate, with a rigorous bound on each estimate's error, and
// computes in fp32 only the entries that could be codes: the codes are the
// fp32 encoder's.
#pragma once
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "matrix.h"
#include "progress.h"

namespace cl {

struct SaeWork;  // a batch's scratch: inputs, pre-activations, codes, sums (sae.cpp)

enum class SaeKind : int32_t { ReluL1 = 0, TopK = 1, BatchTopK = 2 };

struct SaeConfig {
  int64_t d = 0, m = 0;
  SaeKind kind = SaeKind::ReluL1;
  int32_t k = 32;             // active latents per item (TopK, BatchTopK)
  float l1 = 3e-5f;           // λ
  float lr = 5e-4f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  float aux_coef = 1.0f / 32;  // α of the dead-latent loss (TopK kinds)
  int32_t aux_k = 256;        // dead latents each item may use in the aux loss
  int64_t dead_steps = 256;   // a latent is dead for the aux loss after this many steps unfired
  uint64_t seed = 0;
  // ReLU-L1 switches from four GEMMs to sparse kernels on the active codes
  // while the last batch's active fraction is below this (TopK kinds always
  // use the sparse kernels). 0.25 is about the crossover measured at d=512,
  // m=4096, batch 4096 on 2 cores (one step's CPU time: dense 0.63 s, sparse
  // 0.42 s at 15% active, 0.77 s at 32%).
  float sparse_below = 0.25f;
};

struct SaeStats {
  int64_t step = 0;       // steps taken so far (after this one)
  double loss = 0;        // total objective, including λ and aux terms
  double mse = 0;         // mean over items of mean over d of (x − x̂)²
  double aux = 0;         // aux reconstruction error (before α); 0 for ReLU-L1
  double l0 = 0;          // mean active latents per item
  double fvu = 0;         // Σ‖x − x̂‖² / Σ‖x − mean_batch x‖²
  int64_t dead = 0;       // latents unfired since the last resample
  bool sparse = false;    // which path the step took
  bool screened = false;  // TopK's encoder screened in int16 (the codes are fp32's either way)
};

// Parameter layout in one float block: [W_e m·d | b_e m | D m·d | b d],
// followed by Adam's first and second moments in the same layout.
struct SaeLayout {
  int64_t we, be, dec, b, params;
  explicit SaeLayout(int64_t d, int64_t m)
      : we(0), be(m * d), dec(m * d + m), b(2 * m * d + m), params(2 * m * d + m + d) {}
  int64_t total() const { return 3 * params; }
};

class Sae {
 public:
  // storage: SaeLayout(d, m).total() floats owned by the caller (a JS
  // Float32Array), or null to own it. Parameters are initialised here.
  Sae(const SaeConfig& cfg, float* storage);
  ~Sae();

  // One Adam step on rows [r0, r0 + n) of x (fp32 or fp16). item_ids (may be
  // null) name rows in errors: a NaN/Inf feature throws naming step and item,
  // and a diverged loss throws before any parameter changes. Deterministic:
  // the same state and batch give the same bits whatever the thread count.
  SaeStats step(const MatrixView& x, int64_t r0, int64_t n, const int64_t* item_ids = nullptr);

  // Concept strengths f(x) (n × m, written to out) of rows [r0, r0 + n) with
  // the current parameters; no training state changes. BatchTopK selects
  // within each call's rows.
  void encode(const MatrixView& x, int64_t r0, int64_t n, float* out);

  // Latents that have not fired since the last resample (or the start).
  std::vector<int64_t> dead() const;
  // Starts collecting resampling candidates from the steps that follow:
  // a weighted reservoir (without replacement) of the centred inputs x − b
  // with weight loss², one slot per currently dead latent.
  void resample_begin();
  // Re-seeds the dead latents from the collected inputs; returns them.
  std::vector<int64_t> resample_apply();
  bool collecting() const { return collecting_; }

  // The whole training state (parameters, moments, step, firing counts, the
  // density that picks ReLU-L1's path, the RNG, the resampling reservoir),
  // format 2: written to path.tmp, synced, renamed over path. After load, the
  // steps continue bit for bit as if never interrupted. load also reads
  // format 1 (no RNG or reservoir) and refuses another shape or kind.
  void save(const std::string& path) const;
  void load(const std::string& path);
  static SaeConfig read_config(const std::string& path);

  const SaeConfig& config() const { return cfg_; }
  const SaeLayout& layout() const { return lay_; }
  float* params() { return p_; }
  const float* params() const { return p_; }
  const float* grads() const { return grad_.data(); }  // of the last step, after projection
  const int64_t* fired() const { return fired_.data(); }
  int64_t steps() const { return t_; }

 private:
  struct AdamStep;
  void init_params();
  void centre(const MatrixView& x, int64_t r0, int64_t n, const int64_t* ids);
  void encode_batch(int64_t n, bool sparse);
  void select_rows(int64_t i0, int64_t i1, float batch_thr, bool sparse);
  void reconstruct(int64_t n, bool sparse);
  void statistics(int64_t n, SaeStats& st);
  void dense_backward(int64_t n);
  void update_latents(int64_t n, bool sparse);
  void latent_grads(int64_t n, int64_t j0, int64_t j1, int64_t i0, int64_t i1);
  void update_latent(int64_t j, int64_t count, const AdamStep& a, float* gb);
  void collect(int64_t n);

  SaeConfig cfg_;
  SaeLayout lay_;
  std::vector<float> owned_;
  float* p_;  // params, then m1, then m2
  // Training state: with the parameters and moments, everything a step reads
  // (saved and restored by save/load, so a resumed run continues bit for bit).
  int64_t t_ = 0;
  double density_ = 1;  // active fraction of the last batch: picks ReLU-L1's path
  std::vector<int64_t> fired_;        // since last resample
  std::vector<int64_t> last_fired_;   // step index each latent last fired (aux loss)
  // Resampling reservoir: keys (log u / w), rows of x.
  bool collecting_ = false;
  int64_t slots_ = 0;
  std::vector<std::pair<double, int64_t>> heap_;  // min-heap on key → slot
  std::vector<float> pool_;
  std::mt19937_64 rng_;

  std::vector<float> grad_;
  std::unique_ptr<SaeWork> w_;  // per-batch scratch
};

}  // namespace cl
