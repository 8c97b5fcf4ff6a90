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
// groups of two (one group of three, or a single block, where the count is
// odd), so a group's queries stay in L1 while a tile's rows stream past.
template <class Fn>
void for_query_groups(int64_t blocks, Fn&& fn) {
  const int first = blocks % 2 == 0 ? 2 : blocks == 1 ? 1 : 3;
  for (int64_t b0 = 0; b0 < blocks;) {
    const int qb = b0 == 0 ? first : 2;
    if (qb == 1) fn(std::integral_constant<int, 1>{}, b0);
    else if (qb == 2) fn(std::integral_constant<int, 2>{}, b0);
    else fn(std::integral_constant<int, 3>{}, b0);
    b0 += qb;
  }
}

}  // namespace cl
