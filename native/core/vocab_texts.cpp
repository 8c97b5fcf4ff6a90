#include "vocab_texts.h"

#include <snappy.h>

#include <cstring>

#include "error.h"

// Header-only: the hash inlines into the de-duplication loop.
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace cl {
namespace {

[[noreturn]] void damaged(const std::string& what, const std::string& why) {
  fail(ErrorCode::File, what + ": damaged Snappy data (" + why + ")");
}

uint32_t le32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace

void snappy_uncompress(const uint8_t* in, size_t n, uint8_t* out, size_t out_size, const std::string& what) {
  const char* src = reinterpret_cast<const char*>(in);
  size_t len = 0;
  if (!snappy::GetUncompressedLength(src, n, &len)) damaged(what, "bad length header");
  if (len != out_size)
    damaged(what, "it holds " + std::to_string(len) + " bytes, the page header says " + std::to_string(out_size));
  if (!snappy::RawUncompress(src, n, reinterpret_cast<char*>(out))) damaged(what, "corrupt block");
}

size_t plain_spans(const uint8_t* data, size_t size, int64_t n, int32_t* start, int32_t* length, const std::string& what) {
  require(size < (size_t(1) << 31), ErrorCode::File, what + ": a page over 2 GiB");
  size_t p = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (size - p < 4) fail(ErrorCode::File, what + ": value " + std::to_string(i) + " of " + std::to_string(n) + " is cut off");
    const uint32_t len = le32(data + p);
    p += 4;
    if (len > size - p)
      fail(ErrorCode::File, what + ": value " + std::to_string(i) + " of " + std::to_string(n) + " claims " + std::to_string(len) + " bytes, " +
                                std::to_string(size - p) + " remain");
    start[i] = static_cast<int32_t>(p);
    length[i] = static_cast<int32_t>(len);
    p += len;
  }
  return p;
}

TextHashSet::TextHashSet(int64_t expected) {
  size_t cap = 1 << 10;
  while (static_cast<double>(cap) * 0.75 < static_cast<double>(expected)) cap *= 2;
  slots_.resize(cap);
}

bool TextHashSet::insert(Slot h) {
  const size_t mask = slots_.size() - 1;
  for (size_t i = h.a & mask;; i = (i + 1) & mask) {
    Slot& s = slots_[i];
    if (s.a == h.a && s.b == h.b) return false;
    if (s.a == 0 && s.b == 0) {
      s = h;
      ++size_;
      return true;
    }
  }
}

void TextHashSet::grow() {
  std::vector<Slot> old(slots_.size() * 2);
  old.swap(slots_);
  size_ = 0;
  for (const Slot& s : old)
    if (s.a != 0 || s.b != 0) insert(s);
}

void TextHashSet::add(const uint8_t* bytes, const int32_t* start, const int32_t* length, int64_t n, uint8_t* first) {
  // Hashes first, then inserts with the slots a few texts ahead already on
  // their way from memory: a large table misses cache on every probe.
  constexpr int64_t kAhead = 16;
  std::vector<Slot> h(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const XXH128_hash_t x = XXH3_128bits(bytes + start[i], static_cast<size_t>(length[i]));
    h[i] = {x.low64, x.high64};
    if (h[i].a == 0 && h[i].b == 0) h[i].b = 1;  // (0, 0) marks an empty slot
  }
  for (int64_t i = 0; i < n; ++i) {
    if (static_cast<double>(size_ + 1) > 0.75 * static_cast<double>(slots_.size())) grow();
    if (i + kAhead < n) __builtin_prefetch(&slots_[h[i + kAhead].a & (slots_.size() - 1)]);
    first[i] = insert(h[i]) ? 1 : 0;
  }
}

}  // namespace cl
