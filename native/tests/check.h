// A minimal test harness for the C++ core: runs on a machine without Node.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace check {

struct Case {
  const char* name;
  std::function<void()> fn;
};
int add(const char* name, std::function<void()> fn);
void failure(const char* file, int line, const std::string& what);
// Ends the current case as skipped (e.g. no GPU, no assets mirror). A file
// with a skipped case and no failure exits with kSkipCode, which CMake
// declares as ctest's SKIP_RETURN_CODE: ctest reports a skip, not a pass.
[[noreturn]] void skip(const std::string& why);
constexpr int kSkipCode = 77;

// n seeded normal samples (mean shift, standard deviation scale) for test data.
inline std::vector<float> randn(int64_t n, uint32_t seed, float scale = 1.0f, float shift = 0.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(shift, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = nd(g);
  return v;
}

// v rounded to bf16 (to nearest, ties to even), as the screening rounds.
inline float round_bf16(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  b = (b + 0x7fff + ((b >> 16) & 1)) & 0xffff0000u;
  std::memcpy(&v, &b, 4);
  return v;
}

// x (d values) rounded to the nearest multiples of `step` (ties to even).
inline std::vector<double> round_to_step(const float* x, int64_t d, double step) {
  std::vector<double> v(static_cast<size_t>(d));
  for (int64_t i = 0; i < d; ++i) v[i] = std::nearbyint(x[i] / step) * step;
  return v;
}

}  // namespace check

#define CL_CAT2(a, b) a##b
#define CL_CAT(a, b) CL_CAT2(a, b)
#define TEST(name)                                                          \
  static void name();                                                       \
  static int CL_CAT(reg_, name) = check::add(#name, name);                  \
  static void name()

#define CHECK(cond)                                                                       \
  do {                                                                                    \
    if (!(cond)) check::failure(__FILE__, __LINE__, "CHECK(" #cond ")");                  \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                             \
  do {                                                                                    \
    double _a = (a), _b = (b);                                                            \
    if (!(std::fabs(_a - _b) <= (tol))) {                                                 \
      std::ostringstream _s;                                                              \
      _s << #a " = " << _a << " vs " #b " = " << _b << " (tol " << (tol) << ")";          \
      check::failure(__FILE__, __LINE__, _s.str());                                       \
    }                                                                                     \
  } while (0)

#define CHECK_THROWS_WITH(expr, needle)                                                   \
  do {                                                                                    \
    bool _thrown = false;                                                                 \
    try {                                                                                 \
      expr;                                                                               \
    } catch (const std::exception& _e) {                                                  \
      _thrown = true;                                                                     \
      if (std::string(_e.what()).find(needle) == std::string::npos)                       \
        check::failure(__FILE__, __LINE__, std::string("message lacks '") + (needle) +    \
                                               "': " + _e.what());                        \
    }                                                                                     \
    if (!_thrown) check::failure(__FILE__, __LINE__, "expected an exception: " #expr);    \
  } while (0)
