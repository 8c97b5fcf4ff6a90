// fp16 <-> fp32 conversion for JS (F16C when present): synchronous, since it
// runs at memory speed.
#include <napi.h>

#include "../core/fp16.h"
#include "args.h"
#include "modules.h"

namespace clb {
namespace {

Napi::Value HalvesToFloats(const Napi::CallbackInfo& info) {
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint16_array)
    throw_coded(info.Env(), cl::ErrorCode::Dtype, "halves: expected Uint16Array (fp16 bits), got " + typed_array_name(info[0]));
  auto in = info[0].As<Napi::Uint16Array>();
  auto out = Napi::Float32Array::New(info.Env(), in.ElementLength());
  cl::halves_to_floats(in.Data(), out.Data(), static_cast<int64_t>(in.ElementLength()));
  return out;
}

Napi::Value FloatsToHalves(const Napi::CallbackInfo& info) {
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw_coded(info.Env(), cl::ErrorCode::Dtype, "floats: expected Float32Array, got " + typed_array_name(info[0]));
  auto in = info[0].As<Napi::Float32Array>();
  auto out = Napi::Uint16Array::New(info.Env(), in.ElementLength());
  cl::floats_to_halves(in.Data(), out.Data(), static_cast<int64_t>(in.ElementLength()));
  return out;
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("halvesToFloats", Napi::Function::New(env, HalvesToFloats));
  exports.Set("floatsToHalves", Napi::Function::New(env, FloatsToHalves));
}

}  // namespace

void InitFp16(Napi::Env env, Napi::Object exports) { Init(env, exports); }

}  // namespace clb
