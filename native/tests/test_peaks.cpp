// The arithmetic ceilings: the measuring loops retire exactly the
// multiply-adds they count (closed forms), on the ISA the CPU has, and the
// measurement reports a rate for each ISA present and honours cancellation.
// (Speeds themselves are not asserted: they live in the bench suites.)
#include <atomic>
#include <cstdlib>

#include "../core/cpu.h"
#include "../core/gram_int16.h"
#include "../core/peaks.h"
#include "../core/threads.h"
#include "../core/topk_screen.h"
#include "check.h"

namespace {

TEST(fp32_loop_adds_a_times_b_once_per_counted_multiply_add) {
  const int64_t per = cl::fp32_macs_per_step();
  const bool fma = __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx2");
  CHECK(per == (cl::cpu_avx512f() ? 16 * 16 : fma ? 12 * 8 : 0));
  // 0.75 · 1000 steps is exact in every fp32 lane, and so is the double sum.
  CHECK(cl::fp32_peak_loop(1000, 1.5f, 0.5f) == 0.75 * 1000 * double(per));
  CHECK(cl::fp32_peak_loop(0, 1.5f, 0.5f) == 0.0);
}

TEST(int8_loop_adds_u_times_s_once_per_counted_multiply_add) {
  const int64_t per = cl::int8_macs_per_step();
  CHECK(per == (cl::screening_available(cl::ScreenFormat::Int8) ? 16 * 64 : 0));
  // Unsigned by signed, as vpdpbusd multiplies: 255 stays 255, -128 stays -128.
  CHECK(cl::int8_peak_loop(100, 255, -128) == int64_t(100) * 255 * -128 * per);
  CHECK(cl::int8_peak_loop(1000, 3, -2) == int64_t(1000) * -6 * per);
}

TEST(int16_loop_adds_a_times_b_once_per_counted_multiply_add) {
  const int64_t per = cl::int16_macs_per_step();
  CHECK(per == (cl::int16_gram_available() ? 16 * 32 : 0));
  // Signed words both: -2047 · 2047, the int16 Gram's extremes, in 100 steps stays within int32 per lane.
  CHECK(cl::int16_peak_loop(100, -2047, 2047) == int64_t(100) * -2047 * 2047 * per);
  CHECK(cl::int16_peak_loop(1000, 3, -2) == int64_t(1000) * -6 * per);
}

TEST(measurement_reports_a_rate_for_each_isa_present) {
  cl::Progress progress;
  const cl::MachinePeaks m = cl::measure_peaks(progress);
  CHECK(m.threads == cl::compute_threads());
  CHECK((m.fp32_macs_per_s > 0) == (cl::fp32_macs_per_step() > 0));
  CHECK((m.int8_macs_per_s > 0) == (cl::int8_macs_per_step() > 0));
  CHECK((m.int16_macs_per_s > 0) == (cl::int16_macs_per_step() > 0));
  CHECK(std::string(m.fp32_isa) == (m.fp32_macs_per_s == 0 ? "" : cl::cpu_avx512f() ? "avx512" : "avx2"));
}

TEST(measurement_stops_when_cancelled) {
  std::atomic<int32_t> flag{1};
  cl::Progress progress(nullptr, &flag);
  CHECK_THROWS_WITH(cl::measure_peaks(progress), "aborted");
}

}  // namespace
