// One compute pool for the whole engine. The pool, OpenBLAS and FAISS's OpenMP
// share the machine's cores: kernels parallelise through the pool with
// single-threaded BLAS calls, and only code that hands a large GEMM to BLAS
// (or calls FAISS) widens BLAS/OpenMP for that call (see blas.h).
//
// Calls in flight at the same time (several Promises from JS) share one budget
// of compute_threads() cores: a parallel region or a widened BLAS section
// leases cores from it, and a call that finds none free waits for the next
// region to end. So the process never runs more compute threads than cores,
// and concurrent calls interleave region by region instead of oversubscribing.
#pragma once
#include <cstdint>
#include <functional>

namespace cl {

// Number of threads kernels use (defaults to the cores this process may run on).
int compute_threads();
void set_compute_threads(int n);

// Niceness of the threads that run kernels (0: as the process; 1..19: lower
// priority). A service sets it so that its event loop, which parses requests
// and answers health checks, preempts a saturated engine at once. Applied to
// each thread as it enters a region; raising a thread's niceness is one-way
// for unprivileged processes, so a thread keeps the highest value it saw.
int compute_nice();
void set_compute_nice(int n);

// Runs fn(task, worker) for task in [0, ntasks) on up to compute_threads()
// workers (the caller is one of them). worker is in [0, workers) and lets a
// kernel keep per-thread scratch. Exceptions stop the loop and the first one
// is rethrown in the caller. Inside a region (nested) it runs inline.
void parallel_for(int64_t ntasks, const std::function<void(int64_t task, int worker)>& fn);

// How many distinct worker ids parallel_for(ntasks, ...) may use.
int parallel_workers(int64_t ntasks);

// Marks the calling thread (the JS event loop) as one that never waits for
// cores: its parallel_for runs inline and it never widens BLAS, so a quick
// synchronous check on it is never held up by other calls' regions.
void mark_event_loop_thread();

// Cores leased from the shared budget for the lifetime of the object: blocks
// until `min` are free, then takes up to `max`. A thread already inside a
// region or lease gets none (cores() == 0) and must not widen.
class CoreLease {
 public:
  CoreLease(int min, int max);
  ~CoreLease();
  CoreLease(const CoreLease&) = delete;
  CoreLease& operator=(const CoreLease&) = delete;
  int cores() const { return cores_; }

 private:
  int cores_ = 0;
};

}  // namespace cl
