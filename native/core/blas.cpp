#include "blas.h"

#include <cblas.h>
#include <omp.h>

#include "threads.h"

namespace cl {

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
}

void ssyrk_upper_ata(int64_t n, int64_t k, float alpha, const float* a, int64_t lda, float beta, float* c, int64_t ldc) {
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(lda), beta, c, static_cast<blasint>(ldc));
}

std::string blas_core_name() {
  const char* name = openblas_get_corename();
  return name ? name : "unknown";
}

int blas_threads() { return openblas_get_num_threads(); }

WideBlas::WideBlas(int threads) : lease_(threads, threads) {
  if (lease_.cores() == 0) return;
  openblas_set_num_threads(lease_.cores());
  omp_set_num_threads(lease_.cores());
}

// omp_set_num_threads is per calling thread: FAISS runs on the guard's thread.
WideBlas::~WideBlas() {
  if (lease_.cores() == 0) return;
  openblas_set_num_threads(1);
  omp_set_num_threads(1);
}

void init_blas_threading() {
  openblas_set_num_threads(1);
  omp_set_num_threads(1);
}

}  // namespace cl
