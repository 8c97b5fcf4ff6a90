// The addon's entry point: engine facts, the machine's arithmetic ceilings,
// the thread count, and every export family (modules.h). ts/engine/addon.ts
// mirrors these exports as one typed interface.
#include <napi.h>

#include "../core/blas.h"
#include "../core/peaks.h"
#include "../core/threads.h"
#include "../core/topk_screen.h"
#ifdef CONCEPTLENS_CUDA
#include "../cuda/cuda_device.h"
#endif
#include "args.h"
#include "modules.h"
#include "task.h"

namespace clb {

namespace {
Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("blasCore", cl::blas_core_name());
  o.Set("computeThreads", cl::compute_threads());
  o.Set("computeNice", cl::compute_nice());
  o.Set("avx512", bool(__builtin_cpu_supports("avx512f")));
  Napi::Array screening = Napi::Array::New(env);
  for (cl::ScreenFormat f : {cl::ScreenFormat::Int8, cl::ScreenFormat::Bf16})
    if (cl::screening_available(f)) screening.Set(screening.Length(), cl::screen_format_name(f));
  o.Set("screening", screening);
  o.Set("screenLayout", cl::kScreenLayout);
#ifdef CONCEPTLENS_CUDA
  o.Set("cudaCompiled", true);
  o.Set("cudaAvailable", cl::cuda_available());
#else
  o.Set("cudaCompiled", false);
  o.Set("cudaAvailable", false);
#endif
  return o;
}

// machinePeaks(onProgress, cancel): the arithmetic ceilings (core/peaks.h), off the JS thread.
Napi::Value MachinePeaks(const Napi::CallbackInfo& info) {
  auto out = std::make_shared<cl::MachinePeaks>();
  return Task::Start(
      info.Env(), [out](cl::Progress& p) { *out = cl::measure_peaks(p); },
      [out](Napi::Env env) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("fp32MacsPerS", out->fp32_macs_per_s);
        o.Set("int8MacsPerS", out->int8_macs_per_s);
        o.Set("int16MacsPerS", out->int16_macs_per_s);
        o.Set("threads", out->threads);
        o.Set("fp32Isa", out->fp32_isa);
        return o;
      },
      info[0], info[1], {});
}

// setThreads(n): compute threads for later calls (0: all cores); returns the count in effect.
Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  const int64_t n = int_arg(info[0], "threads", 0);
  if (n > 1024) throw_coded(info.Env(), cl::ErrorCode::Arg, "threads: expected an integer in 0..1024, got " + std::to_string(n));
  cl::set_compute_threads(static_cast<int>(n));
  return Napi::Number::New(info.Env(), cl::compute_threads());
}

// setNice(n): niceness of the compute threads (0..19); returns the value in effect.
Napi::Value SetNice(const Napi::CallbackInfo& info) {
  const int64_t n = int_arg(info[0], "nice", 0);
  if (n > 19) throw_coded(info.Env(), cl::ErrorCode::Arg, "nice: expected an integer in 0..19, got " + std::to_string(n));
  cl::set_compute_nice(static_cast<int>(n));
  return Napi::Number::New(info.Env(), cl::compute_nice());
}
}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  cl::init_blas_threading();
  cl::mark_event_loop_thread();
  exports.Set("info", Napi::Function::New(env, Info, "info"));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads, "setThreads"));
  exports.Set("setNice", Napi::Function::New(env, SetNice, "setNice"));
  exports.Set("machinePeaks", Napi::Function::New(env, MachinePeaks, "machinePeaks"));
  for (auto init : {InitTopK, InitFp16, InitBlas, InitGlm, InitFaiss, InitFalcon, InitSplice, InitVocab, InitSae})
    init(env, exports);
  return exports;
}

}  // namespace clb

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return clb::Init(env, exports); }

NODE_API_MODULE(conceptlens, InitAddon)
