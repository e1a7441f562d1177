#pragma once
// Bit-exact comparison of two sequence states: every part a rollback or a chunking could get wrong.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "model/transformer.h"

namespace dsv4::test {

inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
}

inline void expect_same_compressor(const CompressorState& x, const CompressorState& y, const std::string& what) {
  EXPECT_TRUE(same_bits(x.kv, y.kv)) << what << ": pending kv";
  EXPECT_TRUE(same_bits(x.score, y.score)) << what << ": pending score";
  EXPECT_TRUE(same_bits(x.prev_kv, y.prev_kv)) << what << ": previous group kv";
  EXPECT_TRUE(same_bits(x.prev_score, y.prev_score)) << what << ": previous group score";
  EXPECT_EQ(x.has_prev, y.has_prev) << what << ": has_prev";
}

inline void expect_same_attention(const AttentionState& x, const AttentionState& y, const std::string& what) {
  EXPECT_EQ(x.ring.size(), y.ring.size()) << what << ": ring rows";
  EXPECT_TRUE(x.ring.encoded() == y.ring.encoded()) << what << ": ring bytes";
  EXPECT_EQ(x.compressed.size(), y.compressed.size()) << what << ": compressed rows";
  EXPECT_TRUE(x.compressed.encoded() == y.compressed.encoded()) << what << ": compressed bytes";
  expect_same_compressor(x.comp, y.comp, what + " compressor");
  EXPECT_EQ(x.indexer.keys.size(), y.indexer.keys.size()) << what << ": index keys";
  EXPECT_TRUE(same_bits(x.indexer.keys, y.indexer.keys)) << what << ": index key bits";
  expect_same_compressor(x.indexer.comp, y.indexer.comp, what + " indexer compressor");
}

inline void expect_same_state(const SequenceState& a, const SequenceState& b) {
  ASSERT_EQ(a.pos, b.pos);
  ASSERT_EQ(a.mtp_pos, b.mtp_pos);
  ASSERT_EQ(a.layers.size(), b.layers.size());
  ASSERT_EQ(a.mtp.size(), b.mtp.size());
  ASSERT_EQ(a.dspark_pos, b.dspark_pos);
  ASSERT_EQ(a.dspark.size(), b.dspark.size());
  for (size_t l = 0; l < a.layers.size(); ++l)
    expect_same_attention(a.layers[l].attn, b.layers[l].attn, "layer " + std::to_string(l));
  for (size_t l = 0; l < a.mtp.size(); ++l) expect_same_attention(a.mtp[l].attn, b.mtp[l].attn, "MTP block");
  for (size_t l = 0; l < a.dspark.size(); ++l)
    expect_same_attention(a.dspark[l].attn, b.dspark[l].attn, "DSpark stage " + std::to_string(l));
}

}  // namespace dsv4::test
