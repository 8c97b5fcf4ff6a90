#include "vocab_texts.h"

#include <cstring>

#include "error.h"

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

uint64_t le64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

uint64_t fmix(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  return k ^ (k >> 33);
}

// MurmurHash3 x64 128 (Austin Appleby, public domain), seed 0.
void murmur3_128(const uint8_t* p, size_t len, uint64_t& h1, uint64_t& h2) {
  constexpr uint64_t c1 = 0x87c37b91114253d5ULL, c2 = 0x4cf5ad432745937fULL;
  auto mix1 = [&](uint64_t k) { h1 ^= rotl(k * c1, 31) * c2; };
  auto mix2 = [&](uint64_t k) { h2 ^= rotl(k * c2, 33) * c1; };
  h1 = h2 = 0;
  const size_t blocks = len / 16;
  for (size_t i = 0; i < blocks; ++i) {
    mix1(le64(p + 16 * i));
    h1 = (rotl(h1, 27) + h2) * 5 + 0x52dce729;
    mix2(le64(p + 16 * i + 8));
    h2 = (rotl(h2, 31) + h1) * 5 + 0x38495ab5;
  }
  const uint8_t* tail = p + 16 * blocks;
  const size_t rest = len & 15;
  uint64_t k1 = 0, k2 = 0;
  for (size_t i = 8; i < rest; ++i) k2 ^= uint64_t(tail[i]) << (8 * (i - 8));
  for (size_t i = 0; i < rest && i < 8; ++i) k1 ^= uint64_t(tail[i]) << (8 * i);
  if (rest > 8) mix2(k2);
  if (rest > 0) mix1(k1);
  h1 ^= len;
  h2 ^= len;
  h1 += h2;
  h2 += h1;
  h1 = fmix(h1);
  h2 = fmix(h2);
  h1 += h2;
  h2 += h1;
}

}  // namespace

void snappy_uncompress(const uint8_t* in, size_t n, uint8_t* out, size_t out_size, const std::string& what) {
  size_t p = 0, o = 0;
  uint64_t len = 0;
  for (int shift = 0;; shift += 7) {
    if (p >= n || shift > 28) damaged(what, "bad length header");
    const uint8_t c = in[p++];
    len |= uint64_t(c & 0x7f) << shift;
    if (!(c & 0x80)) break;
  }
  if (len != out_size)
    damaged(what, "it holds " + std::to_string(len) + " bytes, the page header says " + std::to_string(out_size));
  while (p < n) {
    const uint8_t tag = in[p++];
    size_t length = 0, offset = 0;
    if ((tag & 3) == 0) {  // a literal, its length in the tag or in 1-4 bytes after it
      length = tag >> 2;
      if (length >= 60) {
        const size_t extra = length - 59;
        if (p + extra > n) damaged(what, "truncated literal length");
        length = 0;
        for (size_t i = 0; i < extra; ++i) length |= size_t(in[p + i]) << (8 * i);
        p += extra;
      }
      length += 1;
      if (length > n - p || length > out_size - o) damaged(what, "literal past the end");
      // Short literals (most of them) as one 16-byte move where both sides have the room.
      if (length <= 16 && n - p >= 16 && out_size - o >= 16) std::memcpy(out + o, in + p, 16);
      else std::memcpy(out + o, in + p, length);
      p += length;
      o += length;
      continue;
    }
    if ((tag & 3) == 1) {
      if (p >= n) damaged(what, "truncated copy");
      length = 4 + ((tag >> 2) & 7);
      offset = (size_t(tag >> 5) << 8) | in[p++];
    } else {
      const size_t bytes = (tag & 3) == 2 ? 2 : 4;
      if (p + bytes > n) damaged(what, "truncated copy");
      length = (tag >> 2) + 1;
      offset = bytes == 2 ? size_t(in[p]) | size_t(in[p + 1]) << 8 : le32(in + p);
      p += bytes;
    }
    if (offset == 0 || offset > o || length > out_size - o) damaged(what, "copy out of range");
    uint8_t* d = out + o;
    if (offset >= 8 && out_size - o >= length + 8) {
      // 8 bytes at a time: each chunk's source is already written; the last may run past `length` into free room.
      for (size_t i = 0; i < length; i += 8) std::memcpy(d + i, d + i - offset, 8);
    } else {
      for (size_t i = 0; i < length; ++i) d[i] = d[i - offset];  // overlapping: repeats the last `offset` bytes
    }
    o += length;
  }
  if (o != out_size) damaged(what, "it ends after " + std::to_string(o) + " of " + std::to_string(out_size) + " bytes");
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
    murmur3_128(bytes + start[i], static_cast<size_t>(length[i]), h[i].a, h[i].b);
    if (h[i].a == 0 && h[i].b == 0) h[i].b = 1;  // (0, 0) marks an empty slot
  }
  for (int64_t i = 0; i < n; ++i) {
    if (static_cast<double>(size_ + 1) > 0.75 * static_cast<double>(slots_.size())) grow();
    if (i + kAhead < n) __builtin_prefetch(&slots_[h[i + kAhead].a & (slots_.size() - 1)]);
    first[i] = insert(h[i]) ? 1 : 0;
  }
}

}  // namespace cl
