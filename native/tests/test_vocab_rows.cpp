#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "../core/fp16.h"
#include "../core/vocab_rows.h"
#include "../core/vocab_texts.h"
#include "check.h"

namespace {

// Float64 reference from the definition: normalise, subtract the mean, normalise again.
std::vector<double> reference(const std::vector<float>& x, int64_t n, int64_t d, const cl::RowTransform& t) {
  std::vector<double> y(x.begin(), x.end());
  auto unit = [&](double* r) {
    double s = 0;
    for (int64_t j = 0; j < d; ++j) s += r[j] * r[j];
    for (int64_t j = 0; j < d; ++j) r[j] /= std::sqrt(s);
  };
  for (int64_t i = 0; i < n; ++i) {
    double* r = y.data() + i * d;
    if (t.normalize) unit(r);
    if (t.center) {
      for (int64_t j = 0; j < d; ++j) r[j] -= t.mean[j];
      if (t.normalize) unit(r);
    }
  }
  return y;
}

std::vector<float> data(int64_t n, int64_t d) {
  std::vector<float> x(n * d);
  for (int64_t i = 0; i < n * d; ++i) x[i] = float(std::sin(0.37 * double(i) + 1.0) * 3.0);
  return x;
}

}  // namespace

TEST(transform_rows_matches_the_definition_for_every_combination_fp32_and_fp16) {
  const int64_t n = 1000, d = 19;
  std::vector<float> x = data(n, d), mean(d);
  for (int64_t j = 0; j < d; ++j) mean[j] = 0.01f * float(j) - 0.05f;
  std::vector<uint16_t> h(x.size());
  cl::floats_to_halves(x.data(), h.data(), int64_t(x.size()));
  std::vector<float> xh(x.size());
  cl::halves_to_floats(h.data(), xh.data(), int64_t(x.size()));
  for (int combo = 0; combo < 4; ++combo) {
    cl::RowTransform t;
    t.normalize = combo & 1;
    t.center = combo & 2;
    t.mean = mean.data();
    for (bool half : {false, true}) {
      cl::MatrixView m{half ? static_cast<const void*>(h.data()) : x.data(), half ? cl::DType::F16 : cl::DType::F32, n, d};
      std::vector<float> out(n * d);
      cl::Progress p;
      cl::transform_rows(m, out.data(), t, 0, p);
      std::vector<double> ref = reference(half ? xh : x, n, d, t);
      for (int64_t i = 0; i < n * d; ++i) CHECK_NEAR(out[i], ref[i], 1e-5 * std::max(1.0, std::fabs(ref[i])));
    }
  }
}

TEST(transform_rows_names_the_row_with_nan_or_zero_norm) {
  const int64_t n = 600, d = 8;
  std::vector<float> x = data(n, d), out(n * d), mean(d, 0.f);
  x[517 * d + 3] = std::numeric_limits<float>::quiet_NaN();
  cl::MatrixView m{x.data(), cl::DType::F32, n, d};
  cl::Progress p;
  CHECK_THROWS_WITH(cl::transform_rows(m, out.data(), {}, 1000, p), "vocabulary: row 1517, column 3 is NaN; expected finite values");
  x[517 * d + 3] = -std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH(cl::transform_rows(m, out.data(), {}, 1000, p), "vocabulary: row 1517, column 3 is -Infinity");
  try {
    cl::transform_rows(m, out.data(), {}, 1000, p);
  } catch (const cl::Error& e) {
    CHECK(e.code == cl::ErrorCode::NaN);
  }
  x[517 * d + 3] = 0;
  for (int64_t j = 0; j < d; ++j) x[42 * d + j] = 0;
  cl::RowTransform t;
  t.normalize = true;
  cl::Progress p2;
  CHECK_THROWS_WITH(cl::transform_rows(m, out.data(), t, 0, p2), "vocabulary: row 42 has norm 0, cannot L2-normalise");
  // A row equal to the mean has no direction after centring.
  for (int64_t j = 0; j < d; ++j) x[42 * d + j] = x[7 * d + j], mean[j] = x[7 * d + j];
  t.normalize = false;
  t.center = true;
  t.mean = mean.data();
  cl::Progress p3;
  cl::transform_rows(m, out.data(), t, 0, p3);  // centring alone allows a zero row
  for (int64_t j = 0; j < d; ++j) CHECK(out[7 * d + j] == 0.f);
}

