// The engine's view of BLAS: row-major sgemm, and control over how many
// threads OpenBLAS (and FAISS's OpenMP) may use for a call.
#pragma once
#include <cstdint>
#include <string>

#include "threads.h"

namespace cl {

// C[m×n] = alpha · op(A) · op(B) + beta · C, row-major, leading dimensions given.
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// C[n×n] (upper triangle) = alpha · Aᵀ·A + beta · C for row-major A (k×n):
// a Gram matrix for half sgemm's flops. The lower triangle is left as it was.
void ssyrk_upper_ata(int64_t n, int64_t k, float alpha, const float* a, int64_t lda, float beta, float* c, int64_t ldc);

// Name of the kernel family OpenBLAS selected at load time (e.g. "SkylakeX").
std::string blas_core_name();
int blas_threads();

// Widens BLAS and OpenMP to `threads` for the guard's lifetime, then restores
// single-threaded BLAS. The cores are leased from the shared budget
// (threads.h), so a widened section waits for other calls' regions to end and
// they wait for it; inside a parallel region it does not widen.
class WideBlas {
 public:
  explicit WideBlas(int threads);
  ~WideBlas();
  WideBlas(const WideBlas&) = delete;
  WideBlas& operator=(const WideBlas&) = delete;

 private:
  CoreLease lease_;
};

// Called once at load: BLAS single-threaded, since the pool parallelises.
void init_blas_threading();

}  // namespace cl
