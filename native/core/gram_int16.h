// Products of columns rounded to 12-bit integers, on AVX-512 VNNI: Gram
// matrices and cross products at about twice the fp32 GEMM rate, for solvers
// whose answer moves far less than the rounding (LE's elastic net: see
// glm.h). Each column is centred and rounded with its own scale,
//   x̂_j = mean_j + scale_j·q_j, q_j integers in [−2047, 2047],
// so a product of two rounded columns is an exact integer sum (a pair's two
// products stay below 2²³, and 128 pairs below 2³¹), scaled once.
#pragma once
#include <cstdint>
#include <vector>

#include "scratch.h"

namespace cl {

// Whether this CPU runs the kernels (AVX-512 BW and VNNI; cpu_avx512f() too,
// so CONCEPTLENS_NO_AVX512 turns them off).
bool int16_gram_available();

// |q| ≤ kRoundedMax: 12 bits with the sign.
constexpr int32_t kRoundedMax = 2047;

// An n×c matrix's columns, centred and rounded, packed in pairs of rows (two
// int16 in an int32, the earlier row low) for the pair products, `width`
// columns to a group: [padded/width][pairs][width]. Width 16 is a vector,
// for the operand read as vectors (it can be broadcast too); width 8 halves
// what a broadcast-only operand streams. Columns are padded to a multiple of
// 48 with zeros.
struct RoundedColumns {
  int64_t cols = 0, pairs = 0, padded = 0, width = 16;
  std::vector<float> scale;  // per padded column; 0 for padding and constant columns
  Scratch<int32_t> packed;
};

// Rounds A (n×c, row-major) column by column: q = round((x − mean)/scale),
// scale = spread/2047 with spread = max_i |x_ij − mean_j| (given). width: 16 or 8.
RoundedColumns round_columns(const float* A, int64_t n, int64_t c, const double* mean, const double* spread,
                             int64_t width);

// The upper triangle, diagonal included, of G = alpha·x̂ᵀx̂ over the centred
// rounded columns (G[i][j] for j ≥ i, row-major c×c; the rest is untouched
// or scratch), or added to G's with `accumulate` (rows taken a block at a
// time). x has width 16.
void int16_gram_upper(const RoundedColumns& x, float alpha, float* G, bool accumulate = false);

// C = alpha·ŷᵀx̂ (y.cols × x.cols, row-major), or C += it. x has width 16, y either.
void int16_cross(const RoundedColumns& y, const RoundedColumns& x, float alpha, float* C, bool accumulate = false);

}  // namespace cl
