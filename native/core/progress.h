// Progress reporting and cooperative cancellation shared by every long kernel.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>

#include "error.h"

namespace cl {

class Progress {
 public:
  using Callback = std::function<void(int64_t done, int64_t total)>;

  Progress() = default;
  Progress(Callback cb, const std::atomic<int32_t>* cancel) : cb_(std::move(cb)), cancel_(cancel) {}

  void set_total(int64_t total) { total_ = total; }
  // Thread-safe: kernels call this from pool threads.
  void advance(int64_t n) {
    int64_t done = done_.fetch_add(n) + n;
    if (cb_) cb_(done, total_);
  }
  bool cancelled() const { return cancel_ && cancel_->load(std::memory_order_relaxed) != 0; }
  void check() const {
    if (cancelled()) throw Cancelled();
  }

 private:
  Callback cb_;
  const std::atomic<int32_t>* cancel_ = nullptr;
  std::atomic<int64_t> done_{0};
  int64_t total_ = 0;
};

}  // namespace cl
