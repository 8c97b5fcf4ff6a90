// The scratch pool: which released blocks it keeps, which requests they
// serve, its size cap, and its accounting under concurrent use. Each case
// starts from an empty pool.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "../core/scratch.h"
#include "check.h"

namespace {

using cl::Scratch;
namespace scratch = cl::scratch;
constexpr size_t MiB = size_t(1) << 20;

TEST(a_released_block_serves_the_next_request_it_fits) {
  scratch::release_kept();
  float* first;
  {
    Scratch<float> a(4 * MiB / sizeof(float));
    first = a.data();
    std::memset(a.data(), 1, 4 * MiB);  // writable over its whole size
    CHECK(reinterpret_cast<uintptr_t>(first) % 64 == 0);
  }
  CHECK(scratch::kept_bytes() == 4 * MiB);
  {
    Scratch<char> b(3 * MiB);  // fits, and uses more than half
    CHECK(static_cast<void*>(b.data()) == static_cast<void*>(first));
    CHECK(scratch::kept_bytes() == 0);
    Scratch<char> c(3 * MiB);  // the pool is empty: a new block
    CHECK(static_cast<void*>(c.data()) != static_cast<void*>(first));
  }
  CHECK(scratch::kept_bytes() == 4 * MiB + 3 * MiB);
  scratch::Block big = scratch::take(8 * MiB), small = scratch::take(MiB + 64);
  // Neither kept block serves them: 8 MiB does not fit, and 1 MiB would use
  // less than half of both.
  CHECK(scratch::kept_bytes() == 7 * MiB);
  scratch::give(big);
  scratch::give(small);
}

TEST(a_request_takes_the_smallest_kept_block_it_fits) {
  scratch::release_kept();
  scratch::Block three = scratch::take(3 * MiB + 8), two = scratch::take(2 * MiB + 8);
  CHECK(three.bytes % 64 == 0 && three.bytes >= 3 * MiB + 8);  // capacities are whole 64-byte lines
  scratch::give(three);
  scratch::give(two);
  const scratch::Block got = scratch::take(2 * MiB);  // both fit; the 2 MiB block is the smaller
  CHECK(got.data == two.data && got.bytes == two.bytes);
  CHECK(scratch::kept_bytes() == three.bytes);
  scratch::give(got);
  CHECK(scratch::take(3 * MiB).data == three.data);  // then the 3 MiB one
  std::free(three.data);
  CHECK(scratch::take(2 * MiB).data == two.data);
  std::free(two.data);
  CHECK(scratch::kept_bytes() == 0);
}

TEST(moves_and_release_leave_each_block_one_owner) {
  scratch::release_kept();
  Scratch<float> a(MiB);  // 4 MiB
  float* block = a.data();
  Scratch<float> b(std::move(a));
  CHECK(a.data() == nullptr && a.size() == 0 && b.data() == block && b.size() == MiB);
  Scratch<float> c(MiB / 2);
  float* other = c.data();
  c = std::move(b);  // c's old block goes back to the pool now
  CHECK(b.data() == nullptr && c.data() == block);
  CHECK(scratch::kept_bytes() == 2 * MiB);
  const scratch::Block released = c.release();
  CHECK(released.data == block && c.data() == nullptr && c.size() == 0);
  scratch::give(released);
  CHECK(scratch::kept_bytes() == 6 * MiB);
  // Each block is in the pool once: two requests get two different blocks.
  const scratch::Block x = scratch::take(4 * MiB), y = scratch::take(2 * MiB);
  CHECK(x.data == block && y.data == other);
  CHECK(scratch::kept_bytes() == 0);
  std::free(x.data);
  std::free(y.data);
}

TEST(small_and_oversized_blocks_are_freed_not_kept) {
  scratch::release_kept();
  { Scratch<char> a(scratch::kMinBytes - 64); }
  { Scratch<char> b(scratch::kKeepBytes + MiB); }
  CHECK(scratch::kept_bytes() == 0);
  { Scratch<char> empty(0); }  // an empty array is a valid (freed) block
  CHECK(scratch::kept_bytes() == 0);
}

TEST(the_pool_keeps_the_newest_blocks_within_its_cap) {
  scratch::release_kept();
  // Blocks of distinct sizes, so none serves another's request.
  std::vector<scratch::Block> blocks;
  size_t total = 0;
  for (size_t i = 0; total <= 2 * scratch::kKeepBytes; ++i) {
    blocks.push_back(scratch::take(16 * MiB + i * 4096));
    total += blocks.back().bytes;
  }
  for (const auto& b : blocks) {
    scratch::give(b);
    CHECK(scratch::kept_bytes() <= scratch::kKeepBytes);
  }
  CHECK(scratch::kept_bytes() > scratch::kKeepBytes - 17 * MiB);
  // The newest block is still there; the oldest was evicted.
  const scratch::Block newest = scratch::take(blocks.back().bytes);
  CHECK(newest.data == blocks.back().data);
  const scratch::Block oldest = scratch::take(blocks.front().bytes);
  CHECK(oldest.data != blocks.front().data);
  scratch::give(newest);
  scratch::give(oldest);
}

TEST(zeroed_clears_a_recycled_block) {
  scratch::release_kept();
  float* first;
  {
    Scratch<float> a(2 * MiB / sizeof(float));
    first = a.data();
    std::memset(a.data(), 0xff, 2 * MiB);  // an earlier call's leftovers
  }
  Scratch<float> z = Scratch<float>::zeroed(2 * MiB / sizeof(float));
  CHECK(z.data() == first);  // the same block came back
  for (float x : z) CHECK(x == 0.0f);
}

TEST(concurrent_takes_and_gives_keep_the_accounting) {
  scratch::release_kept();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([t] {
      for (int i = 0; i < 200; ++i) {
        Scratch<uint32_t> s((1 + (i + t) % 5) * MiB / 4);
        s[0] = uint32_t(i), s[s.size() - 1] = uint32_t(t);
        CHECK(s[0] == uint32_t(i) && s[s.size() - 1] == uint32_t(t));  // no block is handed out twice
      }
    });
  for (auto& th : threads) th.join();
  size_t kept = scratch::kept_bytes();
  CHECK(kept <= scratch::kKeepBytes);
  // Draining by requests of each kept size takes the count to zero exactly.
  std::vector<scratch::Block> drained;
  for (size_t mib = 1; mib <= 256 && scratch::kept_bytes() > 0; ++mib)
    for (;;) {
      const size_t was = scratch::kept_bytes();
      scratch::Block b = scratch::take(mib * MiB);
      drained.push_back(b);
      if (scratch::kept_bytes() == was) break;  // a new block: none of this size left
      kept -= b.bytes;
    }
  CHECK(kept == 0 && scratch::kept_bytes() == 0);
  for (const auto& b : drained) std::free(b.data);
}

}  // namespace
