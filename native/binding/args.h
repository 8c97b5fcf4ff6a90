// Argument readers with strict dtype/shape checks, in the manner of
// onnxruntime-node: a wrong dtype or length is a TypeError/RangeError naming
// the argument, the expected and the actual value.
#pragma once
#include <napi.h>

#include <atomic>
#include <string>

#include "../core/matrix.h"

namespace clb {

std::string typed_array_name(const Napi::Value& v);

// Float32Array (fp32) or Uint16Array (fp16 bits) of exactly rows × cols.
cl::MatrixView matrix_arg(const Napi::Value& v, int64_t rows, int64_t cols, const std::string& name);
// Float32Array only, rows × cols.
const float* f32_matrix_arg(const Napi::Value& v, int64_t rows, int64_t cols, const std::string& name);
const float* f32_arg(const Napi::Value& v, int64_t length, const std::string& name);
int64_t int_arg(const Napi::Value& v, const std::string& name, int64_t min_value);
double number_arg(const Napi::Value& v, const std::string& name);
std::string string_arg(const Napi::Value& v, const std::string& name);
// Int32Array over a SharedArrayBuffer that JS sets to 1 on abort; or null.
const std::atomic<int32_t>* cancel_arg(const Napi::Value& v);

}  // namespace clb
