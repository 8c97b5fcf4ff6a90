// JS class TopK: a running exact top-k over vocabulary shards. The constructor
// only checks its arguments: the accumulator (query copy, normalisation,
// screening state) is built by the first add() on the libuv pool, so the JS
// thread never waits on it; result() settles off the JS thread too.
#include <napi.h>

#include <map>
#include <memory>

#include "../core/topk.h"
#ifdef CONCEPTLENS_CUDA
#include "../cuda/topk_cuda.h"
#endif
#include "args.h"
#include "modules.h"
#include "task.h"

namespace clb {
namespace {

cl::ScanKernel kernel_arg(const Napi::Value& v) {
  static const std::map<std::string, cl::ScanKernel> kernels = {
      {"auto", cl::ScanKernel::Auto}, {"sgemm", cl::ScanKernel::Sgemm}, {"bf16", cl::ScanKernel::Bf16}, {"int8", cl::ScanKernel::Int8}};
  const std::string kernel = v.IsUndefined() ? "auto" : string_arg(v, "kernel");
  auto found = kernels.find(kernel);
  if (found == kernels.end())
    throw_coded(v.Env(), cl::ErrorCode::Arg, "kernel: expected 'auto', 'sgemm', 'bf16' or 'int8', got '" + kernel + "'");
  return found->second;
}

// The CPU accumulator or the GPU one, built on first use from the queries.
struct Scan {
  const float* queries;
  int64_t nq, d;
  cl::TopKOptions opt;
  Device device;
  std::unique_ptr<cl::TopKAccumulator> cpu;
#ifdef CONCEPTLENS_CUDA
  std::unique_ptr<cl::CudaTopK> gpu;
#endif

  void start() {
#ifdef CONCEPTLENS_CUDA
    if (device == Device::Cuda) {
      if (!gpu) gpu = std::make_unique<cl::CudaTopK>(queries, nq, d, opt.k, opt.metric);
      return;
    }
#endif
    if (!cpu) cpu = std::make_unique<cl::TopKAccumulator>(queries, nq, d, opt);
  }
  void add(const cl::MatrixView& m, int64_t offset, const float* inv, cl::Progress& p) {
    start();
#ifdef CONCEPTLENS_CUDA
    if (gpu) return gpu->add(m, offset, &p);
#endif
    cpu->add(m, offset, inv, p);
  }
  void add_file(const cl::FileRows& f, int64_t offset, cl::Progress& p) {
    start();
    cpu->add_file(f, offset, p);
  }
  void end_chunk() {
    if (cpu) cpu->end_chunk();
  }
  void result(float* scores, int64_t* ids) {
    start();
#ifdef CONCEPTLENS_CUDA
    if (gpu) return gpu->result(scores, ids);
#endif
    cpu->result(scores, ids);
  }
};

template <typename T, typename Array>
Array hand_over(Napi::Env env, std::unique_ptr<T[]>& data, size_t n) {
  T* p = data.release();
  auto buf = Napi::ArrayBuffer::New(env, p, n * sizeof(T), [](Napi::Env, void* q) { delete[] static_cast<T*>(q); });
  return Array::New(env, n, buf, 0);
}

class TopK : public Napi::ObjectWrap<TopK> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    exports.Set("TopK", DefineClass(env, "TopK",
                                    {InstanceMethod("add", &TopK::Add), InstanceMethod("addFile", &TopK::AddFile),
                                     InstanceMethod("endChunk", &TopK::EndChunk),
                                     InstanceMethod("result", &TopK::Result)}));
  }

