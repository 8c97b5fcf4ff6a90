// transformRows / firstNonFiniteRow: the vocabulary's per-block row work;
// snappyUncompress / plainSpans / TextHashSet: its caption work on bytes.
#include <napi.h>

#include <memory>
#include <string>

#include "../core/vocab_rows.h"
#include "../core/vocab_texts.h"
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

Napi::Uint8Array bytes_arg(const Napi::Value& v, int64_t min_length, const std::string& name) {
  return typed_arg<Napi::Uint8Array>(v, napi_uint8_array, min_length, name, Length::AtLeast);
}

int32_t* i32_arg(const Napi::Value& v, int64_t min_length, const std::string& name) {
  return typed_arg<Napi::Int32Array>(v, napi_int32_array, min_length, name, Length::AtLeast).Data();
}

// snappyUncompress(src: Uint8Array, dst: Uint8Array, what): Promise<void>, dst filled exactly. Off the JS
// thread, so the pages of a lookup decompress on every core at once.
Napi::Value SnappyUncompress(const Napi::CallbackInfo& info) {
  const std::string what = string_arg(info[2], "what");
  auto src = bytes_arg(info[0], 0, "src"), dst = bytes_arg(info[1], 0, "dst");
  const uint8_t* in = src.Data();
  uint8_t* out = dst.Data();
  const size_t n = src.ElementLength(), size = dst.ElementLength();
  return Task::Start(
      info.Env(), [in, n, out, size, what](cl::Progress&) { cl::snappy_uncompress(in, n, out, size, what); },
      [](Napi::Env env) { return env.Undefined(); }, info.Env().Null(), info.Env().Null(), {info[0], info[1]});
}

// plainSpans(data: Uint8Array, n, start: Int32Array, length: Int32Array, what): bytes the n values take.
Napi::Value PlainSpans(const Napi::CallbackInfo& info) {
  const int64_t n = int_arg(info[1], "n", 0);
  const std::string what = string_arg(info[4], "what");
  auto data = bytes_arg(info[0], 0, "data");
  int32_t* start = i32_arg(info[2], n, "start");
  int32_t* length = i32_arg(info[3], n, "length");
  const size_t used =
      translating(info.Env(), [&] { return cl::plain_spans(data.Data(), data.ElementLength(), n, start, length, what); });
  return Napi::Number::New(info.Env(), static_cast<double>(used));
}

// new TextHashSet(expected): add(bytes, start, length, n) -> Uint8Array (1: first occurrence), size, memoryBytes.
class TextHashSet : public Napi::ObjectWrap<TextHashSet> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    exports.Set("TextHashSet", DefineClass(env, "TextHashSet",
                                           {InstanceMethod("add", &TextHashSet::Add),
                                            InstanceAccessor("size", &TextHashSet::Size, nullptr),
                                            InstanceAccessor("memoryBytes", &TextHashSet::MemoryBytes, nullptr)}));
  }

  explicit TextHashSet(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TextHashSet>(info) {
    const int64_t expected = int_arg(info[0], "expected", 0);
    translating(info.Env(), [&] { set_ = std::make_unique<cl::TextHashSet>(expected); });
  }

 private:
  Napi::Value Add(const Napi::CallbackInfo& info) {
    const int64_t n = int_arg(info[3], "n", 0);
    auto bytes = bytes_arg(info[0], 0, "bytes");
    const int32_t* start = i32_arg(info[1], n, "start");
    const int32_t* length = i32_arg(info[2], n, "length");
    for (int64_t i = 0; i < n; ++i)
      if (start[i] < 0 || length[i] < 0 || static_cast<size_t>(start[i]) + length[i] > bytes.ElementLength())
        throw_coded(info.Env(), cl::ErrorCode::Arg, "text " + std::to_string(i) + ": span outside the bytes");
    auto first = Napi::Uint8Array::New(info.Env(), static_cast<size_t>(n));
    translating(info.Env(), [&] { set_->add(bytes.Data(), start, length, n, first.Data()); });
    return first;
  }
  Napi::Value Size(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(set_->size())); }
  Napi::Value MemoryBytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(set_->memory_bytes()));
  }

  std::unique_ptr<cl::TextHashSet> set_;
};

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("transformRows", Napi::Function::New(env, TransformRows));
  exports.Set("firstNonFiniteRow", Napi::Function::New(env, FirstNonFiniteRow));
  exports.Set("snappyUncompress", Napi::Function::New(env, SnappyUncompress));
  exports.Set("plainSpans", Napi::Function::New(env, PlainSpans));
  TextHashSet::Init(env, exports);
}

}  // namespace

void InitVocab(Napi::Env env, Napi::Object exports) { Init(env, exports); }

}  // namespace clb
