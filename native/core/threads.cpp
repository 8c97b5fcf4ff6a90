#include "threads.h"

#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
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
std::atomic<int> g_nice{0};
thread_local int t_nice = 0;

// On Linux, PRIO_PROCESS with a thread id sets that thread's niceness alone.
void apply_nice() {
  const int want = g_nice.load(std::memory_order_relaxed);
  if (want <= t_nice) return;
  if (setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), want) == 0) t_nice = want;
}

// The shared core budget: cores leased by regions in flight.
std::mutex g_budget_mutex;
std::condition_variable g_budget_freed;
int g_leased = 0;
// Set on threads that run inside a region or hold a lease: nested regions run
// inline, so a thread never waits on cores its own region holds.
thread_local bool t_inside = false;

struct Inside {
  bool saved = t_inside;
  Inside() { t_inside = true; }
  ~Inside() { t_inside = saved; }
};

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

int compute_nice() { return g_nice.load(); }

void set_compute_nice(int n) { g_nice.store(std::clamp(n, 0, 19)); }

int parallel_workers(int64_t ntasks) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(ntasks, compute_threads())));
}

void mark_event_loop_thread() { t_inside = true; }

CoreLease::CoreLease(int min, int max) {
  if (t_inside) return;
  std::unique_lock<std::mutex> lock(g_budget_mutex);
  const int total = compute_threads();
  min = std::clamp(min, 1, total);
  g_budget_freed.wait(lock, [&] { return total - g_leased >= min; });
  cores_ = std::clamp(total - g_leased, min, std::max(min, max));
  g_leased += cores_;
}

CoreLease::~CoreLease() {
  if (cores_ == 0) return;
  {
    std::lock_guard<std::mutex> lock(g_budget_mutex);
    g_leased -= cores_;
  }
  g_budget_freed.notify_all();
}

void parallel_for(int64_t ntasks, const std::function<void(int64_t, int)>& fn) {
  if (ntasks <= 0) return;
  if (t_inside) {
    for (int64_t t = 0; t < ntasks; ++t) fn(t, 0);
    return;
  }
  apply_nice();
  CoreLease lease(1, parallel_workers(ntasks));
  Inside inside;
  const int workers = lease.cores();
  Job job;
  job.ntasks = ntasks;
  job.fn = &fn;
  // Short-lived helpers: a kernel call lasts milliseconds to minutes, so thread
  // start-up (tens of microseconds) is noise, and nothing idles between calls.
  std::vector<std::thread> helpers;
  helpers.reserve(workers - 1);
  for (int w = 1; w < workers; ++w)
    helpers.emplace_back([&job, w] {
      apply_nice();
      Inside in;
      job.run(w);
    });
  job.run(0);
  for (auto& t : helpers) t.join();
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace cl
