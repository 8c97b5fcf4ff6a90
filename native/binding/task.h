// Runs a core computation on the libuv pool and settles a Promise. Progress
// goes back through AsyncProgressWorker (coalesced, throttled); an abort flag
// shared with JS stops the kernel, and the Promise rejects with an AbortError.
// Every rejection carries the error's `code` (args.h exception_code).
// Input TypedArrays are kept alive (and read in place) until the task ends.
#pragma once
#include <napi.h>

#include <functional>
#include <vector>

#include "../core/progress.h"

namespace clb {

struct Tick {
  int64_t done, total;
};

class Task : public Napi::AsyncProgressWorker<Tick> {
 public:
  using Work = std::function<void(cl::Progress&)>;
  using Finish = std::function<Napi::Value(Napi::Env)>;

  // onProgress and cancel may be null/undefined. keep: values to hold alive.
  static Napi::Promise Start(Napi::Env env, Work work, Finish finish, const Napi::Value& on_progress,
                             const Napi::Value& cancel, const std::vector<Napi::Value>& keep);

 protected:
  void Execute(const ExecutionProgress& progress) override;
  void OnProgress(const Tick* data, size_t count) override;
  void OnOK() override;
  void OnError(const Napi::Error& e) override;

 private:
  Task(Napi::Env env, Work work, Finish finish, const Napi::Value& cancel);

  Napi::Promise::Deferred deferred_;
  Work work_;
  Finish finish_;
  Napi::FunctionReference on_progress_;
  const std::atomic<int32_t>* cancel_ = nullptr;
  std::vector<Napi::Reference<Napi::Value>> keep_;
  const char* code_ = "ERR_ENGINE";
};

}  // namespace clb
