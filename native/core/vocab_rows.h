// Vocabulary rows as fp32 with the vocabulary's row transforms applied:
// L2 normalisation, mean-centring, and re-normalisation when both are on
// (SpLiCE's convention). Used when the transformed rows cannot be scored
// from the stored ones by the top-k kernel alone.
#pragma once
#include <cstdint>

#include "matrix.h"
#include "progress.h"

namespace cl {

struct RowTransform {
  bool normalize = false;
  bool center = false;
  const float* mean = nullptr;  // cols values; required when center
};

// Writes src (fp32 or fp16) to out (src.rows × src.cols fp32), transformed.
// Errors name the row as "vocabulary: row <row_base + i> ...": a NaN/Inf
// value, or a zero norm where normalisation needs a direction.
void transform_rows(const MatrixView& src, float* out, const RowTransform& t, int64_t row_base, Progress& progress);

}  // namespace cl
