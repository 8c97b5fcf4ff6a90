// A vocabulary prepared once for the screened exact scan: the frame fitted
// over the whole vocabulary, every row rounded once (int8, or bf16 where the
// CPU lacks VNNI) with its error terms, and 1/‖row‖ for cosine. Searches
// then read 1 (int8) or 2 (bf16) bytes per value instead of rounding 4 per
// value on every call, and re-score candidates from the exact rows, so the
// results are those of the unprepared scan (TopKAccumulator::add_prepared).
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "matrix.h"
#include "progress.h"
#include "topk_screen.h"

namespace cl {

struct PreparedVocab {
  std::optional<ScreenFormat> format;  // none where the CPU screens in neither format (then only inv)
  int64_t rows = 0, d = 0;
  ScreenFrame frame;                   // the rows' frame; queries are packed in it
  ScreenRows screen;                   // rows × steps rounded values and per-row terms (empty without format)
  std::vector<float> inv;              // 1/‖row‖ per row, 0 for a zero row
};

// The screening format a prepared copy of dimension d takes on this CPU
// (and the scan's 'auto'): int8, then bf16, each where the CPU has it and
// the format fits d (screen_fits).
std::optional<ScreenFormat> prepared_format(int64_t d);

// Prepares `rows` (fp32 or fp16) in parallel, tiles on the compute pool.
// inv_norms (optional): the 1/‖row‖ searches would pass to add(), kept as
// they are; otherwise computed as the scan computes them.
PreparedVocab prepare_vocab(const MatrixView& rows, const float* inv_norms, Progress& progress);

// Checks a copy assembled from its arrays (a persisted one): shapes, finite
// non-negative terms, power-of-two frame scales (the bound assumes them).
void check_prepared(const PreparedVocab& p);

}  // namespace cl
