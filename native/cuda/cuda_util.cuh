// What every CUDA translation unit of the engine shares: CUDA errors become
// cl::Error naming the call that failed, and device memory owned like a
// std::unique_ptr.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>

#include "../core/error.h"

namespace cl {

inline void check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  cudaGetLastError();  // clear a non-sticky error so later calls report their own
  fail(std::string("CUDA: ") + what + " failed: " + cudaGetErrorString(err));
}

struct CudaFree {
  void operator()(void* p) const { cudaFree(p); }
};

// n values of device memory, freed with its owner.
template <typename T>
using DeviceBuffer = std::unique_ptr<T[], CudaFree>;

// Never a null buffer, even for n = 0, so kernels always get a valid pointer.
template <typename T>
DeviceBuffer<T> device_alloc(int64_t n, const char* what) {
  void* p = nullptr;
  check(cudaMalloc(&p, sizeof(T) * std::max<int64_t>(n, 1)), what);
  return DeviceBuffer<T>(static_cast<T*>(p));
}

template <typename T>
void upload(T* dst, const T* src, int64_t n, const char* what) {
  check(cudaMemcpy(dst, src, sizeof(T) * n, cudaMemcpyHostToDevice), what);
}

template <typename T>
void download(T* dst, const T* src, int64_t n, const char* what) {
  check(cudaMemcpy(dst, src, sizeof(T) * n, cudaMemcpyDeviceToHost), what);
}

}  // namespace cl
