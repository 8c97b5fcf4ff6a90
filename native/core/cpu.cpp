#include "cpu.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace cl {

std::string preferred_openblas_coretype() {
  if (const char* forced = std::getenv("CONCEPTLENS_OPENBLAS_CORETYPE")) return forced;
  __builtin_cpu_init();
  bool skx = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return skx ? "SkylakeX" : "";
}

void relaunch_with_preferred_blas(char** argv) {
  std::string want = preferred_openblas_coretype();
  const char* have = std::getenv("OPENBLAS_CORETYPE");
  if (want.empty() || (have && want == have)) return;
  setenv("OPENBLAS_CORETYPE", want.c_str(), 1);
  execv("/proc/self/exe", argv);  // returns only on failure: carry on with the kernels we have
}

}  // namespace cl
