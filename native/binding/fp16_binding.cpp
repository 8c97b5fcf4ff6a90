// fp16 <-> fp32 conversion for JS (F16C when present): synchronous, since it
// runs at memory speed.
#include <napi.h>

#include "../core/fp16.h"
#include "args.h"
#include "modules.h"

namespace clb {
namespace {

// One conversion: a typed array of In (checked by its N-API type) to a new array of Out.
template <class InArray, class OutArray, napi_typedarray_type kIn, class Convert>
Napi::Value Converted(const Napi::CallbackInfo& info, const char* what, Convert convert) {
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != kIn)
    throw_coded(info.Env(), cl::ErrorCode::Dtype, std::string(what) + ", got " + typed_array_name(info[0]));
  auto in = info[0].As<InArray>();
  auto out = OutArray::New(info.Env(), in.ElementLength());
  convert(in.Data(), out.Data(), static_cast<int64_t>(in.ElementLength()));
  return out;
}

Napi::Value HalvesToFloats(const Napi::CallbackInfo& info) {
  return Converted<Napi::Uint16Array, Napi::Float32Array, napi_uint16_array>(info, "halves: expected Uint16Array (fp16 bits)",
                                                                              cl::halves_to_floats);
}

Napi::Value FloatsToHalves(const Napi::CallbackInfo& info) {
  return Converted<Napi::Float32Array, Napi::Uint16Array, napi_float32_array>(info, "floats: expected Float32Array",
                                                                               cl::floats_to_halves);
}

}  // namespace

void InitFp16(Napi::Env env, Napi::Object exports) {
  exports.Set("halvesToFloats", Napi::Function::New(env, HalvesToFloats, "halvesToFloats"));
  exports.Set("floatsToHalves", Napi::Function::New(env, FloatsToHalves, "floatsToHalves"));
}

}  // namespace clb
