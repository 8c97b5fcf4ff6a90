// transformRows / firstNonFiniteRow: the vocabulary's per-block row work.
#include <napi.h>

#include "../core/vocab_rows.h"
#include "args.h"
#include "modules.h"
#include "task.h"

namespace clb {
namespace {

// transformRows(src, rows, dim, out, normalize, center, mean|null, rowBase, onProgress|null, cancel|null): Promise<void>.
// out is a caller-owned Float32Array (rows × dim) that the caller reuses from
// block to block: fresh large buffers cost a page fault per 4 KiB.
Napi::Value TransformRows(const Napi::CallbackInfo& info) {
  const int64_t rows = int_arg(info[1], "rows", 0), dim = int_arg(info[2], "dim", 1);
  cl::MatrixView src = matrix_arg(info[0], rows, dim, "src");
  float* out = const_cast<float*>(f32_arg(info[3], rows * dim, "out"));
  cl::RowTransform t;
  t.normalize = info[4].ToBoolean();
  t.center = info[5].ToBoolean();
  if (t.center) t.mean = f32_arg(info[6], dim, "mean");
  const int64_t row_base = int_arg(info[7], "rowBase", 0);
  return Task::Start(
      info.Env(), [src, out, t, row_base](cl::Progress& p) { cl::transform_rows(src, out, t, row_base, p); },
      [](Napi::Env env) { return env.Undefined(); }, info[8], info[9], {info[0], info[3], info[6]});
}

// firstNonFiniteRow(src, rows, dim): the first row holding NaN/Inf, or -1 (memory speed, synchronous).
Napi::Value FirstNonFiniteRow(const Napi::CallbackInfo& info) {
  const int64_t rows = int_arg(info[1], "rows", 0), dim = int_arg(info[2], "dim", 1);
  const cl::MatrixView src = matrix_arg(info[0], rows, dim, "src");
  const int64_t bad = translating(info.Env(), [&] { return cl::first_non_finite(src); });
  return Napi::Number::New(info.Env(), static_cast<double>(bad < 0 ? -1 : bad / dim));
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("transformRows", Napi::Function::New(env, TransformRows));
  exports.Set("firstNonFiniteRow", Napi::Function::New(env, FirstNonFiniteRow));
}

}  // namespace

void InitVocab(Napi::Env env, Napi::Object exports) { Init(env, exports); }

}  // namespace clb
