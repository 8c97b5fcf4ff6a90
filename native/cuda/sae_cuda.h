// The ReLU-L1 SAE training step (cl::Sae, sae.h) on the GPU: parameters and
// Adam moments live on the device in SaeLayout order, and each step uploads
// one host batch and runs forward, loss, backward, the decoder's tangent
// projection, Adam and atom renormalisation with dense tiled fp32 GEMMs. It
// follows Sae's dense path operation for operation, so the two agree to
// rounding. Plain C++ (no CUDA types): built only when CMake finds nvcc.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "../core/matrix.h"
#include "../core/sae.h"

namespace cl {

class CudaSaeStep {
 public:
  // storage: SaeLayout(cfg.d, cfg.m).total() floats (parameters, then Adam's
  // two moments), e.g. Sae::params(); steps: Adam steps already taken (its
  // bias correction continues from there). Only SaeKind::ReluL1.
  CudaSaeStep(const SaeConfig& cfg, const float* storage, int64_t steps = 0);
  ~CudaSaeStep();
  CudaSaeStep(const CudaSaeStep&) = delete;
  CudaSaeStep& operator=(const CudaSaeStep&) = delete;

  // One Adam step on rows [r0, r0 + n) of x (fp32 or fp16). Throws on a
  // non-finite feature or loss, before the parameters change. Fills step,
  // loss, mse, l0, fvu and dead (aux is 0, sparse false).
  SaeStats step(const MatrixView& x, int64_t r0, int64_t n);

  void upload(const float* storage);   // replaces parameters and moments
  void download(float* storage) const;  // total() floats, SaeLayout order

  // Per latent: items it fired on, summed over the steps of this object.
  const std::vector<int64_t>& fired() const;
  int64_t steps() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cl
