#include "cuda_device.h"

#include <cuda_runtime.h>

namespace cl {

bool cuda_available() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return false;
  }
  return n > 0;
}

}  // namespace cl
