// Argument readers with strict dtype/shape checks, in the manner of
// onnxruntime-node: a wrong dtype or length is an error naming the argument,
// the expected and the actual value. Every error leaving the addon carries a
// `code` (ERR_DTYPE, ERR_SHAPE, ERR_ARG, ...; the JS side's ConceptLensError).
#pragma once
#include <napi.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <memory>
#include <string>

#include "../core/error.h"
#include "../core/matrix.h"
#include "../core/scratch.h"

namespace clb {

// A JS Error with `code` set (TypeError for ERR_DTYPE, RangeError for ERR_SHAPE/ERR_ARG).
Napi::Error coded_error(Napi::Env env, const char* code, const std::string& msg);
[[noreturn]] void throw_coded(Napi::Env env, cl::ErrorCode code, const std::string& msg);
// The code for an exception thrown by the core: its cl::Error code, ERR_ABORTED,
// ERR_MEMORY for allocation failures, else ERR_ENGINE.
const char* exception_code(const std::exception& e);
// Runs f, turning core exceptions into coded JS errors (for synchronous calls).
template <class F>
auto translating(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw coded_error(env, exception_code(e), e.what());
  }
}

std::string typed_array_name(const Napi::Value& v);
// The name JS gives a TypedArray type ("Float32Array", ...).
const char* typed_array_type_name(napi_typedarray_type t);

// A TypedArray of type t (ERR_DTYPE otherwise), read in place, holding exactly
// `length` elements, or at least `length` with Length::AtLeast (ERR_SHAPE otherwise).
enum class Length { Exactly, AtLeast };
template <class Array>
Array typed_arg(const Napi::Value& v, napi_typedarray_type t, int64_t length, const std::string& name,
                Length rule = Length::Exactly) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != t)
    throw_coded(v.Env(), cl::ErrorCode::Dtype, name + ": expected " + typed_array_type_name(t) + ", got " + typed_array_name(v));
  Array a = v.As<Array>();
  const int64_t got = static_cast<int64_t>(a.ElementLength());
  if (rule == Length::Exactly ? got != length : got < length)
    throw_coded(v.Env(), cl::ErrorCode::Shape, name + ": expected " + (rule == Length::AtLeast ? "at least " : "") +
                                                   std::to_string(length) + " elements, got " + std::to_string(got));
  return a;
}

// s's array as a JS array of type A, without a copy; its block goes back to
// the scratch pool when JS collects the array.
template <class A, class T>
A hand_over(Napi::Env env, cl::Scratch<T>& s) {
  const size_t n = s.size();
  auto* block = new cl::scratch::Block(s.release());
  Napi::ArrayBuffer buf;
  try {
    buf = Napi::ArrayBuffer::New(
        env, block->data, n * sizeof(T), [](Napi::Env, void*, cl::scratch::Block* b) { cl::scratch::give(*b), delete b; }, block);
  } catch (...) {  // refused (e.g. an env shutting down): the block was never JS's
    cl::scratch::give(*block);
    delete block;
    throw;
  }
  return A::New(env, n, buf, 0);
}

// A new JS array of type A holding v's values (converted to A's element type).
template <class A, class T>
A copy_out(Napi::Env env, const std::vector<T>& v) {
  A a = A::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}

// Float32Array (fp32) or Uint16Array (fp16 bits) of exactly rows × cols.
cl::MatrixView matrix_arg(const Napi::Value& v, int64_t rows, int64_t cols, const std::string& name);
// Float32Array only, rows × cols.
const float* f32_matrix_arg(const Napi::Value& v, int64_t rows, int64_t cols, const std::string& name);
const float* f32_arg(const Napi::Value& v, int64_t length, const std::string& name);
int64_t int_arg(const Napi::Value& v, const std::string& name, int64_t min_value);
double number_arg(const Napi::Value& v, const std::string& name);
std::string string_arg(const Napi::Value& v, const std::string& name);
bool bool_arg(const Napi::Value& v, const std::string& name);
// Int32Array over a SharedArrayBuffer that JS sets to 1 on abort; or null.
const std::atomic<int32_t>* cancel_arg(const Napi::Value& v);

// 'cpu' (also undefined) or 'cuda'. Asking for 'cuda' from an engine built
// without CUDA, or where no device answers, is ERR_DEVICE.
enum class Device { Cpu, Cuda };
Device device_arg(const Napi::Value& v, const std::string& name);

// One object's "a call is running" flag: a second call while one runs is
// ERR_BUSY. claim() in the JS thread; the returned guard, held by the worker,
// releases the flag when the work ends (however it ends).
class BusyFlag {
 public:
  explicit BusyFlag(std::string owner) : owner_(std::move(owner)) {}
  using Guard = std::shared_ptr<void>;
  Guard claim(Napi::Env env);
  void require_idle(Napi::Env env) const;

 private:
  std::string owner_;
  std::shared_ptr<std::atomic<bool>> busy_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace clb
