// Planted SpLiCE problems shared by the CPU and GPU solver tests.
#pragma once
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "../core/matrix.h"
#include "check.h"

namespace splice_data {

struct Data {
  std::vector<float> C, Z;  // c×d, n×d
  int64_t c, d, n;
  cl::MatrixView dict() const { return {C.data(), cl::DType::F32, c, d}; }
  cl::MatrixView samples() const { return {Z.data(), cl::DType::F32, n, d}; }
};

inline void normalise(float* v, int64_t d) {
  double s = 0;
  for (int64_t t = 0; t < d; ++t) s += double(v[t]) * v[t];
  for (int64_t t = 0; t < d; ++t) v[t] = float(v[t] / std::sqrt(s));
}

// c random unit concepts.
inline Data random_dictionary(int64_t c, int64_t d, uint32_t seed) {
  Data data{check::randn(c * d, seed), {}, c, d, 0};
  for (int64_t j = 0; j < c; ++j) normalise(data.C.data() + j * d, d);
  return data;
}

// Samples: normalised sparse non-negative mixtures of k concepts plus noise.
inline void plant(Data& data, int64_t n, int k, double noise, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<double> nd;
  std::uniform_int_distribution<int64_t> pick(0, data.c - 1);
  std::uniform_real_distribution<double> amp(0.2, 1.0);
  data.n = n;
  data.Z.assign(n * data.d, 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    float* z = data.Z.data() + i * data.d;
    for (int a = 0; a < k; ++a) {
      const int64_t j = pick(g);
      const double w = amp(g);
      for (int64_t t = 0; t < data.d; ++t) z[t] += float(w * data.C[j * data.d + t]);
    }
    for (int64_t t = 0; t < data.d; ++t) z[t] += float(noise * nd(g));
    normalise(z, data.d);
  }
}

}  // namespace splice_data
