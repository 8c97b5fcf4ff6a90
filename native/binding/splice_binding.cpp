// spliceDecompose / splicePath / spliceCertify: the batched SpLiCE solvers, off the JS thread.
#include <napi.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "../core/splice.h"
#ifdef CONCEPTLENS_CUDA
#include "../cuda/splice_cuda.h"
#endif
#include "args.h"
#include "modules.h"
#include "task.h"

namespace clb {
namespace {

// Weights go to options.out when given (a caller reusing one buffer skips
// first-touch page faults on hundreds of MB), else to a pool array. Outputs
// stay uninitialised (the solvers write every element once) until
// finish() hands them to JS without a copy.
struct Results {
  cl::Scratch<float> weights;
  float* out = nullptr;
  cl::Scratch<double> objective, gap;
  cl::Scratch<int32_t> iterations;
  std::vector<cl::SplicePathPoint> points;
  Results(int64_t n, int64_t c, float* out_)
      : weights(out_ ? 0 : size_t(n * c)), out(out_), objective(size_t(n)), gap(size_t(n)), iterations(size_t(n)) {}
  cl::SpliceOutput output() { return {out ? out : weights.data(), objective.data(), gap.data(), iterations.data()}; }
};

Napi::Object results_object(Napi::Env env, Results& r, const Napi::Value& out) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("weights", r.out ? out : hand_over<Napi::Float32Array>(env, r.weights));
  o.Set("objective", hand_over<Napi::Float64Array>(env, r.objective));
  o.Set("gap", hand_over<Napi::Float64Array>(env, r.gap));
  o.Set("iterations", hand_over<Napi::Int32Array>(env, r.iterations));
  return o;
}

double option(const Napi::Object& o, const char* key, double fallback) {
  Napi::Value v = o.Get(key);
  return v.IsUndefined() ? fallback : number_arg(v, std::string("options.") + key);
}

// A count of iterations or steps: an integer from 1 to 2³¹ − 1 when given
// (1.5 would be truncated, 0 would mean the default).
int count_option(const Napi::Object& o, const char* key, int fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  const std::string name = std::string("options.") + key;
  const int64_t n = int_arg(v, name, 1);
  if (n > INT32_MAX) throw_coded(v.Env(), cl::ErrorCode::Arg, name + ": expected an integer <= 2147483647, got " + std::to_string(n));
  return static_cast<int>(n);
}

// options: { solver?: 'auto'|'fista'|'admm'|'ws', l1, tol?, maxIter?, rho?, device? }
cl::SpliceOptions solve_options(const Napi::Value& v) {
  if (!v.IsObject()) throw_coded(v.Env(), cl::ErrorCode::Arg, "options: expected an object");
  Napi::Object o = v.As<Napi::Object>();
  cl::SpliceOptions opt;
  if (!o.Get("solver").IsUndefined())
    opt.solver = translating(v.Env(), [&] { return cl::parse_splice_solver(string_arg(o.Get("solver"), "options.solver")); });
  opt.l1 = option(o, "l1", opt.l1);
  opt.tol = option(o, "tol", opt.tol);
  opt.max_iter = count_option(o, "maxIter", 0);
  opt.rho = option(o, "rho", opt.rho);
  return opt;
}

struct Inputs {
  cl::MatrixView dict, samples;
  int64_t n, c, d;
};

// (dictionary, c, d, samples, n, ...): fp32 or fp16 matrices, shapes checked.
Inputs inputs(const Napi::CallbackInfo& info) {
  int64_t c = int_arg(info[1], "c", 1), d = int_arg(info[2], "d", 1), n = int_arg(info[4], "n", 0);
  return {matrix_arg(info[0], c, d, "dictionary"), matrix_arg(info[3], n, d, "samples"), n, c, d};
}

// options.out: an n×c Float32Array to write the weights into (returned as `weights`).
std::shared_ptr<Napi::Reference<Napi::Value>> out_arg(const Napi::Value& options, int64_t n, int64_t c, float*& ptr) {
  Napi::Value v = options.As<Napi::Object>().Get("out");
  ptr = nullptr;
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  ptr = const_cast<float*>(f32_arg(v, n * c, "options.out"));
  return std::make_shared<Napi::Reference<Napi::Value>>(Napi::Persistent(v));
}

using SolveFn = void (*)(const cl::MatrixView&, const cl::MatrixView&, const cl::SpliceOptions&, const float*,
                        const cl::SpliceOutput&, cl::Progress&);

// options.device: 'cpu' (default) or 'cuda' (the GPU FISTA solver, splice_cuda.h).
SolveFn solver_for(const Napi::Value& options) {
  if (device_arg(options.As<Napi::Object>().Get("device"), "options.device") == Device::Cpu) return cl::splice_solve;
#ifdef CONCEPTLENS_CUDA
  return cl::cuda_splice_solve;
#else
  return nullptr;  // unreachable: device_arg refuses 'cuda' without CUDA
#endif
}

// spliceDecompose(dictionary, c, d, samples, n, options, warm|null, onProgress|null, cancel|null)
//   → Promise<{ weights, objective, gap, iterations }>
Napi::Value Decompose(const Napi::CallbackInfo& info) {
  Inputs in = inputs(info);
  cl::SpliceOptions opt = solve_options(info[5]);
  const SolveFn solve = solver_for(info[5]);
  const float* warm = info[6].IsNull() || info[6].IsUndefined() ? nullptr : f32_arg(info[6], in.n * in.c, "warm");
  float* out = nullptr;
  auto out_ref = out_arg(info[5], in.n, in.c, out);
  auto r = std::make_shared<Results>(in.n, in.c, out);
  return Task::Start(
      info.Env(), [in, opt, warm, r, solve](cl::Progress& p) { solve(in.dict, in.samples, opt, warm, r->output(), p); },
      [r, out_ref](Napi::Env env) -> Napi::Value { return results_object(env, *r, out_ref ? out_ref->Value() : env.Undefined()); },
      info[7], info[8], {info[0], info[3], info[6]});
}

// splicePath(dictionary, c, d, samples, n, options & { targetL0, l0Tol?, maxSteps? }, onProgress|null, cancel|null)
//   → Promise<{ weights, objective, gap, iterations, points: [{ l1, meanL0, meanObjective }] }>
Napi::Value Path(const Napi::CallbackInfo& info) {
  Inputs in = inputs(info);
  cl::SpliceOptions opt = solve_options(info[5]);
  Napi::Object o = info[5].As<Napi::Object>();
  cl::SplicePathOptions path;
  path.target_l0 = number_arg(o.Get("targetL0"), "options.targetL0");
  path.l0_tol = option(o, "l0Tol", path.l0_tol);
  path.max_steps = count_option(o, "maxSteps", path.max_steps);
  auto r = std::make_shared<Results>(in.n, in.c, nullptr);
  return Task::Start(
      info.Env(),
      [in, opt, path, r](cl::Progress& p) { r->points = cl::splice_path(in.dict, in.samples, opt, path, r->output(), p); },
      [r](Napi::Env env) -> Napi::Value {
        Napi::Object o = results_object(env, *r, env.Undefined());
        Napi::Array pts = Napi::Array::New(env, r->points.size());
        for (size_t k = 0; k < r->points.size(); ++k) {
          Napi::Object pt = Napi::Object::New(env);
          pt.Set("l1", r->points[k].l1);
          pt.Set("meanL0", r->points[k].mean_l0);
          pt.Set("meanObjective", r->points[k].mean_objective);
          pts.Set(uint32_t(k), pt);
        }
        o.Set("points", pts);
        return o;
      },
      info[6], info[7], {info[0], info[3]});
}

// checkSpliceOptions(options): throws as a solve would on these options (sync; for checks at construction).
Napi::Value CheckOptions(const Napi::CallbackInfo& info) {
  const cl::SpliceOptions opt = solve_options(info[0]);
  translating(info.Env(), [&] { cl::check_splice_options(opt); });
  return info.Env().Undefined();
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("checkSpliceOptions", Napi::Function::New(env, CheckOptions));
  exports.Set("spliceDecompose", Napi::Function::New(env, Decompose));
  exports.Set("splicePath", Napi::Function::New(env, Path));
}

}  // namespace

void InitSplice(Napi::Env env, Napi::Object exports) { Init(env, exports); }

}  // namespace clb
