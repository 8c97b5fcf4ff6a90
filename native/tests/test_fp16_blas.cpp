#include <cmath>
#include <cstring>
#include <vector>

#include "../core/blas.h"
#include "../core/cpu.h"
#include "../core/fp16.h"
#include "check.h"

TEST(fp16_scalar_and_vector_paths_agree_on_every_half) {
  std::vector<uint16_t> all(65536);
  for (int i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  std::vector<float> f(65536);
  cl::halves_to_floats(all.data(), f.data(), 65536);
  for (int i = 0; i < 65536; ++i) {
    float s = cl::half_to_float(static_cast<uint16_t>(i));
    CHECK((std::isnan(s) && std::isnan(f[i])) || std::memcmp(&s, &f[i], 4) == 0);
  }
}

TEST(float_to_half_rounds_like_the_hardware) {
  std::vector<float> x;
  for (uint32_t b = 0; b < 0xffffffffu - 4099; b += 4099) {  // a stride through every float class
    float v;
    std::memcpy(&v, &b, 4);
    x.push_back(v);
  }
  std::vector<uint16_t> hw(x.size());
  cl::floats_to_halves(x.data(), hw.data(), int64_t(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    uint16_t s = cl::float_to_half(x[i]);
    bool both_nan = std::isnan(x[i]) && (s & 0x7c00) == 0x7c00 && (hw[i] & 0x7c00) == 0x7c00;
    if (!both_nan && s != hw[i]) check::failure(__FILE__, __LINE__, "mismatch at " + std::to_string(i));
  }
}

TEST(blas_uses_the_preferred_kernels) {
  std::string want = cl::preferred_openblas_coretype();
  if (!want.empty()) CHECK(cl::blas_core_name().find(want == "SkylakeX" ? "SkylakeX" : want) != std::string::npos);
  std::vector<float> a = {1, 2, 3, 4, 5, 6}, b = {1, 0, 0, 1, 1, 1}, c(4);
  cl::sgemm(false, false, 2, 2, 3, 1.0f, a.data(), 3, b.data(), 2, 0.0f, c.data(), 2);  // [2x3]·[3x2]
  CHECK(c[0] == 4 && c[1] == 5 && c[2] == 10 && c[3] == 11);
}
