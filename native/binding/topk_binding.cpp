// JS class TopK: a running exact top-k over vocabulary shards. The constructor
// only checks its arguments: the accumulator (query copy, normalisation,
// screening state) is built by the first add() on the libuv pool, so the JS
// thread never waits on it; result() settles off the JS thread too.
// JS class PreparedVocab: a vocabulary's screening copy (topk_prepared.h),
// built from rows or from its arrays on the pool; TopK.addPrepared scans it.
#include <napi.h>

#include <cstring>
#include <functional>
#include <map>
#include <memory>

#include "../core/topk.h"
#include "../core/topk_prepared.h"
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
  void add_prepared(const cl::PreparedVocab& pv, const cl::MatrixView& m, int64_t first, int64_t offset, cl::Progress& p) {
    start();
    cpu->add_prepared(pv, m, first, offset, p);
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
  // What computed the scores (TopKAccumulator::arithmetic); the GPU's tiles are fp32.
  const char* arithmetic() const { return cpu ? cpu->arithmetic() : "fp32"; }
};

// The arrays of a persisted prepared copy, checked on the JS thread and
// copied into the core on the pool (the JS values are kept alive meanwhile).
struct PreparedArrays {
  std::vector<Napi::Value> keep;
  std::vector<std::function<void(cl::PreparedVocab&)>> fill;

  // o[key]: a Float32Array of `length` values, copied into the vector `field` selects.
  void f32(const Napi::Object& o, const char* key, size_t length, std::vector<float>& (*field)(cl::PreparedVocab&)) {
    const Napi::Value v = o.Get(key);
    const float* p = f32_arg(v, static_cast<int64_t>(length), std::string("prepared.") + key);
    keep.push_back(v);
    fill.push_back([p, length, field](cl::PreparedVocab& out) { field(out).assign(p, p + length); });
  }
};

// Marks PreparedVocab objects, so TopK.addPrepared never unwraps anything else.
constexpr napi_type_tag kPreparedTag = {0x6c5e1a7b3f2d4c91ULL, 0x9a8b7c6d5e4f3a21ULL};

class PreparedVocab : public Napi::ObjectWrap<PreparedVocab> {
 public:
  using Core = std::shared_ptr<const cl::PreparedVocab>;

  static void Init(Napi::Env env, Napi::Object exports) {
    exports.Set("PreparedVocab",
                DefineClass(env, "PreparedVocab",
                            {StaticMethod("prepare", &PreparedVocab::Prepare), StaticMethod("fromArrays", &PreparedVocab::FromArrays),
                             InstanceMethod("arrays", &PreparedVocab::Arrays),
                             InstanceAccessor("format", &PreparedVocab::Format, nullptr),
                             InstanceAccessor("rows", &PreparedVocab::Rows, nullptr),
                             InstanceAccessor("dim", &PreparedVocab::Dim, nullptr),
                             InstanceAccessor("packedBytes", &PreparedVocab::PackedBytes, nullptr)}));
  }

