#include "peaks.h"

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "cpu.h"
#include "gram_int16.h"
#include "threads.h"
#include "topk_screen.h"

namespace cl {
namespace {

// Independent accumulators per loop: enough to cover the FMA latency on both
// pipes (4 cycles × 2 on current cores), few enough to stay in registers
// (AVX2 has 16, two of them the operands). The steps are written in assembly:
// compilers copy accumulators of destructive intrinsics between registers and
// the stack, and the loop would time those copies.
constexpr int kChains512 = 16, kChainsAvx2 = 12;

// The fp32 loop's vectors: the widest the CPU has (none without FMA).
enum class Fp32Isa { None, Avx2, Avx512 };
constexpr const char* kFp32IsaNames[] = {"", "avx2", "avx512"};
Fp32Isa fp32_isa() {
  if (cpu_avx512f()) return Fp32Isa::Avx512;
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? Fp32Isa::Avx2 : Fp32Isa::None;
}
bool has_int8() { return screening_available(ScreenFormat::Int8); }

// One instruction `op` into each of 12 or 16 accumulators (registers 4..):
// acc += x·y, x and y being operands 1 and 2 (AT&T order: y, x, acc).
#define CL_STEP(op, r) op " %2, %1, %%" r "\n\t"
#define CL_STEP12(op, p)                                                                                    \
  CL_STEP(op, p "4") CL_STEP(op, p "5") CL_STEP(op, p "6") CL_STEP(op, p "7") CL_STEP(op, p "8")            \
  CL_STEP(op, p "9") CL_STEP(op, p "10") CL_STEP(op, p "11") CL_STEP(op, p "12") CL_STEP(op, p "13")        \
  CL_STEP(op, p "14") CL_STEP(op, p "15")
#define CL_STEP16(op, p) CL_STEP12(op, p) CL_STEP(op, p "16") CL_STEP(op, p "17") CL_STEP(op, p "18") CL_STEP(op, p "19")
#define CL_REST12 "5,6,7,8,9,10,11,12,13,14,15"
#define CL_REST16 CL_REST12 ",16,17,18,19"
#define CL_CLOBBERS12 "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"
#define CL_CLOBBERS16 CL_CLOBBERS12, "xmm16", "xmm17", "xmm18", "xmm19"

// A measuring loop as one asm statement: the accumulators (registers 4 and
// `rest` of kind `vec`) zeroed by `zero`, `steps` rounds of `step_all`, then
// stored to `out`, `bytes` apart. x and y sit in registers of constraint `c`.
#define CL_PEAK_LOOP(zero, vec, rest, bytes, step_all, c, x, y, out, ...)                                \
  asm volatile(zero " %%" vec "4, %%" vec "4, %%" vec "4\n\t"                                           \
               ".irp i," rest "\n\tvmovaps %%" vec "4, %%" vec "\\i\n\t.endr\n\t"                   \
               "test %0, %0\n\tjle 2f\n\t1:\n\t" step_all "dec %0\n\tjnz 1b\n\t2:\n\t"              \
               ".irp i,4," rest "\n\tvmovaps %%" vec "\\i, (" bytes "*(\\i-4))(%3)\n\t.endr"           \
               : "+r"(steps)                                                                            \
               : c(x), c(y), "r"(out)                                                                   \
               : "memory", "cc", __VA_ARGS__)

// The sum of every accumulator lane the loop stored (exact for the tests' values).
template <class Sum, class T, size_t N>
Sum lane_sum(const T (&out)[N]) {
  Sum s = 0;
  for (T x : out) s += x;
  return s;
}

__attribute__((target("avx512f"))) double fp32_loop_512(int64_t steps, float a, float b) {
  alignas(64) float out[kChains512 * 16];
  const __m512 va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b);
  CL_PEAK_LOOP("vpxord", "zmm", CL_REST16, "64", CL_STEP16("vfmadd231ps", "zmm"), "v", va, vb, out, CL_CLOBBERS16);
  return lane_sum<double>(out);
}

__attribute__((target("avx2,fma"))) double fp32_loop_avx2(int64_t steps, float a, float b) {
  alignas(32) float out[kChainsAvx2 * 8];
  const __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
  CL_PEAK_LOOP("vpxor", "ymm", CL_REST12, "32", CL_STEP12("vfmadd231ps", "ymm"), "x", va, vb, out, CL_CLOBBERS12);
  return lane_sum<double>(out);
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) int64_t int8_loop(int64_t steps, uint8_t u, int8_t s) {
  alignas(64) int32_t out[kChains512 * 16];
  // vpdpbusd multiplies the first source's unsigned bytes by the second's signed ones.
  const __m512i vu = _mm512_set1_epi8(static_cast<char>(u)), vs = _mm512_set1_epi8(s);
  CL_PEAK_LOOP("vpxord", "zmm", CL_REST16, "64", CL_STEP16("vpdpbusd", "zmm"), "v", vu, vs, out, CL_CLOBBERS16);
  return lane_sum<int64_t>(out);
}

// vpdpwssd: signed words by signed words, two per 32-bit lane (the int16 Gram).
__attribute__((target("avx512f,avx512bw,avx512vnni"))) int64_t int16_loop(int64_t steps, int16_t a, int16_t b) {
  alignas(64) int32_t out[kChains512 * 16];
  const __m512i va = _mm512_set1_epi16(a), vb = _mm512_set1_epi16(b);
  CL_PEAK_LOOP("vpxord", "zmm", CL_REST16, "64", CL_STEP16("vpdpwssd", "zmm"), "v", va, vb, out, CL_CLOBBERS16);
  return lane_sum<int64_t>(out);
}

// Sinks the loops' results so the compiler keeps their arithmetic.
thread_local volatile double sink;

// One loop measured: its multiply-adds per step and the best rate one thread sustained.
struct Meter {
  int64_t per_step;
  void (*loop)(int64_t steps);
  double best = 0;
};

// One round: every compute thread runs the loop at once and times its own
// call, so a thread that the OS or another process slows (or that runs its
// task after another, when a concurrent call holds cores) spoils only its own
// sample.
void measure_round(Meter& meter, int64_t steps, int threads) {
  std::vector<double> rates(threads, 0.0);
  parallel_for(threads, [&](int64_t t, int) {
    const auto t0 = std::chrono::steady_clock::now();
    meter.loop(steps);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rates[t] = double(steps) * double(meter.per_step) / s;
  });
  meter.best = std::max(meter.best, *std::max_element(rates.begin(), rates.end()));
}

}  // namespace