// A Snappy block built by hand (the format's spec, independent of the
// library that decodes it): a literal, a copy that overlaps itself
// (repeating a pattern), a one-byte run, and a literal whose length takes
// an extra byte; then damage, named with the file: a copy reaching before
// the start, a length header that disagrees with the page, a literal cut off.
TEST(snappy_decodes_literals_and_overlapping_copies_and_names_damage) {
  std::vector<uint8_t> in = {30, 0x0c, 'a', 'b', 'c', 'd', 0x11, 4, 0x1e, 1, 0};  // 30 bytes: "abcd" + 8 copied + 8 × 'd'
  std::vector<uint8_t> tail(10);
  for (int i = 0; i < 10; ++i) tail[i] = uint8_t('0' + i);
  in.push_back(0xf0);  // literal, length in one more byte (9 + 1)
  in.push_back(9);
  in.insert(in.end(), tail.begin(), tail.end());
  std::vector<uint8_t> out(30);
  cl::snappy_uncompress(in.data(), in.size(), out.data(), out.size(), "p.parquet");
  CHECK(std::string(out.begin(), out.end()) == "abcdabcdabcddddddddd0123456789");
  std::vector<uint8_t> bad = {8, 0x0c, 'a', 'b', 'c', 'd', 0x01, 9};  // copy from 9 bytes back, 4 written
  std::vector<uint8_t> o8(8);
  CHECK_THROWS_WITH(cl::snappy_uncompress(bad.data(), bad.size(), o8.data(), 8, "p.parquet"), "p.parquet: damaged Snappy data (corrupt block)");
  CHECK_THROWS_WITH(cl::snappy_uncompress(in.data(), in.size(), out.data(), 29, "p.parquet"), "the page header says 29");
  std::vector<uint8_t> cut(in.begin(), in.end() - 3);
  CHECK_THROWS_WITH(cl::snappy_uncompress(cut.data(), cut.size(), out.data(), 30, "p.parquet"), "p.parquet: damaged Snappy data (corrupt block)");
}

TEST(plain_spans_walk_length_prefixed_values_and_reject_overruns) {
  std::vector<uint8_t> page = {3, 0, 0, 0, 'c', 'a', 't', 0, 0, 0, 0, 2, 0, 0, 0, 'o', 'k'};
  int32_t start[3], length[3];
  CHECK(cl::plain_spans(page.data(), page.size(), 3, start, length, "m.parquet") == page.size());
  CHECK(start[0] == 4 && length[0] == 3 && length[1] == 0 && start[2] == 15 && length[2] == 2);
  page[11] = 9;
  CHECK_THROWS_WITH(cl::plain_spans(page.data(), page.size(), 3, start, length, "m.parquet"), "m.parquet: value 2 of 3 claims 9 bytes, 2 remain");
}

// First occurrences against std::set over the strings, with far more texts
// than the table was sized for (it doubles) and texts of every length class
// the hash reads in blocks and tails.
TEST(text_hash_set_marks_first_occurrences_like_a_set_of_strings) {
  std::vector<std::string> texts;
  for (int i = 0; i < 20000; ++i) texts.push_back(std::string(size_t(i % 37), 'x') + std::to_string((i * 7919) % 6000));
  texts.push_back("");
  texts.push_back("");
  std::string bytes;
  std::vector<int32_t> start, length;
  for (const std::string& t : texts) start.push_back(int32_t(bytes.size())), length.push_back(int32_t(t.size())), bytes += t;
  cl::TextHashSet set(100);
  std::vector<uint8_t> first(texts.size());
  // Two calls: the set carries over between them.
  const int64_t half = int64_t(texts.size() / 2);
  const auto* b = reinterpret_cast<const uint8_t*>(bytes.data());
  set.add(b, start.data(), length.data(), half, first.data());
  set.add(b, start.data() + half, length.data() + half, int64_t(texts.size()) - half, first.data() + half);
  std::set<std::string> seen;
  for (size_t i = 0; i < texts.size(); ++i) CHECK(first[i] == (seen.insert(texts[i]).second ? 1 : 0));
  CHECK(set.size() == int64_t(seen.size()));
  CHECK(set.memory_bytes() >= seen.size() * 16 * 4 / 3);
}
