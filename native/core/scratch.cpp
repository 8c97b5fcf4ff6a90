#include "scratch.h"

#include <cstdint>
#include <cstdlib>
#include <list>
#include <mutex>
#include <new>

namespace cl::scratch {

namespace {

struct Pool {
  std::mutex mu;
  std::list<Block> kept;  // oldest first
  size_t bytes = 0;
};

Pool& pool() {
  static Pool* p = new Pool;  // never destroyed: blocks may be given back during exit
  return *p;
}

}  // namespace

Block take(size_t bytes) {
  if (bytes >= kMinBytes) {
    Pool& p = pool();
    std::lock_guard<std::mutex> lock(p.mu);
    auto best = p.kept.end();
    for (auto it = p.kept.begin(); it != p.kept.end(); ++it)
      if (it->bytes >= bytes && it->bytes / 2 <= bytes && (best == p.kept.end() || it->bytes < best->bytes)) best = it;
    if (best != p.kept.end()) {
      const Block b = *best;
      p.kept.erase(best);
      p.bytes -= b.bytes;
      return b;
    }
  }
  if (bytes > SIZE_MAX - 63) throw std::bad_alloc();
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* data = std::aligned_alloc(64, rounded ? rounded : 64);
  if (!data) throw std::bad_alloc();
  return {data, rounded};
}

void give(Block b) {
  if (b.bytes < kMinBytes || b.bytes > kKeepBytes) return std::free(b.data);
  Pool& p = pool();
  std::list<Block> evicted;
  {
    std::lock_guard<std::mutex> lock(p.mu);
    p.kept.push_back(b);
    p.bytes += b.bytes;
    while (p.bytes > kKeepBytes) {
      p.bytes -= p.kept.front().bytes;
      evicted.splice(evicted.end(), p.kept, p.kept.begin());
    }
  }
  for (const Block& e : evicted) std::free(e.data);
}

void release_kept() {
  Pool& p = pool();
  std::list<Block> all;
  {
    std::lock_guard<std::mutex> lock(p.mu);
    all.swap(p.kept);
    p.bytes = 0;
  }
  for (const Block& b : all) std::free(b.data);
}

size_t kept_bytes() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  return p.bytes;
}

}  // namespace cl::scratch
