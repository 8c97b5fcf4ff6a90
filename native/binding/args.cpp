#include "args.h"

#include <new>

#ifdef CONCEPTLENS_CUDA
#include "../cuda/cuda_device.h"
#endif

namespace clb {

Napi::Error coded_error(Napi::Env env, const char* code, const std::string& msg) {
  const std::string c = code;
  Napi::Error e = c == "ERR_DTYPE"                    ? Napi::TypeError::New(env, msg)
                  : c == "ERR_SHAPE" || c == "ERR_ARG" ? Napi::Error(Napi::RangeError::New(env, msg))
                                                       : Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

void throw_coded(Napi::Env env, cl::ErrorCode code, const std::string& msg) {
  throw coded_error(env, cl::error_code_name(code), msg);
}

const char* exception_code(const std::exception& e) {
  if (auto* ce = dynamic_cast<const cl::Error*>(&e)) return cl::error_code_name(ce->code);
  if (dynamic_cast<const cl::Cancelled*>(&e)) return "ERR_ABORTED";
  if (dynamic_cast<const std::bad_alloc*>(&e) || dynamic_cast<const std::length_error*>(&e)) return "ERR_MEMORY";
  return "ERR_ENGINE";
}

std::string typed_array_name(const Napi::Value& v) {
  if (!v.IsTypedArray()) return v.IsNull() ? "null" : v.IsUndefined() ? "undefined" : "a non-typed-array value";
  return typed_array_type_name(v.As<Napi::TypedArray>().TypedArrayType());
}

// A JS value as errors show it (as ts/errors.ts describe does): strings quoted, so '0.25' is not read as 0.25.
static std::string shown(const Napi::Value& v) {
  if (v.IsString()) return "'" + v.As<Napi::String>().Utf8Value() + "'";
  if (v.IsTypedArray()) return typed_array_name(v);
  if (v.IsArray()) return "an array";
  if (v.IsObject() && !v.IsFunction()) return "an object";
  return v.ToString().Utf8Value();
}

const char* typed_array_type_name(napi_typedarray_type t) {
  switch (t) {
    case napi_float32_array: return "Float32Array";
    case napi_float64_array: return "Float64Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_bigint64_array: return "BigInt64Array";
    default: return "another TypedArray";
  }
}

namespace {
bool is_typed(const Napi::Value& v, napi_typedarray_type t) {
  return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == t;
}

void require_length(const Napi::Value& v, int64_t expected, const std::string& what, const std::string& name) {
  int64_t got = static_cast<int64_t>(v.As<Napi::TypedArray>().ElementLength());
  if (got != expected)
    throw_coded(v.Env(), cl::ErrorCode::Shape, name + ": expected " + what + " elements, got " + std::to_string(got));
}
}  // namespace

cl::MatrixView matrix_arg(const Napi::Value& v, int64_t rows, int64_t cols, const std::string& name) {
  bool f32 = is_typed(v, napi_float32_array), f16 = is_typed(v, napi_uint16_array);
  if (!f32 && !f16)
    throw_coded(v.Env(), cl::ErrorCode::Dtype,
                name + ": expected Float32Array (fp32) or Uint16Array (fp16), got " + typed_array_name(v));
  require_length(v, rows * cols, std::to_string(rows) + "×" + std::to_string(cols) + " = " + std::to_string(rows * cols),
                 name);
  auto arr = v.As<Napi::TypedArray>();
  const uint8_t* base = static_cast<const uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
  return cl::MatrixView{base, f32 ? cl::DType::F32 : cl::DType::F16, rows, cols};
}

const float* f32_matrix_arg(const Napi::Value& v, int64_t rows, int64_t cols, const std::string& name) {
  if (!is_typed(v, napi_float32_array))
    throw_coded(v.Env(), cl::ErrorCode::Dtype, name + ": expected Float32Array, got " + typed_array_name(v));
  return matrix_arg(v, rows, cols, name).f32();
}

const float* f32_arg(const Napi::Value& v, int64_t length, const std::string& name) {
  return typed_arg<Napi::Float32Array>(v, napi_float32_array, length, name).Data();
}

int64_t int_arg(const Napi::Value& v, const std::string& name, int64_t min_value) {
  if (!v.IsNumber()) throw_coded(v.Env(), cl::ErrorCode::Arg, name + ": expected an integer, got " + shown(v));
  double d = v.As<Napi::Number>().DoubleValue();
  // 2^53: beyond it doubles skip integers, and int64 conversion of larger values is undefined.
  if (!(d >= static_cast<double>(min_value) && d <= 9007199254740992.0) || d != static_cast<double>(static_cast<int64_t>(d)))
    throw_coded(v.Env(), cl::ErrorCode::Arg,
                name + ": expected an integer >= " + std::to_string(min_value) + ", got " + shown(v));
  return static_cast<int64_t>(d);
}

double number_arg(const Napi::Value& v, const std::string& name) {
  if (!v.IsNumber()) throw_coded(v.Env(), cl::ErrorCode::Arg, name + ": expected a number, got " + shown(v));
  return v.As<Napi::Number>().DoubleValue();
}

std::string string_arg(const Napi::Value& v, const std::string& name) {
  if (!v.IsString()) throw_coded(v.Env(), cl::ErrorCode::Arg, name + ": expected a string, got " + shown(v));
  return v.As<Napi::String>().Utf8Value();
}

bool bool_arg(const Napi::Value& v, const std::string& name) {
  if (!v.IsBoolean()) throw_coded(v.Env(), cl::ErrorCode::Arg, name + ": expected a boolean, got " + shown(v));
  return v.As<Napi::Boolean>().Value();
}

const std::atomic<int32_t>* cancel_arg(const Napi::Value& v) {
  if (v.IsNull() || v.IsUndefined()) return nullptr;
  if (!is_typed(v, napi_int32_array))
    throw_coded(v.Env(), cl::ErrorCode::Dtype,
                "cancel: expected an Int32Array over a SharedArrayBuffer, got " + typed_array_name(v));
  static_assert(sizeof(std::atomic<int32_t>) == sizeof(int32_t), "atomic int32 must alias int32");
  return reinterpret_cast<const std::atomic<int32_t>*>(v.As<Napi::Int32Array>().Data());
}

Device device_arg(const Napi::Value& v, const std::string& name) {
  const std::string device = v.IsUndefined() ? "cpu" : string_arg(v, name);
  if (device == "cpu") return Device::Cpu;
  if (device != "cuda")
    throw_coded(v.Env(), cl::ErrorCode::Arg, name + ": expected 'cpu' or 'cuda', got '" + device + "'");
#ifdef CONCEPTLENS_CUDA
  if (!cl::cuda_available())
    throw_coded(v.Env(), cl::ErrorCode::Device, name + ": 'cuda' requested but no CUDA device is available");
  return Device::Cuda;
#else
  throw_coded(v.Env(), cl::ErrorCode::Device,
              name + ": 'cuda' requested but this engine was built without CUDA (no nvcc at build time)");
#endif
}

BusyFlag::Guard BusyFlag::claim(Napi::Env env) {
  if (busy_->exchange(true)) throw coded_error(env, "ERR_BUSY", owner_ + ": a call is still running; await it first");
  auto busy = busy_;
  return Guard(busy.get(), [busy](void*) { busy->store(false); });
}

void BusyFlag::require_idle(Napi::Env env) const {
  if (busy_->load()) throw coded_error(env, "ERR_BUSY", owner_ + ": a call is still running; await it first");
}

}  // namespace clb
