#include "args.h"

namespace clb {

namespace {
[[noreturn]] void type_error(const Napi::Env& env, const std::string& msg) {
  throw Napi::TypeError::New(env, msg);
}
[[noreturn]] void range_error(const Napi::Env& env, const std::string& msg) {
  throw Napi::RangeError::New(env, msg);
}
}  // namespace

std::string typed_array_name(const Napi::Value& v) {
  if (!v.IsTypedArray()) return v.IsNull() ? "null" : v.IsUndefined() ? "undefined" : "a non-typed-array value";
  switch (v.As<Napi::TypedArray>().TypedArrayType()) {
    case napi_float32_array: return "Float32Array";
    case napi_float64_array: return "Float64Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_bigint64_array: return "BigInt64Array";
    default: return "another TypedArray";
  }
}

cl::MatrixView matrix_arg(const Napi::Value& v, int64_t rows, int64_t cols, const std::string& name) {
  Napi::Env env = v.Env();
  bool f32 = v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_float32_array;
  bool f16 = v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint16_array;
  if (!f32 && !f16)
    type_error(env, name + ": expected Float32Array (fp32) or Uint16Array (fp16), got " + typed_array_name(v));
  auto arr = v.As<Napi::TypedArray>();
  if (static_cast<int64_t>(arr.ElementLength()) != rows * cols)
    range_error(env, name + ": expected " + std::to_string(rows) + "×" + std::to_string(cols) + " = " +
                         std::to_string(rows * cols) + " elements, got " + std::to_string(arr.ElementLength()));
  const uint8_t* base = static_cast<const uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
  return cl::MatrixView{base, f32 ? cl::DType::F32 : cl::DType::F16, rows, cols};
}

const float* f32_matrix_arg(const Napi::Value& v, int64_t rows, int64_t cols, const std::string& name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    type_error(v.Env(), name + ": expected Float32Array, got " + typed_array_name(v));
  return matrix_arg(v, rows, cols, name).f32();
}

const float* f32_arg(const Napi::Value& v, int64_t length, const std::string& name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    type_error(v.Env(), name + ": expected Float32Array, got " + typed_array_name(v));
  auto arr = v.As<Napi::Float32Array>();
  if (static_cast<int64_t>(arr.ElementLength()) != length)
    range_error(v.Env(), name + ": expected " + std::to_string(length) + " elements, got " +
                             std::to_string(arr.ElementLength()));
  return arr.Data();
}

int64_t int_arg(const Napi::Value& v, const std::string& name, int64_t min_value) {
  if (!v.IsNumber()) type_error(v.Env(), name + ": expected an integer, got " + v.ToString().Utf8Value());
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int64_t>(d)) || d < static_cast<double>(min_value))
    range_error(v.Env(), name + ": expected an integer >= " + std::to_string(min_value) + ", got " +
                             v.ToString().Utf8Value());
  return static_cast<int64_t>(d);
}

double number_arg(const Napi::Value& v, const std::string& name) {
  if (!v.IsNumber()) type_error(v.Env(), name + ": expected a number, got " + v.ToString().Utf8Value());
  return v.As<Napi::Number>().DoubleValue();
}

std::string string_arg(const Napi::Value& v, const std::string& name) {
  if (!v.IsString()) type_error(v.Env(), name + ": expected a string");
  return v.As<Napi::String>().Utf8Value();
}

const std::atomic<int32_t>* cancel_arg(const Napi::Value& v) {
  if (v.IsNull() || v.IsUndefined()) return nullptr;
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    type_error(v.Env(), "cancel: expected an Int32Array over a SharedArrayBuffer, got " + typed_array_name(v));
  auto arr = v.As<Napi::Int32Array>();
  static_assert(sizeof(std::atomic<int32_t>) == sizeof(int32_t), "atomic int32 must alias int32");
  return reinterpret_cast<const std::atomic<int32_t>*>(arr.Data());
}

}  // namespace clb
