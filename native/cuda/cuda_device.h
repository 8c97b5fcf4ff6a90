// Whether a CUDA device answers. Plain C++ (no CUDA types): built only when
// CMake finds nvcc (CONCEPTLENS_CUDA is then defined).
#pragma once

namespace cl {

// A usable CUDA device is present (false on any runtime error, e.g. no driver).
bool cuda_available();

}  // namespace cl
