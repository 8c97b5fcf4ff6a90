// matmulNT(a, m, k, b, n): a·bᵀ (m×n) on all cores, off the JS thread: the
// dense products the methods need in JS (cosine matrices, projections).
#include <napi.h>

#include "../core/blas.h"
#include "../core/threads.h"
#include "args.h"
#include "modules.h"
#include "task.h"

namespace clb {
namespace {

Napi::Value MatmulNT(const Napi::CallbackInfo& info) {
  int64_t m = int_arg(info[1], "m", 0), k = int_arg(info[2], "k", 1), n = int_arg(info[4], "n", 0);
  const float* a = f32_matrix_arg(info[0], m, k, "a");
  const float* b = f32_matrix_arg(info[3], n, k, "b");
  auto out = std::make_shared<std::vector<float>>();
  return Task::Start(
      info.Env(),
      [=](cl::Progress& p) {
        p.check();
        out->assign(static_cast<size_t>(m * n), 0.0f);
        cl::WideBlas wide(cl::compute_threads());
        cl::sgemm(false, true, m, n, k, 1.0f, a, k, b, k, 0.0f, out->data(), n);
      },
      [out](Napi::Env env) {
        auto r = Napi::Float32Array::New(env, out->size());
        std::copy(out->begin(), out->end(), r.Data());
        return r;
      },
      info[5], info[6], {info[0], info[3]});
}

void Init(Napi::Env env, Napi::Object exports) { exports.Set("matmulNT", Napi::Function::New(env, MatmulNT)); }

}  // namespace

void InitBlas(Napi::Env env, Napi::Object exports) { Init(env, exports); }

}  // namespace clb
