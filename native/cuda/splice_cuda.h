// SpLiCE's batched non-negative lasso on the GPU, the counterpart of the CPU
// "fista" solver (splice.h): min_{w ≥ 0} ‖Cᵀw − z‖² + λ‖w‖₁ per sample, FISTA
// with adaptive restart, stopping per sample on the same relative duality gap
// (computed on the GPU, on the fp32 weights it returns).
// Plain C++ (no CUDA types): built only when CMake finds nvcc
// (CONCEPTLENS_CUDA is then defined).
#pragma once

#include "../core/matrix.h"
#include "../core/progress.h"
#include "../core/splice.h"

namespace cl {

// Same contract as splice_solve: dictionary c×d (fp32/fp16), samples n×d,
// warm (n×c, nullable), outputs per sample. opt.solver must be Auto or Fista
// (the only GPU solver); opt.rho is unused; max_iter 0 means 20000.
// Progress counts samples done and is checked for cancellation every
// certificate (10 iterations).
void cuda_splice_solve(const MatrixView& dictionary, const MatrixView& samples, const SpliceOptions& opt,
                       const float* warm, const SpliceOutput& out, Progress& progress);

}  // namespace cl
