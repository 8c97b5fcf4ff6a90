// JS class SaeTrainer: sparse-autoencoder training steps and epochs off the
// JS thread. Parameters and Adam moments live in one JS-owned Float32Array
// that the engine updates in place (params() returns views into it).
#include <napi.h>

#include <memory>
#include <mutex>

#include "../core/sae.h"
#include "args.h"
#include "modules.h"
#include "task.h"

namespace clb {
namespace {

cl::SaeKind kind_arg(const Napi::Value& v) {
  std::string k = v.IsUndefined() ? "relu-l1" : string_arg(v, "kind");
  if (k == "relu-l1") return cl::SaeKind::ReluL1;
  if (k == "topk") return cl::SaeKind::TopK;
  if (k == "batchtopk") return cl::SaeKind::BatchTopK;
  throw_coded(v.Env(), cl::ErrorCode::Arg, "kind: expected 'relu-l1', 'topk' or 'batchtopk', got '" + k + "'");
}

const char* kind_str(cl::SaeKind k) {
  return k == cl::SaeKind::ReluL1 ? "relu-l1" : k == cl::SaeKind::TopK ? "topk" : "batchtopk";
}

cl::SaeConfig config_arg(const Napi::Object& o) {
  cl::SaeConfig c;
  auto num = [&](const char* key, double def) {
    return o.Has(key) && !o.Get(key).IsUndefined() ? number_arg(o.Get(key), key) : def;
  };
  auto integer = [&](const char* key, int64_t def, int64_t min) {
    return o.Has(key) && !o.Get(key).IsUndefined() ? int_arg(o.Get(key), key, min) : def;
  };
  c.d = int_arg(o.Get("d"), "d", 1);
  c.m = int_arg(o.Get("m"), "m", 1);
  c.kind = kind_arg(o.Get("kind"));
  c.k = static_cast<int32_t>(integer("k", c.k, 1));
  c.l1 = static_cast<float>(num("l1", c.l1));
  c.lr = static_cast<float>(num("lr", c.lr));
  c.beta1 = static_cast<float>(num("beta1", c.beta1));
  c.beta2 = static_cast<float>(num("beta2", c.beta2));
  c.eps = static_cast<float>(num("eps", c.eps));
  c.aux_coef = static_cast<float>(num("auxCoef", c.aux_coef));
  c.aux_k = static_cast<int32_t>(integer("auxK", c.aux_k, 1));
  c.dead_steps = integer("deadSteps", c.dead_steps, 0);
  c.seed = static_cast<uint64_t>(integer("seed", 0, 0));
  c.sparse_below = static_cast<float>(num("sparseBelow", c.sparse_below));
  return c;
}

Napi::Object config_object(Napi::Env env, const cl::SaeConfig& c) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("d", double(c.d));
  o.Set("m", double(c.m));
  o.Set("kind", kind_str(c.kind));
  o.Set("k", c.k);
  o.Set("l1", c.l1);
  o.Set("lr", c.lr);
  o.Set("beta1", c.beta1);
  o.Set("beta2", c.beta2);
  o.Set("eps", c.eps);
  o.Set("auxCoef", c.aux_coef);
  o.Set("auxK", c.aux_k);
  o.Set("deadSteps", double(c.dead_steps));
  o.Set("seed", double(c.seed));
  o.Set("sparseBelow", c.sparse_below);
  return o;
}

Napi::Object stats_object(Napi::Env env, const cl::SaeStats& s, int64_t m) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("step", double(s.step));
  o.Set("loss", s.loss);
  o.Set("mse", s.mse);
  o.Set("aux", s.aux);
  o.Set("l0", s.l0);
  o.Set("fvu", s.fvu);
  o.Set("dead", double(s.dead));
  o.Set("deadFraction", double(s.dead) / double(m));
  o.Set("sparse", s.sparse);
  o.Set("screened", s.screened);
  return o;
}

Napi::Float64Array index_array(Napi::Env env, const std::vector<int64_t>& v) {
  auto a = Napi::Float64Array::New(env, v.size());
  double* dst = a.Data();
  for (size_t i = 0; i < v.size(); ++i) dst[i] = double(v[i]);
  return a;
}

// Running means over an epoch's steps, weighted by batch rows.
struct EpochStats {
  cl::SaeStats last, mean;
  int64_t rows = 0, steps = 0;
  void add(const cl::SaeStats& s, int64_t n) {
    auto mix = [&](double& acc, double v) { acc = (acc * rows + v * n) / double(rows + n); };
    mix(mean.loss, s.loss);
    mix(mean.mse, s.mse);
    mix(mean.aux, s.aux);
    mix(mean.l0, s.l0);
    mix(mean.fvu, s.fvu);
    rows += n;
    ++steps;
    last = s;
    mean.step = s.step;
    mean.dead = s.dead;
    mean.sparse = s.sparse;
    mean.screened = s.screened;
  }
};

