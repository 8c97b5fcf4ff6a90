// Planted SpLiCE problems shared by the CPU and GPU solver tests.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "../core/fp16.h"
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

// An fp16 .npy file (C order, '<f2') as floats; empty when it is missing.
inline std::vector<float> read_npy_f16(const std::string& path, int64_t& rows, int64_t& cols) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return {};
  char pre[10];
  f.read(pre, 10);
  uint16_t hlen = uint16_t(uint8_t(pre[8]) | (uint8_t(pre[9]) << 8));
  std::string header(hlen, ' ');
  f.read(&header[0], hlen);
  CHECK(header.find("'<f2'") != std::string::npos);
  auto open = header.find("'shape': (");
  rows = std::stoll(header.substr(open + 10));
  cols = std::stoll(header.substr(header.find(',', open) + 1));
  std::vector<uint16_t> h(rows * cols);
  f.read(reinterpret_cast<char*>(h.data()), std::streamsize(h.size() * 2));
  std::vector<float> out(h.size());
  cl::halves_to_floats(h.data(), out.data(), int64_t(h.size()));
  return out;
}

// The real CLIP ViT-B/32 text embeddings of the assets mirror (Detic's LVIS,
// COCO, Objects365 and OpenImages concepts, 2,148 × 512, not normalised), in
// that order; c = 0 when the mirror is absent. The mirror is
// $CONCEPTLENS_ASSETS, else the shared/assets folder beside the repository.
inline Data detic_embeddings() {
  const char* env = std::getenv("CONCEPTLENS_ASSETS");
  std::string here = __FILE__;  // <repo>/native/tests/splice_data.h
  std::string dir = std::string(env ? env : here.substr(0, here.rfind('/')) + "/../../../shared/assets") + "/embeddings/detic/";
  Data data{{}, {}, 0, 512, 0};
  for (const char* file : {"lvis_v1_clip_a+cname.npy", "coco_clip_a+cname.npy", "o365_clip_a+cnamefix.npy",
                           "oid_clip_a+cname.npy"}) {
    int64_t rows = 0, cols = 0;
    std::vector<float> part = read_npy_f16(dir + file, rows, cols);
    if (part.empty()) return Data{{}, {}, 0, 512, 0};
    CHECK(cols == 512);
    data.C.insert(data.C.end(), part.begin(), part.end());
    data.c += rows;
  }
  return data;
}

// A stand-in for them without the mirror: c concepts sharing one large mean
// direction (as CLIP's do) and grouped around 50 centres.
inline Data correlated_concepts(int64_t c, int64_t d, uint32_t seed) {
  std::vector<float> mean = check::randn(d, seed), centres = check::randn(50 * d, seed + 1);
  Data data{check::randn(c * d, seed + 2, 0.5f), {}, c, d, 0};
  for (int64_t j = 0; j < c; ++j)
    for (int64_t t = 0; t < d; ++t) data.C[j * d + t] += 3 * mean[t] + centres[(j % 50) * d + t];
  return data;
}

// Appends `count` concepts t·a + (1 − t)·b of two distinct L2-normalised
// existing ones, t uniform in [0.2, 0.8]: near-duplicates, as real
// vocabularies hold.
inline void add_mixtures(Data& data, int64_t count, uint32_t seed) {
  const int64_t c = data.c, d = data.d;
  std::vector<float> unit(data.C);
  for (int64_t j = 0; j < c; ++j) normalise(unit.data() + j * d, d);
  std::mt19937 g(seed);
  std::uniform_int_distribution<int64_t> pick(0, c - 1), other(1, c - 1);
  std::uniform_real_distribution<double> mix(0.2, 0.8);
  for (int64_t k = 0; k < count; ++k) {
    const int64_t a = pick(g), b = (a + other(g)) % c;
    const double t = mix(g);
    for (int64_t x = 0; x < d; ++x) data.C.push_back(float(t * unit[a * d + x] + (1 - t) * unit[b * d + x]));
  }
  data.c += count;
}

// SpLiCE's dictionary, in place: normalise each concept, subtract the mean
// concept, normalise again. Returns the normalised concepts before centring.
inline std::vector<float> centre_dictionary(Data& data) {
  const int64_t c = data.c, d = data.d;
  std::vector<double> mean(d, 0.0);
  for (int64_t j = 0; j < c; ++j) {
    normalise(data.C.data() + j * d, d);
    for (int64_t t = 0; t < d; ++t) mean[t] += data.C[j * d + t] / double(c);
  }
  std::vector<float> unit(data.C);
  for (int64_t j = 0; j < c; ++j) {
    for (int64_t t = 0; t < d; ++t) data.C[j * d + t] -= float(mean[t]);
    normalise(data.C.data() + j * d, d);
  }
  return unit;
}

// Image-like samples for a centred dictionary: each mixes k ∈ [5, 15] of the
// uncentred unit concepts with weights in [0.2, 1], plus Gaussian noise, is
// normalised, and is then centred as SpLiCE centres image embeddings (minus
// the samples' mean, normalised again).
inline void plant_centred(Data& data, const std::vector<float>& unit, int64_t n, double noise, uint32_t seed) {
  const int64_t c = data.c, d = data.d;
  std::mt19937 g(seed);
  std::normal_distribution<double> nd;
  std::uniform_int_distribution<int64_t> pick(0, c - 1);
  std::uniform_int_distribution<int> count(5, 15);
  std::uniform_real_distribution<double> amp(0.2, 1.0);
  std::vector<double> mean(d, 0.0);
  data.n = n;
  data.Z.assign(n * d, 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    float* z = data.Z.data() + i * d;
    for (int a = count(g); a > 0; --a) {
      const int64_t j = pick(g);
      const double w = amp(g);
      for (int64_t t = 0; t < d; ++t) z[t] += float(w * unit[j * d + t]);
    }
    for (int64_t t = 0; t < d; ++t) z[t] += float(noise * nd(g));
    normalise(z, d);
    for (int64_t t = 0; t < d; ++t) mean[t] += z[t] / double(n);
  }
  for (int64_t i = 0; i < n; ++i) {
    float* z = data.Z.data() + i * d;
    for (int64_t t = 0; t < d; ++t) z[t] -= float(mean[t]);
    normalise(z, d);
  }
}

}  // namespace splice_data
