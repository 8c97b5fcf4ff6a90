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

bool cpu_avx512f() {
  if (std::getenv("CONCEPTLENS_NO_AVX512")) return false;
  __builtin_cpu_init();  // callers include static initialisers, which may run first
  return __builtin_cpu_supports("avx512f");
}

void relaunch_with_preferred_blas(char** argv) {
  bool changed = false;
  std::string want = preferred_openblas_coretype();
  const char* have = std::getenv("OPENBLAS_CORETYPE");
  if (!want.empty() && !(have && want == have)) {
    setenv("OPENBLAS_CORETYPE", want.c_str(), 1);
    changed = true;
  }
  // libgomp spin-waits by default: on a shared 2-core machine that slows
  // FAISS more than tenfold. Read at load time, like the BLAS setting.
  if (!std::getenv("OMP_WAIT_POLICY")) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    changed = true;
  }
  if (changed) execv("/proc/self/exe", argv);  // returns only on failure: carry on as we are
}

}  // namespace cl