int64_t fp32_macs_per_step() {
  const Fp32Isa isa = fp32_isa();
  return isa == Fp32Isa::Avx512 ? kChains512 * 16 : isa == Fp32Isa::Avx2 ? kChainsAvx2 * 8 : 0;
}
int64_t int8_macs_per_step() { return has_int8() ? kChains512 * 64 : 0; }
int64_t int16_macs_per_step() { return int16_gram_available() ? kChains512 * 32 : 0; }

double fp32_peak_loop(int64_t steps, float a, float b) {
  const Fp32Isa isa = fp32_isa();
  return isa == Fp32Isa::Avx512 ? fp32_loop_512(steps, a, b) : isa == Fp32Isa::Avx2 ? fp32_loop_avx2(steps, a, b) : 0.0;
}

int64_t int8_peak_loop(int64_t steps, uint8_t u, int8_t s) { return has_int8() ? int8_loop(steps, u, s) : 0; }
int64_t int16_peak_loop(int64_t steps, int16_t a, int16_t b) { return int16_gram_available() ? int16_loop(steps, a, b) : 0; }

MachinePeaks measure_peaks(Progress& progress) {
  // About 5 ms a loop at 2 vector FMAs per cycle and 3.5 GHz; the first rounds
  // also bring the cores to their vector clocks, which the best then reflects.
  constexpr int64_t kSteps = int64_t(1) << 21;
  constexpr int kRounds = 12;
  MachinePeaks m;
  m.threads = compute_threads();
  Meter fp32{fp32_macs_per_step(), [](int64_t n) { sink = fp32_peak_loop(n, 1.0f, 0x1p-20f); }};
  Meter int8{int8_macs_per_step(), [](int64_t n) { sink = double(int8_peak_loop(n, 1, 1)); }};
  Meter int16{int16_macs_per_step(), [](int64_t n) { sink = double(int16_peak_loop(n, 1, 1)); }};
  progress.set_total(int64_t(kRounds) * ((fp32.per_step > 0) + (int8.per_step > 0) + (int16.per_step > 0)));
  // They alternate, so a burst of other work slows all alike.
  for (int r = 0; r < kRounds; ++r)
    for (Meter* meter : {&fp32, &int8, &int16}) {
      if (meter->per_step == 0) continue;
      progress.check();
      measure_round(*meter, kSteps, m.threads);
      progress.advance(1);
    }
  m.fp32_macs_per_s = fp32.best * m.threads;
  m.int8_macs_per_s = int8.best * m.threads;
  m.int16_macs_per_s = int16.best * m.threads;
  m.fp32_isa = kFp32IsaNames[int(fp32_isa())];
  return m;
}

}  // namespace cl
