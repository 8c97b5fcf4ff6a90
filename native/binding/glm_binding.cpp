// glmFit / glmObjective: the elastic-net solvers of core/glm.h for JS.
#include <napi.h>

#include <memory>

#include "../core/glm.h"
#include "args.h"
#include "modules.h"
#include "task.h"

namespace clb {
namespace {

double opt_number(const Napi::Object& o, const char* key, double fallback) {
  Napi::Value v = o.Get(key);
  return v.IsUndefined() ? fallback : number_arg(v, std::string("options.") + key);
}

int64_t opt_int(const Napi::Object& o, const char* key, int64_t fallback, int64_t min_value) {
  Napi::Value v = o.Get(key);
  return v.IsUndefined() ? fallback : int_arg(v, std::string("options.") + key, min_value);
}

cl::ElasticNet elastic_net(const Napi::Object& o) {
  cl::ElasticNet en;
  en.lambda = opt_number(o, "lambda", en.lambda);
  en.alpha = opt_number(o, "alpha", en.alpha);
  return en;
}

cl::MomentArithmetic moment_arithmetic(Napi::Env env, const Napi::Object& o) {
  if (o.Get("moments").IsUndefined()) return cl::MomentArithmetic::Auto;
  const std::string m = string_arg(o.Get("moments"), "options.moments");
  if (m == "auto") return cl::MomentArithmetic::Auto;
  if (m == "fp32") return cl::MomentArithmetic::Fp32;
  if (m == "int16") return cl::MomentArithmetic::Int16;
  throw_coded(env, cl::ErrorCode::Arg, "options.moments: expected 'auto', 'fp32' or 'int16', got '" + m + "'");
}

// glmFit(X, n, p, Y, K, options, onProgress, cancel): Promise<{weights, bias, objective, iterations, momentsBy}>.
// options: { solver: 'cd' | 'saga', lambda, alpha, tol, maxPasses, moments, batch, step, maxEpochs, lookbehind, tolPerTarget, seed }.
Napi::Value GlmFit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t n = int_arg(info[1], "n", 1), p = int_arg(info[2], "p", 1), K = int_arg(info[4], "K", 1);
  const float* X = f32_arg(info[0], n * p, "X");
  const float* Y = f32_arg(info[3], n * K, "Y");
  if (!info[5].IsObject()) throw_coded(env, cl::ErrorCode::Arg, "options: expected an object");
  Napi::Object o = info[5].As<Napi::Object>();
  std::string solver = o.Get("solver").IsUndefined() ? "cd" : string_arg(o.Get("solver"), "options.solver");
  if (solver != "cd" && solver != "saga")
    throw_coded(env, cl::ErrorCode::Arg, "options.solver: expected 'cd' or 'saga', got '" + solver + "'");
  cl::ElasticNet en = elastic_net(o);
  cl::CdOptions cd;
  cd.tol = opt_number(o, "tol", cd.tol);
  cd.max_passes = opt_int(o, "maxPasses", cd.max_passes, 1);
  cd.moments = moment_arithmetic(env, o);
  cl::SagaOptions sg;
  sg.batch = opt_int(o, "batch", sg.batch, 1);
  sg.step = opt_number(o, "step", sg.step);
  sg.max_epochs = opt_int(o, "maxEpochs", sg.max_epochs, 1);
  sg.lookbehind = opt_int(o, "lookbehind", sg.lookbehind, 1);
  sg.tol_per_target = opt_number(o, "tolPerTarget", sg.tol_per_target);
  sg.seed = static_cast<uint64_t>(opt_int(o, "seed", 0, 0));
  auto fit = std::make_shared<cl::GlmFit>();
  return Task::Start(
      env,
      [=](cl::Progress& prog) {
        *fit = solver == "cd" ? cl::elastic_net_cd(X, n, p, Y, K, en, cd, prog)
                              : cl::elastic_net_saga(X, n, p, Y, K, en, sg, prog);
      },
      [fit](Napi::Env env) -> Napi::Value {
        Napi::Object r = Napi::Object::New(env);
        r.Set("weights", hand_over<Napi::Float32Array>(env, fit->weights));
        r.Set("bias", copy_out<Napi::Float32Array>(env, fit->bias));
        r.Set("objective", copy_out<Napi::Float64Array>(env, fit->objective));
        r.Set("iterations", Napi::Number::New(env, double(fit->iterations)));
        if (*fit->moments_by) r.Set("momentsBy", Napi::String::New(env, fit->moments_by));
        return r;
      },
      info[6], info[7], {info[0], info[3]});
}

// glmObjective(X, n, p, Y, K, W, b, {lambda, alpha}): Float64Array of K exact objectives.
Napi::Value GlmObjective(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t n = int_arg(info[1], "n", 1), p = int_arg(info[2], "p", 1), K = int_arg(info[4], "K", 1);
  const float* X = f32_arg(info[0], n * p, "X");
  const float* Y = f32_arg(info[3], n * K, "Y");
  const float* W = f32_arg(info[5], K * p, "W");
  const float* b = f32_arg(info[6], K, "b");
  cl::ElasticNet en = info[7].IsObject() ? elastic_net(info[7].As<Napi::Object>()) : cl::ElasticNet{};
  std::vector<double> obj = translating(env, [&] { return cl::elastic_net_objective(X, n, p, Y, K, W, b, en); });
  auto out = Napi::Float64Array::New(env, obj.size());
  std::copy(obj.begin(), obj.end(), out.Data());
  return out;
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("glmFit", Napi::Function::New(env, GlmFit, "glmFit"));
  exports.Set("glmObjective", Napi::Function::New(env, GlmObjective, "glmObjective"));
}

}  // namespace

void InitGlm(Napi::Env env, Napi::Object exports) { Init(env, exports); }

}  // namespace clb
