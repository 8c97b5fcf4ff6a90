// What every CUDA translation unit of the engine shares: CUDA errors become
// cl::Error naming the call that failed.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "../core/error.h"

namespace cl {

inline void check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  cudaGetLastError();  // clear a non-sticky error so later calls report their own
  fail(std::string("CUDA: ") + what + " failed: " + cudaGetErrorString(err));
}

}  // namespace cl
