// Which OpenBLAS kernel family this CPU should use. OpenBLAS reads
// OPENBLAS_CORETYPE once, when it loads, and Debian's 0.3.21 misdetects
// AVX-512 Zen as Haswell (sgemm 2.7x slower), so the choice must be made
// before the library loads: by the JS loader for the addon (ts/native.ts,
// same rule) and by relaunching for the C++ tests.
#pragma once
#include <string>

namespace cl {

// Whether this CPU runs AVX-512F: kernels built for baseline x86-64 check it
// before taking their AVX-512 path. CONCEPTLENS_NO_AVX512 (any value) says
// no, so the scalar paths run in tests on AVX-512 machines too.
bool cpu_avx512f();

// Runs f() with every call in it inlined into one of two builds of the same
// body: for AVX-512 (wider vectors and FMA for the loops the compiler
// vectorises) where `avx512` says the CPU has it (cpu_avx512f(), read once by
// the caller), for baseline x86-64 otherwise.
template <class F>
__attribute__((flatten, target("avx512f"))) void run_avx512(F& f) { f(); }
template <class F>
__attribute__((flatten)) void run_baseline(F& f) { f(); }
template <class F>
void run_widest(bool avx512, F&& f) { avx512 ? run_avx512(f) : run_baseline(f); }

// "SkylakeX" on CPUs with the AVX-512 subsets its kernels use; "" otherwise
// (keep OpenBLAS's own detection). CONCEPTLENS_OPENBLAS_CORETYPE overrides.
std::string preferred_openblas_coretype();

// For standalone programs: sets OPENBLAS_CORETYPE to the preferred kernels
// and OMP_WAIT_POLICY to PASSIVE (unless the user set it), re-executing the
// program when either changes, since both libraries read them at load.
void relaunch_with_preferred_blas(char** argv);

}  // namespace cl