  // Only through prepare() / fromArrays(), which pass an External holding the core.
  explicit PreparedVocab(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PreparedVocab>(info) {
    if (!info[0].IsExternal())
      throw_coded(info.Env(), cl::ErrorCode::Arg, "PreparedVocab: build one with PreparedVocab.prepare or PreparedVocab.fromArrays");
    std::unique_ptr<Core> core(info[0].As<Napi::External<Core>>().Data());
    core_ = *core;
    info.This().As<Napi::Object>().TypeTag(&kPreparedTag);
  }

  // The prepared copy behind a JS value, or an ERR_DTYPE naming the argument.
  static Core of(const Napi::Value& v, const std::string& name) {
    if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&kPreparedTag))
      throw_coded(v.Env(), cl::ErrorCode::Dtype, name + ": expected a PreparedVocab");
    return Unwrap(v.As<Napi::Object>())->core_;
  }

 private:
  // A Promise of a new PreparedVocab around the core `slot` holds once `work` has filled it.
  static Napi::Value Build(const Napi::CallbackInfo& info, std::function<void(cl::Progress&, cl::PreparedVocab&)> work,
                           const Napi::Value& on_progress, const Napi::Value& cancel, const std::vector<Napi::Value>& keep) {
    if (!info.This().IsFunction()) throw_coded(info.Env(), cl::ErrorCode::Arg, "PreparedVocab: call it on the class");
    auto ctor = std::make_shared<Napi::FunctionReference>(Napi::Persistent(info.This().As<Napi::Function>()));
    auto slot = std::make_shared<cl::PreparedVocab>();
    return Task::Start(
        info.Env(), [work, slot](cl::Progress& p) { work(p, *slot); },
        [ctor, slot](Napi::Env env) -> Napi::Value {
          return ctor->New({Napi::External<Core>::New(env, new Core(std::make_shared<const cl::PreparedVocab>(std::move(*slot))))});
        },
        on_progress, cancel, keep);
  }

  // PreparedVocab.prepare(vectors, rows, d, invNorms|null, onProgress|null, cancel|null): Promise<PreparedVocab>
  static Napi::Value Prepare(const Napi::CallbackInfo& info) {
    const int64_t rows = int_arg(info[1], "rows", 1), d = int_arg(info[2], "d", 1);
    const cl::MatrixView m = matrix_arg(info[0], rows, d, "vectors");
    const float* inv = info[3].IsNull() || info[3].IsUndefined() ? nullptr : f32_arg(info[3], rows, "invNorms");
    return Build(
        info, [m, inv](cl::Progress& p, cl::PreparedVocab& out) { out = cl::prepare_vocab(m, inv, p); }, info[4], info[5],
        {info[0], info[3]});
  }

  // PreparedVocab.fromArrays({ format: 'int8'|'bf16'|null, layout (kScreenLayout), rows, dim, mu, invC
  // (Float32Array dim, or null: the identity frame), packed (Uint8Array rows × steps × 4), scale, err, norm,
  // vnorm, inv (Float32Array rows) }): Promise<PreparedVocab>, the arrays copied and checked off the JS thread.
  static Napi::Value FromArrays(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) throw_coded(env, cl::ErrorCode::Arg, "prepared: expected an object of arrays");
    const Napi::Object o = info[0].As<Napi::Object>();
    auto p = std::make_shared<cl::PreparedVocab>();
    p->rows = int_arg(o.Get("rows"), "prepared.rows", 1);
    p->d = int_arg(o.Get("dim"), "prepared.dim", 1);
    const size_t n = static_cast<size_t>(p->rows), d = static_cast<size_t>(p->d);
    PreparedArrays a;
    a.f32(o, "inv", n, [](cl::PreparedVocab& x) -> std::vector<float>& { return x.inv; });
    const Napi::Value format = o.Get("format");
    if (!format.IsNull()) {
      const int64_t layout = int_arg(o.Get("layout"), "prepared.layout", 1);
      if (layout != cl::kScreenLayout)
        throw_coded(env, cl::ErrorCode::Arg, "prepared.layout: expected " + std::to_string(cl::kScreenLayout) +
                                                 " (this engine's packing), got " + std::to_string(layout) +
                                                 "; prepare the rows again");
      const std::string f = string_arg(format, "prepared.format");
      if (f != "int8" && f != "bf16") throw_coded(env, cl::ErrorCode::Arg, "prepared.format: expected 'int8', 'bf16' or null, got '" + f + "'");
      p->format = f == "int8" ? cl::ScreenFormat::Int8 : cl::ScreenFormat::Bf16;
      const int64_t steps = cl::screen_steps(*p->format, p->d);
      const Napi::Value packed = o.Get("packed");
      const uint8_t* bytes = typed_arg<Napi::Uint8Array>(packed, napi_uint8_array, static_cast<int64_t>(n) * steps * 4, "prepared.packed").Data();
      a.keep.push_back(packed);
      a.fill.push_back([bytes, n, steps](cl::PreparedVocab& x) {
        x.screen.steps = steps;
        x.screen.packed.resize(n * steps);
        std::memcpy(x.screen.packed.data(), bytes, n * steps * 4);
        x.screen.offset.resize(n);  // derived, so never out of step with the words
        for (size_t i = 0; i < n; ++i) x.screen.offset[i] = cl::screen_offset(*x.format, x.screen.packed.data() + i * steps, steps, true);
      });
      a.f32(o, "scale", n, [](cl::PreparedVocab& x) -> std::vector<float>& { return x.screen.scale; });
      a.f32(o, "err", n, [](cl::PreparedVocab& x) -> std::vector<float>& { return x.screen.err; });
      a.f32(o, "norm", n, [](cl::PreparedVocab& x) -> std::vector<float>& { return x.screen.norm; });
      a.f32(o, "vnorm", n, [](cl::PreparedVocab& x) -> std::vector<float>& { return x.screen.vnorm; });
      if (!o.Get("mu").IsNull()) {
        a.f32(o, "mu", d, [](cl::PreparedVocab& x) -> std::vector<float>& { return x.frame.mu; });
        a.f32(o, "invC", d, [](cl::PreparedVocab& x) -> std::vector<float>& { return x.frame.inv_c; });
      }
    }
    auto fill = std::make_shared<std::vector<std::function<void(cl::PreparedVocab&)>>>(std::move(a.fill));
    return Build(
        info,
        [p, fill](cl::Progress&, cl::PreparedVocab& out) {
          for (auto& f : *fill) f(*p);
          cl::check_prepared(*p);
          out = std::move(*p);
        },
        env.Null(), env.Null(), a.keep);
  }

  // arrays(): Promise of the object fromArrays takes, copied off the JS thread.
  Napi::Value Arrays(const Napi::CallbackInfo& info) {
    Core c = core_;
    return Task::Start(
        info.Env(), [](cl::Progress&) {},
        [c](Napi::Env env) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          o.Set("format", c->format ? Napi::Value(Napi::String::New(env, cl::screen_format_name(*c->format))) : env.Null());
          o.Set("layout", cl::kScreenLayout);
          o.Set("rows", Napi::Number::New(env, double(c->rows)));
          o.Set("dim", Napi::Number::New(env, double(c->d)));
          const bool framed = !c->frame.identity();
          o.Set("mu", framed ? Napi::Value(copy_out<Napi::Float32Array>(env, c->frame.mu)) : env.Null());
          o.Set("invC", framed ? Napi::Value(copy_out<Napi::Float32Array>(env, c->frame.inv_c)) : env.Null());
          auto packed = Napi::Uint8Array::New(env, c->screen.packed.size() * sizeof(uint32_t));
          std::memcpy(packed.Data(), c->screen.packed.data(), packed.ByteLength());
          o.Set("packed", packed);
          o.Set("scale", copy_out<Napi::Float32Array>(env, c->screen.scale));
          o.Set("err", copy_out<Napi::Float32Array>(env, c->screen.err));
          o.Set("norm", copy_out<Napi::Float32Array>(env, c->screen.norm));
          o.Set("vnorm", copy_out<Napi::Float32Array>(env, c->screen.vnorm));
          o.Set("inv", copy_out<Napi::Float32Array>(env, c->inv));
          return o;
        },
        info.Env().Null(), info.Env().Null(), {});
  }

  Napi::Value Format(const Napi::CallbackInfo& info) {
    return core_->format ? Napi::Value(Napi::String::New(info.Env(), cl::screen_format_name(*core_->format))) : info.Env().Null();
  }
  Napi::Value Rows(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(core_->rows)); }
  Napi::Value Dim(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(core_->d)); }
  Napi::Value PackedBytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), double(core_->screen.packed.size() * sizeof(uint32_t)));
  }

  Core core_;
};

