// Bounded selection of the k best (score, id) pairs. "Better" means a higher
// score, and for equal scores a lower id, so results are deterministic.
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "error.h"

namespace cl {

// The one error of every scan for a vocabulary row whose score is not finite.
[[noreturn]] inline void fail_non_finite_score(int64_t row) {
  fail(ErrorCode::NaN, "vocabulary: row " + std::to_string(row) + " gives a non-finite score (its vector holds NaN/Inf or overflows)");
}

struct Scored {
  float score;
  int64_t id;
};

inline bool better(const Scored& a, const Scored& b) {
  return a.score > b.score || (a.score == b.score && a.id < b.id);
}

// A min-heap of capacity k over a caller-owned span (k entries), so many
// heaps can live in one flat array.
class HeapView {
 public:
  HeapView(Scored* data, int32_t* size, int k) : d_(data), n_(size), k_(k) {}

  // Lowest score a candidate must beat once the heap is full.
  float threshold() const {
    return *n_ < k_ ? -std::numeric_limits<float>::infinity() : d_[0].score;
  }
  void push(Scored s) {
    auto worse_first = [](const Scored& a, const Scored& b) { return better(a, b); };
    if (*n_ < k_) {
      d_[(*n_)++] = s;
      std::push_heap(d_, d_ + *n_, worse_first);
    } else if (better(s, d_[0])) {
      std::pop_heap(d_, d_ + k_, worse_first);
      d_[k_ - 1] = s;
      std::push_heap(d_, d_ + k_, worse_first);
    }
  }
  int size() const { return *n_; }
  const Scored* begin() const { return d_; }
  const Scored* end() const { return d_ + *n_; }
  void clear() { *n_ = 0; }

  // Writes the entries best first; unfilled slots get -inf / -1.
  void write_sorted(float* scores, int64_t* ids) const {
    std::vector<Scored> tmp(d_, d_ + *n_);
    std::sort(tmp.begin(), tmp.end(), better);
    for (int i = 0; i < k_; ++i) {
      bool have = i < static_cast<int>(tmp.size());
      scores[i] = have ? tmp[i].score : -std::numeric_limits<float>::infinity();
      ids[i] = have ? tmp[i].id : -1;
    }
  }

 private:
  Scored* d_;
  int32_t* n_;
  int k_;
};

// nq heaps of capacity k in one allocation.
class HeapSet {
 public:
  HeapSet() = default;
  HeapSet(int64_t nq, int k) : k_(k), data_(static_cast<size_t>(nq) * k), sizes_(nq, 0) {}
  HeapView at(int64_t q) { return HeapView(&data_[static_cast<size_t>(q) * k_], &sizes_[q], k_); }
  int64_t count() const { return static_cast<int64_t>(sizes_.size()); }
  int k() const { return k_; }
  void clear() { std::fill(sizes_.begin(), sizes_.end(), 0); }

 private:
  int k_ = 0;
  std::vector<Scored> data_;
  std::vector<int32_t> sizes_;
};

}  // namespace cl
