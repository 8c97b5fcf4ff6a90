// JS class TopK: a running exact top-k over vocabulary shards.
#include <napi.h>

#include <map>
#include <memory>

#include "../core/topk.h"
#ifdef CONCEPTLENS_CUDA
#include "../cuda/topk_cuda.h"
#endif
#include "args.h"
#include "registry.h"
#include "task.h"

namespace clb {
namespace {

class TopK : public Napi::ObjectWrap<TopK> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    exports.Set("TopK", DefineClass(env, "TopK",
                                    {InstanceMethod("add", &TopK::Add), InstanceMethod("endChunk", &TopK::EndChunk),
                                     InstanceMethod("result", &TopK::Result)}));
  }

  // new TopK(queries: Float32Array, nq, d, k, metric: 'ip'|'cosine', softmaxTemperature,
  //          device: 'cpu'|'cuda', kernel: 'auto'|'sgemm'|'bf16'|'int8')
  explicit TopK(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TopK>(info) {
    int64_t nq = int_arg(info[1], "nq", 1), d = int_arg(info[2], "d", 1);
    const float* q = f32_matrix_arg(info[0], nq, d, "queries");
    cl::TopKOptions opt;
    opt.k = static_cast<int>(int_arg(info[3], "k", 1));
    std::string metric = string_arg(info[4], "metric");
    if (metric != "ip" && metric != "cosine")
      throw Napi::RangeError::New(info.Env(), "metric: expected 'ip' or 'cosine', got '" + metric + "'");
    opt.metric = metric == "ip" ? cl::Metric::InnerProduct : cl::Metric::Cosine;
    opt.softmax_temperature = static_cast<float>(number_arg(info[5], "softmaxTemperature"));
    std::string device = info[6].IsUndefined() ? "cpu" : string_arg(info[6], "device");
    std::string kernel = info[7].IsUndefined() ? "auto" : string_arg(info[7], "kernel");
    static const std::map<std::string, cl::ScanKernel> kernels = {
        {"auto", cl::ScanKernel::Auto}, {"sgemm", cl::ScanKernel::Sgemm}, {"bf16", cl::ScanKernel::Bf16}, {"int8", cl::ScanKernel::Int8}};
    auto found = kernels.find(kernel);
    if (found == kernels.end())
      throw Napi::RangeError::New(info.Env(), "kernel: expected 'auto', 'sgemm', 'bf16' or 'int8', got '" + kernel + "'");
    opt.kernel = found->second;
    try {
      if (device == "cuda")
        gpu_ = make_gpu(info.Env(), q, nq, d, opt);
      else if (device == "cpu")
        acc_ = std::make_shared<cl::TopKAccumulator>(q, nq, d, opt);
      else
        throw Napi::RangeError::New(info.Env(), "device: expected 'cpu' or 'cuda', got '" + device + "'");
    } catch (const cl::Error& e) {
      throw Napi::Error::New(info.Env(), e.what());
    }
    nq_ = nq;
    d_ = d;
    k_ = opt.k;
  }

 private:
  void require_idle(Napi::Env env) {
    if (*busy_) throw Napi::Error::New(env, "TopK: an add() is still running; await it first");
  }

  // add(vectors, rows, idOffset, invNorms|null, onProgress|null, cancel|null): Promise<void>
  Napi::Value Add(const Napi::CallbackInfo& info) {
    require_idle(info.Env());
    int64_t rows = int_arg(info[1], "rows", 0), offset = int_arg(info[2], "idOffset", 0);
    cl::MatrixView m = matrix_arg(info[0], rows, d_, "vectors");
    const float* inv = info[3].IsNull() || info[3].IsUndefined() ? nullptr : f32_arg(info[3], rows, "invNorms");
    auto acc = acc_;
    auto gpu = gpu_;
    auto busy = busy_;
    *busy = true;
    return Task::Start(
        info.Env(),
        [acc, gpu, m, offset, inv, busy](cl::Progress& p) {
          struct Clear {
            std::shared_ptr<bool> b;
            ~Clear() { *b = false; }
          } clear{busy};
          if (acc)
            acc->add(m, offset, inv, p);
          else
            gpu_add(gpu, m, offset, p);
        },
        [](Napi::Env env) { return env.Undefined(); }, info[4], info[5], {info[0], info[3]});
  }

  Napi::Value EndChunk(const Napi::CallbackInfo& info) {
    require_idle(info.Env());
    if (acc_) acc_->end_chunk();
    return info.Env().Undefined();
  }

  // result(): { scores: Float32Array, ids: BigInt64Array }, nq × k row-major.
  Napi::Value Result(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    require_idle(env);
    size_t n = static_cast<size_t>(nq_) * k_;
    auto scores = Napi::Float32Array::New(env, n);
    auto ids = Napi::BigInt64Array::New(env, n);
    if (acc_)
      acc_->result(scores.Data(), ids.Data());
    else
      gpu_result(gpu_, scores.Data(), ids.Data());
    Napi::Object o = Napi::Object::New(env);
    o.Set("scores", scores);
    o.Set("ids", ids);
    return o;
  }

#ifdef CONCEPTLENS_CUDA
  using Gpu = std::shared_ptr<cl::CudaTopK>;
  static Gpu make_gpu(Napi::Env env, const float* q, int64_t nq, int64_t d, const cl::TopKOptions& opt) {
    if (!cl::cuda_available()) throw Napi::Error::New(env, "device: 'cuda' requested but no CUDA device is available");
    if (opt.softmax_temperature > 0)
      throw Napi::Error::New(env, "softmaxTemperature: chunk-local softmax runs on the CPU only; use device 'cpu'");
    return std::make_shared<cl::CudaTopK>(q, nq, d, opt.k, opt.metric);
  }
  static void gpu_add(const Gpu& g, const cl::MatrixView& m, int64_t offset, cl::Progress& p) { g->add(m, offset, &p); }
  static void gpu_result(const Gpu& g, float* s, int64_t* i) { g->result(s, i); }
#else
  using Gpu = std::shared_ptr<void>;
  static Gpu make_gpu(Napi::Env env, const float*, int64_t, int64_t, const cl::TopKOptions&) {
    throw Napi::Error::New(env, "device: 'cuda' requested but this engine was built without CUDA (no nvcc at build time)");
  }
  static void gpu_add(const Gpu&, const cl::MatrixView&, int64_t, cl::Progress&) {}
  static void gpu_result(const Gpu&, float*, int64_t*) {}
#endif

  std::shared_ptr<cl::TopKAccumulator> acc_;
  Gpu gpu_;
  int64_t nq_ = 0, d_ = 0;
  int k_ = 0;
  std::shared_ptr<bool> busy_ = std::make_shared<bool>(false);
};

Register reg(TopK::Init);

}  // namespace
}  // namespace clb
