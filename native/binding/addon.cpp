#include <napi.h>

#include <vector>

#include "../core/blas.h"
#include "../core/topk_screen.h"
#ifdef CONCEPTLENS_CUDA
#include "../cuda/topk_cuda.h"
#endif
#include "../core/threads.h"
#include "registry.h"

namespace clb {

namespace {
std::vector<Registrar>& registrars() {
  static std::vector<Registrar> r;
  return r;
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("blasCore", cl::blas_core_name());
  o.Set("computeThreads", cl::compute_threads());
  o.Set("avx512", bool(__builtin_cpu_supports("avx512f")));
  Napi::Array screening = Napi::Array::New(env);
  for (cl::ScreenFormat f : {cl::ScreenFormat::Int8, cl::ScreenFormat::Bf16})
    if (cl::screening_available(f)) screening.Set(screening.Length(), cl::screen_format_name(f));
  o.Set("screening", screening);
#ifdef CONCEPTLENS_CUDA
  o.Set("cudaCompiled", true);
  o.Set("cudaAvailable", cl::cuda_available());
#else
  o.Set("cudaCompiled", false);
  o.Set("cudaAvailable", false);
#endif
  return o;
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  cl::set_compute_threads(info[0].As<Napi::Number>().Int32Value());
  return Napi::Number::New(info.Env(), cl::compute_threads());
}
}  // namespace

Register::Register(Registrar r) { registrars().push_back(r); }

void register_all(Napi::Env env, Napi::Object exports) {
  for (Registrar r : registrars()) r(env, exports);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  cl::init_blas_threading();
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  register_all(env, exports);
  return exports;
}

}  // namespace clb

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return clb::Init(env, exports); }

NODE_API_MODULE(conceptlens, InitAddon)
