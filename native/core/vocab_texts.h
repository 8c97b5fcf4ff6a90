// Caption work at the byte level, so vocabularies of hundreds of millions of
// texts never become JS strings in bulk: Snappy decompression (libsnappy) of Parquet
// pages, the value spans of a Parquet PLAIN byte-array run, and a set of
// 128-bit caption hashes for de-duplication that never holds the texts.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace cl {

// Decompresses one raw Snappy block into out, which must receive exactly
// out_size bytes. Fails naming `what` when the block is damaged.
void snappy_uncompress(const uint8_t* in, size_t in_size, uint8_t* out, size_t out_size, const std::string& what);

// The spans of n PLAIN byte-array values (each a 4-byte little-endian length,
// then its bytes) from data: value i is data[start[i], start[i] + length[i]).
// Returns the bytes they take. Fails naming `what` when a value runs past size.
size_t plain_spans(const uint8_t* data, size_t size, int64_t n, int32_t* start, int32_t* length, const std::string& what);

// The texts seen so far, as XXH3 128-bit hashes (libxxhash) of their UTF-8
// bytes. Memory: 16 bytes a slot, the slots a power of two at most 3/4 full
// (sized up front for `expected` texts; it doubles past that), so under
// 43 bytes per distinct text, whatever the texts' length. Two distinct texts
// count as one only if their 128-bit hashes collide: for 10⁹ texts the
// chance is below 10⁻²⁰.
class TextHashSet {
 public:
  explicit TextHashSet(int64_t expected);
  // For each text i (bytes[start[i], start[i] + length[i])), in order:
  // first[i] = 1 if it was not in the set (it is added), else 0.
  void add(const uint8_t* bytes, const int32_t* start, const int32_t* length, int64_t n, uint8_t* first);
  int64_t size() const { return size_; }
  size_t memory_bytes() const { return slots_.size() * sizeof(Slot); }

 private:
  struct Slot {
    uint64_t a = 0, b = 0;  // (0, 0): empty
  };
  bool insert(Slot h);
  void grow();
  std::vector<Slot> slots_;
  int64_t size_ = 0;
};

}  // namespace cl
