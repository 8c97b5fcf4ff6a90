#include "threads.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace cl {
namespace {

int available_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

std::atomic<int> g_threads{0};

// A job shared by the caller and the helper threads it wakes.
struct Job {
  int64_t ntasks = 0;
  const std::function<void(int64_t, int)>* fn = nullptr;
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mutex;

  void run(int worker) {
    for (;;) {
      if (failed.load(std::memory_order_relaxed)) return;
      int64_t t = next.fetch_add(1);
      if (t >= ntasks) return;
      try {
        (*fn)(t, worker);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!failed.exchange(true)) error = std::current_exception();
      }
    }
  }
};

}  // namespace

int compute_threads() {
  int n = g_threads.load();
  return n > 0 ? n : available_cores();
}

void set_compute_threads(int n) { g_threads.store(std::max(0, n)); }

int parallel_workers(int64_t ntasks) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(ntasks, compute_threads())));
}

void parallel_for(int64_t ntasks, const std::function<void(int64_t, int)>& fn) {
  if (ntasks <= 0) return;
  int workers = parallel_workers(ntasks);
  Job job;
  job.ntasks = ntasks;
  job.fn = &fn;
  // Short-lived helpers: a kernel call lasts milliseconds to minutes, so thread
  // start-up (tens of microseconds) is noise, and nothing idles between calls.
  std::vector<std::thread> helpers;
  helpers.reserve(workers - 1);
  for (int w = 1; w < workers; ++w) helpers.emplace_back([&job, w] { job.run(w); });
  job.run(0);
  for (auto& t : helpers) t.join();
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace cl