class TopK : public Napi::ObjectWrap<TopK> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    exports.Set("TopK", DefineClass(env, "TopK",
                                    {InstanceMethod("add", &TopK::Add), InstanceMethod("addFile", &TopK::AddFile),
                                     InstanceMethod("addPrepared", &TopK::AddPrepared),
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

  // addPrepared(prepared, vectors, rows, first, idOffset, onProgress|null, cancel|null): Promise<void>. vectors: the
  // exact rows [first, first + rows) of the prepared vocabulary, read only to re-score candidates. CPU only.
  Napi::Value AddPrepared(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto pv = PreparedVocab::of(info[0], "prepared");
    const int64_t rows = int_arg(info[2], "rows", 0), first = int_arg(info[3], "first", 0), offset = int_arg(info[4], "idOffset", 0);
    const cl::MatrixView m = matrix_arg(info[1], rows, scan_->d, "vectors");
    if (scan_->device != Device::Cpu) throw_coded(env, cl::ErrorCode::Device, "addPrepared: the prepared scan runs on the CPU; add rows for 'cuda'");
    auto guard = busy_.claim(env);
    auto scan = scan_;
    return Task::Start(
        env, [scan, pv, m, first, offset, guard](cl::Progress& p) { scan->add_prepared(*pv, m, first, offset, p); },
        [](Napi::Env e) { return e.Undefined(); }, info[5], info[6], {info[0], info[1], queries_.Value()});
  }

  Napi::Value EndChunk(const Napi::CallbackInfo& info) {
    busy_.require_idle(info.Env());
    scan_->end_chunk();
    return info.Env().Undefined();
  }

  // result(): Promise<{ scores: Float32Array, ids: BigInt64Array, scoredBy }>, nq × k row-major.
  Napi::Value Result(const Napi::CallbackInfo& info) {
    auto guard = busy_.claim(info.Env());
    auto scan = scan_;
    const size_t n = static_cast<size_t>(scan->nq) * scan->opt.k;
    auto scores = std::make_shared<cl::Scratch<float>>(n);
    auto ids = std::make_shared<cl::Scratch<int64_t>>(n);
    return Task::Start(
        info.Env(), [scan, scores, ids, guard](cl::Progress&) { scan->result(scores->data(), ids->data()); },
        [scan, scores, ids](Napi::Env env) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          o.Set("scores", hand_over<Napi::Float32Array>(env, *scores));
          o.Set("ids", hand_over<Napi::BigInt64Array>(env, *ids));
          o.Set("scoredBy", scan->arithmetic());
          return o;
        },
        info.Env().Null(), info.Env().Null(), {queries_.Value()});
  }

  std::shared_ptr<Scan> scan_;
  Napi::Reference<Napi::Value> queries_;
  BusyFlag busy_{"TopK"};
};

}  // namespace

void InitTopK(Napi::Env env, Napi::Object exports) {
  TopK::Init(env, exports);
  PreparedVocab::Init(env, exports);
}

}  // namespace clb
