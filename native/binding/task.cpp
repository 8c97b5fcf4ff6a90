#include "task.h"

#include <chrono>

#include "args.h"

namespace clb {

Task::Task(Napi::Env env, Work work, Finish finish, const Napi::Value& cancel)
    : Napi::AsyncProgressWorker<Tick>(env, "conceptlens"),
      deferred_(Napi::Promise::Deferred::New(env)),
      work_(std::move(work)),
      finish_(std::move(finish)),
      cancel_(cancel_arg(cancel)) {}

Napi::Promise Task::Start(Napi::Env env, Work work, Finish finish, const Napi::Value& on_progress,
                          const Napi::Value& cancel, const std::vector<Napi::Value>& keep) {
  auto* t = new Task(env, std::move(work), std::move(finish), cancel);
  if (on_progress.IsFunction()) t->on_progress_ = Napi::Persistent(on_progress.As<Napi::Function>());
  for (const auto& v : keep)
    if (v.IsObject()) t->keep_.push_back(Napi::Reference<Napi::Value>::New(v, 1));
  if (cancel.IsObject()) t->keep_.push_back(Napi::Reference<Napi::Value>::New(cancel, 1));
  Napi::Promise p = t->deferred_.Promise();
  t->Queue();
  return p;
}

void Task::Execute(const ExecutionProgress& progress) {
  using Clock = std::chrono::steady_clock;
  auto last = Clock::now() - std::chrono::seconds(1);
  int64_t sent = -1;
  std::mutex mu;
  cl::Progress p(
      [&](int64_t done, int64_t total) {
        std::lock_guard<std::mutex> lock(mu);
        // done is counted before the lock: a thread held up between the two
        // must not send a count older than one already sent (the final one).
        if (done <= sent) return;
        auto now = Clock::now();
        if (done < total && now - last < std::chrono::milliseconds(100)) return;
        last = now;
        sent = done;
        Tick t{done, total};
        progress.Send(&t, 1);
      },
      cancel_);
  try {
    work_(p);
  } catch (const cl::Cancelled& e) {
    code_ = exception_code(e);
    SetError("The operation was aborted");
  } catch (const std::exception& e) {
    code_ = exception_code(e);
    SetError(std::string(code_) == "ERR_MEMORY"
                 ? std::string("the engine could not allocate the memory this call needs (") + e.what() +
                       "); use fewer rows, queries or concepts per call"
                 : e.what());
  }
}

void Task::OnProgress(const Tick* data, size_t count) {
  if (on_progress_.IsEmpty() || count == 0) return;
  Napi::Env env = Env();
  on_progress_.Call({Napi::Number::New(env, double(data[count - 1].done)),
                     Napi::Number::New(env, double(data[count - 1].total))});
}

void Task::OnOK() {
  Napi::Env env = Env();
  try {
    deferred_.Resolve(finish_(env));
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  } catch (const std::exception& e) {
    deferred_.Reject(coded_error(env, exception_code(e), e.what()).Value());
  }
}

void Task::OnError(const Napi::Error& e) {
  Napi::Object err = e.Value().As<Napi::Object>();
  err.Set("code", code_);
  if (std::string(code_) == "ERR_ABORTED") err.Set("name", "AbortError");
  deferred_.Reject(err);
}

}  // namespace clb
