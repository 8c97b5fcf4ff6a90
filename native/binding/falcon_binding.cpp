// FALCON kernels for JS: falconFiring (threshold + firing sets) and
// falconCams (GradCAM maps + largest boxes), both Promises off the JS thread.
#include <napi.h>

#include <memory>

#include "../core/falcon.h"
#include "args.h"
#include "modules.h"
#include "task.h"

namespace clb {
namespace {

// falconFiring(R: Float32Array|Uint16Array, rows, cols, sigmas, onProgress|null, cancel|null)
//   -> Promise<{ mean, std, tau, invNorms: Float32Array, offsets: Float64Array, features: Int32Array }>
Napi::Value Firing(const Napi::CallbackInfo& info) {
  int64_t rows = int_arg(info[1], "rows", 1), cols = int_arg(info[2], "cols", 1);
  cl::MatrixView r = matrix_arg(info[0], rows, cols, "representations");
  double sigmas = number_arg(info[3], "sigmas");
  auto out = std::make_shared<cl::Firing>();
  return Task::Start(
      info.Env(), [out, r, sigmas](cl::Progress& p) { *out = cl::falcon_firing(r, sigmas, p); },
      [out](Napi::Env env) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("mean", out->mean);
        o.Set("std", out->std);
        o.Set("tau", double(out->tau));
        o.Set("invNorms", copy_out<Napi::Float32Array>(env, out->inv_norms));
        o.Set("offsets", copy_out<Napi::Float64Array>(env, out->offsets));
        o.Set("features", copy_out<Napi::Int32Array>(env, out->features));
        return o;
      },
      info[4], info[5], {info[0]});
}

std::vector<int32_t> int32_list(const Napi::Value& v, const std::string& name) {
  auto a = typed_arg<Napi::Int32Array>(v, napi_int32_array, 0, name, Length::AtLeast);
  return std::vector<int32_t>(a.Data(), a.Data() + a.ElementLength());
}

// One entry of the layers array: { acts, grads|null, channels, height, width }.
cl::CamLayer cam_layer(const Napi::Value& v, int64_t n, const std::string& name, std::vector<Napi::Value>& keep) {
  if (!v.IsObject()) throw_coded(v.Env(), cl::ErrorCode::Arg, name + ": expected { acts, grads, channels, height, width }");
  Napi::Object o = v.As<Napi::Object>();
  cl::CamLayer l;
  l.channels = int_arg(o.Get("channels"), name + ".channels", 1);
  l.height = int_arg(o.Get("height"), name + ".height", 1);
  l.width = int_arg(o.Get("width"), name + ".width", 1);
  int64_t len = n * l.channels * l.height * l.width;
  l.acts = f32_arg(o.Get("acts"), len, name + ".acts");
  Napi::Value g = o.Get("grads");
  if (!g.IsNull() && !g.IsUndefined()) l.grads = f32_arg(g, len, name + ".grads");
  keep.push_back(o);
  return l;
}

// falconCams(layers, n, group: Int32Array, outHeight, outWidth, threshold, onProgress|null, cancel|null)
//   -> Promise<{ cams: Float32Array (n × outHeight × outWidth), boxes: Int32Array (n × [left, top, right, bottom)) }>
Napi::Value Cams(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) throw_coded(env, cl::ErrorCode::Arg, "layers: expected an array of layer objects");
  int64_t n = int_arg(info[1], "n", 1);
  std::vector<Napi::Value> keep;
  std::vector<cl::CamLayer> layers;
  Napi::Array arr = info[0].As<Napi::Array>();
  for (uint32_t i = 0; i < arr.Length(); ++i)
    layers.push_back(cam_layer(arr.Get(i), n, "layers[" + std::to_string(i) + "]", keep));
  std::vector<int32_t> group = int32_list(info[2], "group");
  cl::CamOptions opt;
  opt.out_height = int_arg(info[3], "outHeight", 1);
  opt.out_width = int_arg(info[4], "outWidth", 1);
  opt.threshold = static_cast<float>(number_arg(info[5], "threshold"));
  auto cams = std::make_shared<std::vector<float>>(n * opt.out_height * opt.out_width);
  auto boxes = std::make_shared<std::vector<cl::Box>>(n);
  return Task::Start(
      env, [=](cl::Progress& p) { cl::falcon_cams(layers, n, group, opt, cams->data(), boxes->data(), p); },
      [cams, boxes](Napi::Env env) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("cams", copy_out<Napi::Float32Array>(env, *cams));
        auto b = Napi::Int32Array::New(env, boxes->size() * 4);
        for (size_t i = 0; i < boxes->size(); ++i) {
          const cl::Box& x = (*boxes)[i];
          int32_t* d = b.Data() + 4 * i;
          d[0] = x.left, d[1] = x.top, d[2] = x.right, d[3] = x.bottom;
        }
        o.Set("boxes", b);
        return o;
      },
      info[6], info[7], keep);
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("falconFiring", Napi::Function::New(env, Firing));
  exports.Set("falconCams", Napi::Function::New(env, Cams));
}

}  // namespace

void InitFalcon(Napi::Env env, Napi::Object exports) { Init(env, exports); }

}  // namespace clb