class SaeTrainer : public Napi::ObjectWrap<SaeTrainer> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    exports.Set("SaeTrainer",
                DefineClass(env, "SaeTrainer",
                            {InstanceMethod("step", &SaeTrainer::Step), InstanceMethod("trainEpoch", &SaeTrainer::TrainEpoch),
                             InstanceMethod("encode", &SaeTrainer::Encode),
                             InstanceMethod("params", &SaeTrainer::Params), InstanceMethod("config", &SaeTrainer::Config),
                             InstanceMethod("lastStats", &SaeTrainer::LastStats), InstanceMethod("dead", &SaeTrainer::Dead),
                             InstanceMethod("fired", &SaeTrainer::Fired),
                             InstanceMethod("resampleBegin", &SaeTrainer::ResampleBegin),
                             InstanceMethod("resampleApply", &SaeTrainer::ResampleApply),
                             InstanceMethod("save", &SaeTrainer::Save), InstanceMethod("load", &SaeTrainer::Load),
                             InstanceAccessor("steps", &SaeTrainer::Steps, nullptr)}));
    exports.Set("readSaeConfig", Napi::Function::New(env, ReadConfig));
  }

  // new SaeTrainer({d, m, kind?, k?, l1?, lr?, beta1?, beta2?, eps?, auxCoef?, auxK?, deadSteps?, seed?, sparseBelow?})
  explicit SaeTrainer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SaeTrainer>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) throw_coded(env, cl::ErrorCode::Arg, "SaeTrainer: expected a config object");
    cl::SaeConfig c = config_arg(info[0].As<Napi::Object>());
    cl::SaeLayout lay(c.d, c.m);
    auto storage = Napi::Float32Array::New(env, lay.total());
    storage_ = Napi::Persistent(storage);
    sae_ = translating(env, [&] { return std::make_shared<cl::Sae>(c, storage.Data()); });
  }

 private:
  // Synchronous calls that touch the trainer's state: refused while a step runs.
  template <class F>
  auto guarded(Napi::Env env, F&& f) {
    busy_.require_idle(env);
    return translating(env, std::forward<F>(f));
  }

  // Optional Float64Array of item ids (for error messages), one per row.
  static std::shared_ptr<std::vector<int64_t>> ids_arg(const Napi::Value& v, int64_t rows) {
    if (v.IsNull() || v.IsUndefined()) return nullptr;
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
      throw_coded(v.Env(), cl::ErrorCode::Dtype, "itemIds: expected Float64Array or null, got " + typed_array_name(v));
    auto a = v.As<Napi::Float64Array>();
    if (static_cast<int64_t>(a.ElementLength()) != rows)
      throw_coded(v.Env(), cl::ErrorCode::Shape,
                  "itemIds: expected " + std::to_string(rows) + " elements, got " + std::to_string(a.ElementLength()));
    auto ids = std::make_shared<std::vector<int64_t>>(rows);
    const double* src = a.Data();
    for (int64_t i = 0; i < rows; ++i) (*ids)[i] = static_cast<int64_t>(src[i]);
    return ids;
  }

  // trainEpoch(data, rows, batch, itemIds|null, onProgress|null, cancel|null): Promise<stats>
  // Steps over consecutive batches of data (already shuffled by the caller).
  Napi::Value TrainEpoch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto sae = sae_;
    int64_t rows = int_arg(info[1], "rows", 1), batch = int_arg(info[2], "batch", 1);
    cl::MatrixView x = matrix_arg(info[0], rows, sae->config().d, "data");
    auto ids = ids_arg(info[3], rows);
    auto last = last_;
    auto result = std::make_shared<EpochStats>();
    auto busy = busy_.claim(env);
    const int64_t m = sae->config().m;
    return Task::Start(
        env,
        [sae, x, rows, batch, ids, busy, last, result](cl::Progress& p) {
          p.set_total(rows);
          for (int64_t r0 = 0; r0 < rows; r0 += batch) {
            p.check();
            int64_t n = std::min(batch, rows - r0);
            cl::SaeStats s = sae->step(x, r0, n, ids ? ids->data() + r0 : nullptr);
            result->add(s, n);
            {
              std::lock_guard<std::mutex> lock(last->mu);
              last->stats = s;
            }
            p.advance(n);
          }
        },
        [result, m](Napi::Env e) {
          Napi::Object o = stats_object(e, result->mean, m);
          o.Set("steps", double(result->steps));
          o.Set("last", stats_object(e, result->last, m));
          return Napi::Value(o);
        },
        info[4], info[5], {info[0], info.This()});
  }

  // step(batch, rows, itemIds|null): Promise<stats>
  Napi::Value Step(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto sae = sae_;
    int64_t rows = int_arg(info[1], "rows", 1);
    cl::MatrixView x = matrix_arg(info[0], rows, sae->config().d, "batch");
    auto ids = ids_arg(info[2], rows);
    auto out = std::make_shared<cl::SaeStats>();
    auto last = last_;
    auto busy = busy_.claim(env);
    const int64_t m = sae->config().m;
    return Task::Start(
        env,
        [sae, x, rows, ids, busy, out, last](cl::Progress&) {
          *out = sae->step(x, 0, rows, ids ? ids->data() : nullptr);
          std::lock_guard<std::mutex> lock(last->mu);
          last->stats = *out;
        },
        [out, m](Napi::Env e) { return Napi::Value(stats_object(e, *out, m)); }, env.Null(), env.Null(), {info[0], info.This()});
  }

  // encode(data, rows, batch, onProgress|null, cancel|null): Promise<Float32Array rows × m>
  Napi::Value Encode(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto sae = sae_;
    int64_t rows = int_arg(info[1], "rows", 1), batch = int_arg(info[2], "batch", 1);
    cl::MatrixView x = matrix_arg(info[0], rows, sae->config().d, "data");
    const int64_t m = sae->config().m;
    auto out = Napi::Float32Array::New(env, rows * m);
    float* dst = out.Data();
    auto busy = busy_.claim(env);
    auto keep = Napi::Persistent(Napi::Value(out));
    auto ref = std::make_shared<Napi::Reference<Napi::Value>>(std::move(keep));
    return Task::Start(
        env,
        [sae, x, rows, batch, dst, busy](cl::Progress& p) {
          p.set_total(rows);
          for (int64_t r0 = 0; r0 < rows; r0 += batch) {
            p.check();
            int64_t n = std::min(batch, rows - r0);
            sae->encode(x, r0, n, dst + r0 * sae->config().m);
            p.advance(n);
          }
        },
        [ref](Napi::Env) { return ref->Value(); }, info[3], info[4], {info[0], info.This()});
  }

  // params(): views into the JS-owned storage (decoder: m × d, row j = atom j).
  Napi::Value Params(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    busy_.require_idle(env);
    const auto& L = sae_->layout();
    const auto& c = sae_->config();
    Napi::Float32Array s = storage_.Value();
    auto view = [&](int64_t off, int64_t len) {
      return Napi::Float32Array::New(env, len, s.ArrayBuffer(), s.ByteOffset() + 4 * off);
    };
    Napi::Object o = Napi::Object::New(env);
    o.Set("encoder", view(L.we, c.m * c.d));
    o.Set("encoderBias", view(L.be, c.m));
    o.Set("decoder", view(L.dec, c.m * c.d));
    o.Set("bias", view(L.b, c.d));
    return o;
  }

  Napi::Value Config(const Napi::CallbackInfo& info) { return config_object(info.Env(), sae_->config()); }

  // lastStats(): the most recent step's statistics (safe during an epoch).
  Napi::Value LastStats(const Napi::CallbackInfo& info) {
    std::lock_guard<std::mutex> lock(last_->mu);
    return stats_object(info.Env(), last_->stats, sae_->config().m);
  }

  Napi::Value Dead(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] { return index_array(info.Env(), sae_->dead()); });
  }

  Napi::Value Fired(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] {
      std::vector<int64_t> f(sae_->fired(), sae_->fired() + sae_->config().m);
      return index_array(info.Env(), f);
    });
  }

  Napi::Value ResampleBegin(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] {
      sae_->resample_begin();
      return info.Env().Undefined();
    });
  }

  Napi::Value ResampleApply(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] { return index_array(info.Env(), sae_->resample_apply()); });
  }

  Napi::Value Save(const Napi::CallbackInfo& info) {
    std::string path = string_arg(info[0], "path");
    return guarded(info.Env(), [&] {
      sae_->save(path);
      return info.Env().Undefined();
    });
  }

  Napi::Value Load(const Napi::CallbackInfo& info) {
    std::string path = string_arg(info[0], "path");
    return guarded(info.Env(), [&] {
      sae_->load(path);
      return info.Env().Undefined();
    });
  }

  Napi::Value Steps(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(sae_->steps())); }

  static Napi::Value ReadConfig(const Napi::CallbackInfo& info) {
    std::string path = string_arg(info[0], "path");
    return config_object(info.Env(), translating(info.Env(), [&] { return cl::Sae::read_config(path); }));
  }

  struct Last {
    std::mutex mu;
    cl::SaeStats stats;
  };

  Napi::Reference<Napi::Float32Array> storage_;
  std::shared_ptr<cl::Sae> sae_;
  BusyFlag busy_{"SaeTrainer"};
  std::shared_ptr<Last> last_ = std::make_shared<Last>();
};

}  // namespace

void InitSae(Napi::Env env, Napi::Object exports) { SaeTrainer::Init(env, exports); }

}  // namespace clb
