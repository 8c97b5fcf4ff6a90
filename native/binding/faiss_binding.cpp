// JS class FaissIndex: a FAISS index (any index_factory string) whose train,
// add, search, save and load run off the JS thread and return Promises.
#include <napi.h>

#include <cstring>
#include <memory>
#include <vector>

#include "../core/faiss_index.h"
#include "args.h"
#include "modules.h"
#include "task.h"

namespace clb {
namespace {

using Core = std::shared_ptr<cl::FaissIndex>;

cl::AnnMetric metric_arg(const Napi::Value& v) {
  std::string m = string_arg(v, "metric");
  if (m != "ip" && m != "l2") throw_coded(v.Env(), cl::ErrorCode::Arg, "metric: expected 'ip' or 'l2', got '" + m + "'");
  return m == "ip" ? cl::AnnMetric::InnerProduct : cl::AnnMetric::L2;
}

class FaissIndex : public Napi::ObjectWrap<FaissIndex> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    exports.Set("FaissIndex",
                DefineClass(env, "FaissIndex",
                            {StaticMethod("load", &FaissIndex::Load), InstanceMethod("train", &FaissIndex::Train),
                             InstanceMethod("add", &FaissIndex::Add), InstanceMethod("search", &FaissIndex::Search),
                             InstanceMethod("save", &FaissIndex::Save),
                             InstanceAccessor("dim", &FaissIndex::Dim, nullptr),
                             InstanceAccessor("size", &FaissIndex::Size, nullptr),
                             InstanceAccessor("isTrained", &FaissIndex::IsTrained, nullptr),
                             InstanceAccessor("metric", &FaissIndex::Metric, nullptr),
                             InstanceAccessor("description", &FaissIndex::Description, nullptr)}));
  }

  // new FaissIndex(dim, factory, metric: 'ip'|'l2', normalize, seed, efConstruction)
  // (FaissIndex.load passes an External holding the loaded core instead.)
  explicit FaissIndex(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FaissIndex>(info) {
    if (info[0].IsExternal()) {
      std::unique_ptr<Core> loaded(info[0].As<Napi::External<Core>>().Data());
      core_ = *loaded;
      return;
    }
    int64_t dim = int_arg(info[0], "dim", 1);
    std::string factory = string_arg(info[1], "factory");
    cl::FaissBuildOptions opt;
    opt.metric = metric_arg(info[2]);
    opt.normalize = bool_arg(info[3], "normalize");
    opt.seed = static_cast<uint32_t>(int_arg(info[4], "seed", 0));
    opt.ef_construction = static_cast<int>(int_arg(info[5], "efConstruction", 0));
    core_ = translating(info.Env(), [&] { return std::make_shared<cl::FaissIndex>(dim, factory, opt); });
  }

 private:
  // FaissIndex.load(path, normalize, onProgress|null, cancel|null): Promise<FaissIndex>
  static Napi::Value Load(const Napi::CallbackInfo& info) {
    if (!info.This().IsFunction()) throw_coded(info.Env(), cl::ErrorCode::Arg, "FaissIndex.load: call it on the class");
    std::string path = string_arg(info[0], "path");
    bool normalize = bool_arg(info[1], "normalize");
    auto ctor = std::make_shared<Napi::FunctionReference>(Napi::Persistent(info.This().As<Napi::Function>()));
    auto slot = std::make_shared<Core>();
    return Task::Start(
        info.Env(), [path, normalize, slot](cl::Progress&) { *slot = cl::FaissIndex::load(path, normalize); },
        [ctor, slot](Napi::Env env) -> Napi::Value {
          return ctor->New({Napi::External<Core>::New(env, new Core(*slot))});
        },
        info[2], info[3], {});
  }

  // (vectors, rows, onProgress|null, cancel|null): Promise<void>, running op(core, rows, progress).
  template <class Op>
  Napi::Value RowsTask(const Napi::CallbackInfo& info, int64_t min_rows, Op op) {
    cl::MatrixView m = matrix_arg(info[0], int_arg(info[1], "rows", min_rows), core_->dim(), "vectors");
    Core core = core_;
    return Task::Start(
        info.Env(), [core, m, op](cl::Progress& p) { op(*core, m, p); },
        [](Napi::Env env) { return env.Undefined(); }, info[2], info[3], {info[0]});
  }

  Napi::Value Train(const Napi::CallbackInfo& info) {
    return RowsTask(info, 1, [](cl::FaissIndex& c, const cl::MatrixView& m, cl::Progress& p) { c.train(m, p); });
  }

  Napi::Value Add(const Napi::CallbackInfo& info) {
    return RowsTask(info, 0, [](cl::FaissIndex& c, const cl::MatrixView& m, cl::Progress& p) { c.add(m, p); });
  }

  // search(queries, nq, k, nprobe, efSearch, onProgress|null, cancel|null):
  // Promise<{scores: Float32Array, ids: BigInt64Array}>, nq × k row-major.
  Napi::Value Search(const Napi::CallbackInfo& info) {
    int64_t nq = int_arg(info[1], "nq", 1), k = int_arg(info[2], "k", 1);
    cl::MatrixView q = matrix_arg(info[0], nq, core_->dim(), "queries");
    cl::FaissSearchParams sp;
    sp.nprobe = int_arg(info[3], "nprobe", 0);
    sp.ef_search = int_arg(info[4], "efSearch", 0);
    struct Out {
      std::vector<float> scores;
      std::vector<int64_t> ids;
    };
    auto out = std::make_shared<Out>();
    Core core = core_;
    return Task::Start(
        info.Env(),
        [core, q, k, sp, out](cl::Progress& p) {
          out->scores.resize(static_cast<size_t>(q.rows * k));
          out->ids.resize(static_cast<size_t>(q.rows * k));
          core->search(q, k, sp, out->scores.data(), out->ids.data(), p);
        },
        [out](Napi::Env env) -> Napi::Value {
          auto scores = Napi::Float32Array::New(env, out->scores.size());
          auto ids = Napi::BigInt64Array::New(env, out->ids.size());
          std::memcpy(scores.Data(), out->scores.data(), out->scores.size() * sizeof(float));
          std::memcpy(ids.Data(), out->ids.data(), out->ids.size() * sizeof(int64_t));
          Napi::Object o = Napi::Object::New(env);
          o.Set("scores", scores);
          o.Set("ids", ids);
          return o;
        },
        info[5], info[6], {info[0]});
  }

  // save(path): Promise<void>
  Napi::Value Save(const Napi::CallbackInfo& info) {
    std::string path = string_arg(info[0], "path");
    Core core = core_;
    return Task::Start(
        info.Env(), [core, path](cl::Progress&) { core->save(path); },
        [](Napi::Env env) { return env.Undefined(); }, info.Env().Null(), info.Env().Null(), {});
  }

  Napi::Value Dim(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(core_->dim())); }
  Napi::Value Size(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(core_->size())); }
  Napi::Value IsTrained(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), core_->is_trained()); }
  Napi::Value Metric(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), core_->metric() == cl::AnnMetric::L2 ? "l2" : "ip");
  }
  Napi::Value Description(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), core_->factory()); }

  Core core_;
};

}  // namespace

void InitFaiss(Napi::Env env, Napi::Object exports) { FaissIndex::Init(env, exports); }

}  // namespace clb
