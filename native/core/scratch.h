// Large scratch arrays recycled across calls. Fresh memory is dear here:
// glibc hands blocks of a few MiB back to the kernel when they are freed, and
// each libuv worker thread allocates from its own arena, so a call's 16 MiB
// buffer faulted its 4,096 pages in again on most calls (~15 µs each on this
// VM, a fifth of an LE fit); blocks of a few hundred KiB fare alike (glibc
// maps them afresh: 1 MiB of per-block partial sums cost an LE fit 6 ms).
// Released blocks of at least kMinBytes wait in one process-wide pool, the
// newest kKeepBytes of them, for a later request their size fits (at least
// half used, so small requests do not pin big blocks).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>

namespace cl {

namespace scratch {
constexpr size_t kMinBytes = size_t(64) << 10;
constexpr size_t kKeepBytes = size_t(256) << 20;

struct Block {
  void* data = nullptr;
  size_t bytes = 0;  // capacity: at least what was asked
};
// 64-byte aligned and uninitialised; throws std::bad_alloc.
Block take(size_t bytes);
void give(Block b);
// What the pool holds now.
size_t kept_bytes();
// Frees every block the pool holds.
void release_kept();
}  // namespace scratch

// n uninitialised Ts from the pool, given back when destroyed.
template <class T>
class Scratch {
  static_assert(std::is_trivial_v<T>, "Scratch holds plain values: no constructor or destructor runs on them");

 public:
  Scratch() = default;
  explicit Scratch(size_t n) : block_(scratch::take(checked_bytes(n))), n_(n) {}
  // n zero values (a pool block is uninitialised: it may hold an earlier call's data).
  static Scratch zeroed(size_t n) {
    Scratch s(n);
    std::fill(s.begin(), s.end(), T{});
    return s;
  }
  Scratch(Scratch&& o) noexcept : block_(std::exchange(o.block_, {})), n_(std::exchange(o.n_, 0)) {}
  Scratch& operator=(Scratch&& o) noexcept {
    if (this != &o) {
      reset();
      block_ = std::exchange(o.block_, {});
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  ~Scratch() { reset(); }
  T* data() const { return static_cast<T*>(block_.data); }
  T& operator[](size_t i) const { return data()[i]; }
  size_t size() const { return n_; }
  T* begin() const { return data(); }
  T* end() const { return data() + n_; }
  // The block, no longer given back by this Scratch (empty after).
  scratch::Block release() {
    n_ = 0;
    return std::exchange(block_, {});
  }

 private:
  static size_t checked_bytes(size_t n) {
    if (n > SIZE_MAX / sizeof(T)) throw std::bad_alloc();
    return n * sizeof(T);
  }
  void reset() {
    if (block_.data) scratch::give(release());
  }

  scratch::Block block_;
  size_t n_ = 0;
};

}  // namespace cl
