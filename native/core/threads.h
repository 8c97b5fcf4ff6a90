// One compute pool for the whole engine. The pool, OpenBLAS and FAISS's OpenMP
// share the machine's cores: kernels parallelise through the pool with
// single-threaded BLAS calls, and only code that hands a large GEMM to BLAS
// (or calls FAISS) widens BLAS/OpenMP for that call (see blas.h).
#pragma once
#include <cstdint>
#include <functional>

namespace cl {

// Number of threads kernels use (defaults to the cores this process may run on).
int compute_threads();
void set_compute_threads(int n);

// Runs fn(task, worker) for task in [0, ntasks) on up to compute_threads()
// workers (the caller is one of them). worker is in [0, workers) and lets a
// kernel keep per-thread scratch. Exceptions stop the loop and the first one
// is rethrown in the caller.
void parallel_for(int64_t ntasks, const std::function<void(int64_t task, int worker)>& fn);

// How many distinct worker ids parallel_for(ntasks, ...) will use.
int parallel_workers(int64_t ntasks);

}  // namespace cl
