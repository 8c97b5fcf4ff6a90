// Register blocking shared by the lane kernels of the exact scan (fp32
// tiles, int8/bf16 screening): queries sit one per lane of a 16-wide
// register, 16 to a block; a kernel holds R rows × QB blocks of scores in
// registers while it walks the dimension once, so each row value is loaded
// once per QB·16 queries and each query value once per R rows.
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>

namespace cl {

constexpr int kLanes = 16;  // queries per register

// Rows per register group for QB query blocks: R·QB accumulators plus the
// QB query registers and a broadcast row value fit the 32 registers.
template <int QB>
constexpr int group_rows() {
  return QB == 4 ? 6 : QB == 3 ? 8 : 12;
}

namespace lanes_detail {
template <class Fn, int... R>
void tail(int r, int64_t r0, Fn& fn, std::integer_sequence<int, R...>) {
  (void)((r == R + 1 ? (fn(std::integral_constant<int, R + 1>{}, r0), true) : false) || ...);
}
}  // namespace lanes_detail

// fn(std::integral_constant<int, R>, r0) over `rows` rows in groups of G,
// the last group with its own, smaller R.
template <int G, class Fn>
void for_row_groups(int64_t rows, Fn&& fn) {
  int64_t r0 = 0;
  for (; r0 + G <= rows; r0 += G) fn(std::integral_constant<int, G>{}, r0);
  if (r0 < rows) lanes_detail::tail(static_cast<int>(rows - r0), r0, fn, std::make_integer_sequence<int, G - 1>{});
}

// fn(std::integral_constant<int, QB>, b0) over `blocks` query blocks in
// groups of G (2 or 3), so a group's queries stay in L1 while a tile's rows
// stream past; a count G does not divide is made up with groups of 3 first
// (G = 2) or of 2 last (G = 3), a single block alone.
template <int G = 2, class Fn>
void for_query_groups(int64_t blocks, Fn&& fn) {
  static_assert(G == 2 || G == 3, "groups of 2 or 3 blocks");
  if (blocks == 1) return fn(std::integral_constant<int, 1>{}, int64_t(0));
  const int64_t twos = G == 2 ? (blocks % 2 ? (blocks - 3) / 2 : blocks / 2) : (3 - blocks % 3) % 3;
  const int64_t threes = (blocks - 2 * twos) / 3;
  int64_t b0 = 0;
  for (int64_t i = 0; i < threes; ++i, b0 += 3) fn(std::integral_constant<int, 3>{}, b0);
  for (int64_t i = 0; i < twos; ++i, b0 += 2) fn(std::integral_constant<int, 2>{}, b0);
}

}  // namespace cl