  // new TopK(queries: Float32Array, nq, d, k, metric: 'ip'|'cosine', softmaxTemperature,
  //          device: 'cpu'|'cuda', kernel: 'auto'|'sgemm'|'bf16'|'int8')
  explicit TopK(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TopK>(info) {
    Napi::Env env = info.Env();
    auto s = std::make_shared<Scan>();
    s->nq = int_arg(info[1], "nq", 1);
    s->d = int_arg(info[2], "d", 1);
    s->queries = f32_matrix_arg(info[0], s->nq, s->d, "queries");
    s->opt.k = static_cast<int>(int_arg(info[3], "k", 1));
    const std::string metric = string_arg(info[4], "metric");
    if (metric != "ip" && metric != "cosine")
      throw_coded(env, cl::ErrorCode::Arg, "metric: expected 'ip' or 'cosine', got '" + metric + "'");
    s->opt.metric = metric == "ip" ? cl::Metric::InnerProduct : cl::Metric::Cosine;
    s->opt.softmax_temperature = static_cast<float>(number_arg(info[5], "softmaxTemperature"));
    s->device = device_arg(info[6], "device");
    s->opt.kernel = kernel_arg(info[7]);
    if (s->device == Device::Cuda && s->opt.softmax_temperature > 0)
      throw_coded(env, cl::ErrorCode::Device, "softmaxTemperature: chunk-local softmax runs on the CPU only; use device 'cpu'");
    // Checks the options the accumulator would reject (k, temperature, kernel on this CPU) now, on a 1-row probe.
    if (s->device == Device::Cpu) translating(env, [&] { cl::TopKAccumulator probe(s->queries, 1, s->d, s->opt); });
    queries_ = Napi::Persistent(info[0]);
    scan_ = s;
  }

 private:
  // add(vectors, rows, idOffset, invNorms|null, onProgress|null, cancel|null): Promise<void>
  Napi::Value Add(const Napi::CallbackInfo& info) {
    int64_t rows = int_arg(info[1], "rows", 0), offset = int_arg(info[2], "idOffset", 0);
    cl::MatrixView m = matrix_arg(info[0], rows, scan_->d, "vectors");
    const float* inv = info[3].IsNull() || info[3].IsUndefined() ? nullptr : f32_arg(info[3], rows, "invNorms");
    auto guard = busy_.claim(info.Env());
    auto scan = scan_;
    return Task::Start(
        info.Env(), [scan, m, offset, inv, guard](cl::Progress& p) { scan->add(m, offset, inv, p); },
        [](Napi::Env env) { return env.Undefined(); }, info[4], info[5], {info[0], info[3], queries_.Value()});
  }

  // addFile(path, dataOffset, dtype: 'float32'|'float16', cols, first, rows, idOffset, onProgress|null, cancel|null):
  // Promise<void>. The CPU scan reads rows [first, first + rows) of the file itself.
  Napi::Value AddFile(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    cl::FileRows f;
    f.path = string_arg(info[0], "path");
    f.data_offset = int_arg(info[1], "dataOffset", 0);
    const std::string dtype = string_arg(info[2], "dtype");
    if (dtype != "float32" && dtype != "float16")
      throw_coded(env, cl::ErrorCode::Dtype, "dtype: expected 'float32' or 'float16', got '" + dtype + "'");
    f.dtype = dtype == "float32" ? cl::DType::F32 : cl::DType::F16;
    f.cols = int_arg(info[3], "cols", 1);
    f.first = int_arg(info[4], "first", 0);
    f.rows = int_arg(info[5], "rows", 0);
    const int64_t offset = int_arg(info[6], "idOffset", 0);
    if (scan_->device != Device::Cpu) throw_coded(env, cl::ErrorCode::Device, "addFile: the CPU scan reads files; add rows for 'cuda'");
    auto guard = busy_.claim(env);
    auto scan = scan_;
    return Task::Start(
        env, [scan, f, offset, guard](cl::Progress& p) { scan->add_file(f, offset, p); },
        [](Napi::Env e) { return e.Undefined(); }, info[7], info[8], {queries_.Value()});
  }

  Napi::Value EndChunk(const Napi::CallbackInfo& info) {
    busy_.require_idle(info.Env());
    scan_->end_chunk();
    return info.Env().Undefined();
  }

  // result(): Promise<{ scores: Float32Array, ids: BigInt64Array }>, nq × k row-major.
  Napi::Value Result(const Napi::CallbackInfo& info) {
    auto guard = busy_.claim(info.Env());
    auto scan = scan_;
    const size_t n = static_cast<size_t>(scan->nq) * scan->opt.k;
    auto scores = std::make_shared<std::unique_ptr<float[]>>(new float[n]);
    auto ids = std::make_shared<std::unique_ptr<int64_t[]>>(new int64_t[n]);
    return Task::Start(
        info.Env(), [scan, scores, ids, guard](cl::Progress&) { scan->result(scores->get(), ids->get()); },
        [scores, ids, n](Napi::Env env) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          o.Set("scores", hand_over<float, Napi::Float32Array>(env, *scores, n));
          o.Set("ids", hand_over<int64_t, Napi::BigInt64Array>(env, *ids, n));
          return o;
        },
        info.Env().Null(), info.Env().Null(), {queries_.Value()});
  }

  std::shared_ptr<Scan> scan_;
  Napi::Reference<Napi::Value> queries_;
  BusyFlag busy_{"TopK"};
};

}  // namespace

void InitTopK(Napi::Env env, Napi::Object exports) { TopK::Init(env, exports); }

}  // namespace clb
