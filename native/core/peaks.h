// The machine's arithmetic ceilings: how many multiply-adds per second the
// compute threads can retire in the instructions the engine's heavy kernels
// are built on, on register-resident data (no memory traffic). A
// kernel's operation count at these rates is its floor: the time no
// implementation of that arithmetic on this machine can beat, which the bench
// suites print beside each measured time.
#pragma once
#include <cstdint>

#include "progress.h"

namespace cl {

struct MachinePeaks {
  // fp32 FMAs at the widest vectors the CPU has (AVX-512, else AVX2; the
  // CONCEPTLENS_NO_AVX512 test switch counts as no AVX-512); 0 without FMA.
  double fp32_macs_per_s = 0;
  double int8_macs_per_s = 0;   // u8×s8 dot products, as the int8 screen runs them; 0 where it does not run
  double int16_macs_per_s = 0;  // s16×s16 dot products, as the int16 Gram runs them; 0 where it does not run
  int threads = 0;             // compute threads the rates count
  const char* fp32_isa = "";   // "avx512" or "avx2"; "" when fp32_macs_per_s is 0
};

// Each rate is threads × the best rate one thread sustained over 12 rounds
// in which all compute threads run the loop at once (about 0.12 s in all):
// other work on the machine spoils single samples, not the result. Where
// threads share vector units (SMT siblings) it overstates the ceiling, which
// keeps floors below any real time.
MachinePeaks measure_peaks(Progress& progress);

// One thread's measuring loops, exposed so tests can check that they do the
// arithmetic they count: `steps` steps, each retiring *_macs_per_step()
// multiply-adds in independent accumulators. fp32 adds a·b per multiply-add
// and returns the sum of every accumulator lane; int8 adds u·s and int16 a·b
// per multiply-add and return the same sum. Both use the ISA measure_peaks
// uses; 0 multiply-adds per step where the CPU lacks it.
double fp32_peak_loop(int64_t steps, float a, float b);
int64_t int8_peak_loop(int64_t steps, uint8_t u, int8_t s);
int64_t int16_peak_loop(int64_t steps, int16_t a, int16_t b);
int64_t fp32_macs_per_step();
int64_t int8_macs_per_step();
int64_t int16_macs_per_step();

}  // namespace cl
