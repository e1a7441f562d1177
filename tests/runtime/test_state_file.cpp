// State files (runtime/state_file.h): a saved state reads back bit for bit and continues exactly like
// the original; any damage or mismatch is refused with a reason, never trusted.
#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"
#include "core/hash.h"
#include "model/state_compare.h"
#include "runtime/ram_budget.h"
#include "runtime/state_file.h"
#include "runtime/test_util.h"

namespace dsv4 {
namespace {

std::vector<int32_t> some_ids(int n, int V, int seed) {
  std::vector<int32_t> v;
  for (int i = 0; i < n; ++i) v.push_back(int32_t((i * 7919 + seed * 104729 + 13) % V));
  return v;
}

// A state with every part in use: main model (past the compressors' first groups and the window),
// MTP block and DSpark rings when the model has them.
SequenceState busy_state(const Model& m, const std::vector<int32_t>& ids) {
  SequenceState st = m.new_sequence();
  ForwardOptions fo;
  fo.keep_streams = m.has_mtp();
  fo.keep_taps = m.has_dspark();
  const int64_t S = int64_t(ids.size());
  auto r = m.forward(st, ids.data(), S, fo);
  if (m.has_mtp()) m.mtp_forward(st, r.final_streams.data(), ids.data() + 1, S - 1);
  if (m.has_dspark()) m.dspark_commit(st, r.taps.data(), S);
  return st;
}

void expect_same_continuation(const Model& m, SequenceState a, SequenceState b, const std::vector<int32_t>& next) {
  auto ra = m.forward(a, next.data(), int64_t(next.size()), {true});
  auto rb = m.forward(b, next.data(), int64_t(next.size()), {true});
  ASSERT_EQ(ra.logits.size(), rb.logits.size());
  EXPECT_EQ(std::memcmp(ra.logits.data(), rb.logits.data(), ra.logits.size() * 4), 0);
  if (m.has_dspark()) {
    auto da = m.dspark_draft(a, next.back()), db = m.dspark_draft(b, next.back());
    EXPECT_EQ(da.ids, db.ids);
    EXPECT_TRUE(test::same_bits(da.logits, db.logits));
  }
}

void round_trip(const Model& m, int n) {
  const int V = int(m.config().vocab_size);
  const auto ids = some_ids(n, std::min(V, 256), 1);
  const SequenceState st = busy_state(m, ids);
  if (m.has_mtp()) {
    ASSERT_EQ(st.mtp_pos, n - 1);
  }
  if (m.has_dspark()) {
    ASSERT_EQ(st.dspark_pos, n);
  }
  const StateFileKey key = state_file_key(m);
  const auto bytes = encode_state(st, ids, key);
  std::string why;
  auto back = decode_state(bytes, m, key, &why, &ids);
  ASSERT_TRUE(back) << why;
  EXPECT_EQ(back->tokens, ids);
  test::expect_same_state(st, back->state);
  EXPECT_EQ(encode_state(back->state, ids, key), bytes);
  expect_same_continuation(m, st, back->state, some_ids(9, std::min(V, 256), 2));
}

TEST(StateFile, NanoRoundTripIsExact) { round_trip(nano().model, 300); }

TEST(StateFile, FixtureWithMtpRoundTripIsExact) {
  Model m(std::string(DSV4_TEST_DATA) + "/fixtures/tiny-flash");
  ASSERT_TRUE(m.has_mtp());
  round_trip(m, 70);
}

TEST(StateFile, FixtureWithDSparkRoundTripIsExact) {
  Model m(std::string(DSV4_TEST_DATA) + "/fixtures/tiny-0731");
  ASSERT_TRUE(m.has_dspark());
  round_trip(m, 70);
}

TEST(StateFile, RefusesAMarkedState) {
  const Model& m = nano().model;
  const auto ids = some_ids(20, 256, 3);
  SequenceState st = busy_state(m, ids);
  st.mark();
  EXPECT_THROW(encode_state(st, ids, state_file_key(m)), dsv4::Error);
}

// Rewrites the checksum after a deliberate edit, so the test reaches the checks behind it.
void reseal(std::vector<uint8_t>& b) {
  const uint64_t s = fnv1a(kFnvBasis, b.data(), b.size() - 8);
  std::memcpy(b.data() + b.size() - 8, &s, 8);
}

TEST(StateFile, RejectsDamageAndMismatches) {
  const Model& m = nano().model;
  const auto ids = some_ids(150, 256, 4);
  const StateFileKey key = state_file_key(m);
  const auto good = encode_state(busy_state(m, ids), ids, key);
  std::string why;
  ASSERT_TRUE(decode_state(good, m, key, &why, &ids)) << why;

  for (size_t n : {size_t(0), size_t(7), kStateHeaderBytes - 1, kStateHeaderBytes, good.size() / 2, good.size() - 1}) {
    why.clear();
    EXPECT_FALSE(decode_state(std::span(good).first(n), m, key, &why)) << n;
    EXPECT_FALSE(why.empty()) << n;
  }
  // One flipped bit anywhere: in the header, the tokens, the state and the checksum itself.
  for (size_t at : {size_t(3), size_t(20), size_t(60), good.size() / 3, good.size() - 20, good.size() - 1}) {
    auto bad = good;
    bad[at] ^= 0x10;
    why.clear();
    EXPECT_FALSE(decode_state(bad, m, key, &why, &ids)) << at;
    EXPECT_FALSE(why.empty()) << at;
  }
  auto extended = good;
  extended.push_back(0);
  EXPECT_FALSE(decode_state(extended, m, key, &why));

  StateFileKey other = key;
  other.model_id ^= 1;
  EXPECT_FALSE(decode_state(good, m, other, &why));
  EXPECT_NE(why.find("another model"), std::string::npos) << why;
  other = key;
  other.numerics = numerics_bits(NumericsOptions::first_revision());
  ASSERT_NE(other.numerics, key.numerics);
  EXPECT_FALSE(decode_state(good, m, other, &why));
  EXPECT_NE(why.find("numerics"), std::string::npos) << why;

  auto prefix = ids;
  prefix[5] ^= 1;
  EXPECT_FALSE(decode_state(good, m, key, &why, &prefix));
  EXPECT_NE(why.find("prefix"), std::string::npos) << why;

  // A well-formed file of another layout (the fixture) under this model's key, checksum and all:
  // the layout checks refuse it.
  Model fx(std::string(DSV4_TEST_DATA) + "/fixtures/tiny-0731");
  const auto fids = some_ids(40, 256, 5);
  auto foreign = encode_state(busy_state(fx, fids), fids, key);
  EXPECT_FALSE(decode_state(foreign, m, key, &why));
  EXPECT_FALSE(why.empty());
  // A forged token id past the vocabulary, resealed.
  auto forged = good;
  const int32_t huge = 1 << 30;
  std::memcpy(forged.data() + kStateHeaderBytes, &huge, 4);
  std::vector<int32_t> fake = ids;
  fake[0] = huge;
  const uint64_t th = tokens_hash(fake);
  std::memcpy(forged.data() + 32, &th, 8);
  reseal(forged);
  EXPECT_FALSE(decode_state(forged, m, key, &why));
  EXPECT_NE(why.find("vocabulary"), std::string::npos) << why;
}

TEST(StateFile, FilesWriteAtomicallyAndReadBack) {
  const std::string dir = ::testing::TempDir() + "state_file_test";
  ASSERT_TRUE(make_dirs(dir));
  const std::vector<uint8_t> b = {1, 2, 3, 4, 5};
  ASSERT_TRUE(write_file_atomic(dir + "/x.bin", b));
  auto r = read_file_bytes(dir + "/x.bin", 100);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, b);
  EXPECT_FALSE(read_file_bytes(dir + "/x.bin", 4));
  EXPECT_FALSE(read_file_bytes(dir + "/missing.bin", 100));
}

}  // namespace
}  // namespace dsv4
