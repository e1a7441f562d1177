// The 370 golden vectors from HF tokenizers / transformers.js must reproduce exactly.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>

#include "tok_test_util.h"

namespace dsv4::test {
namespace {

// Explains a mismatch: record id, first differing index and the tokens around it.
std::string diff_report(const Golden& g, const std::vector<int32_t>& want, const std::vector<int32_t>& got,
                        const Tokenizer& tok, bool use_tokens) {
  size_t i = 0;
  while (i < want.size() && i < got.size() && want[i] == got[i]) ++i;
  std::ostringstream os;
  os << g.id << " (" << g.category << "): first difference at index " << i << " (expected " << want.size()
     << " ids, got " << got.size() << ")\n  text: " << show(g.text.substr(0, 200)) << "\n";
  const size_t lo = i >= 3 ? i - 3 : 0;
  os << "  expected:";
  for (size_t k = lo; k < std::min(want.size(), i + 4); ++k) {
    os << " " << want[k];
    if (use_tokens && k < g.tokens.size()) os << "=" << show(g.tokens[k]);
  }
  os << "\n  got:     ";
  for (size_t k = lo; k < std::min(got.size(), i + 4); ++k) {
    os << " " << got[k];
    if (got[k] >= 0 && static_cast<size_t>(got[k]) < tok.vocab_size()) os << "=" << show(tok.token_text(got[k]));
  }
  return os.str();
}

TEST(TokenizerGolden, HasAllVectors) {
  EXPECT_EQ(golden().size(), 370u);
  const Tokenizer& t = v4_tokenizer();
  EXPECT_EQ(t.vocab_size(), 129280u);
  EXPECT_EQ(t.bos_id(), 0);
  EXPECT_EQ(t.eos_id(), 1);
}

TEST(TokenizerGolden, EncodeWithSpecial) {
  const Tokenizer& t = v4_tokenizer();
  int bad = 0;
  for (const Golden& g : golden()) {
    const auto got = t.encode(g.text, true);
    if (got != g.ids && ++bad <= 10) ADD_FAILURE() << diff_report(g, g.ids, got, t, true);
  }
  EXPECT_EQ(bad, 0);
}

TEST(TokenizerGolden, EncodeWithoutSpecial) {
  const Tokenizer& t = v4_tokenizer();
  int bad = 0;
  for (const Golden& g : golden()) {
    const auto got = t.encode(g.text, false);
    // `tokens` describes `ids`, so it only lines up when both id lists agree.
    if (got != g.ids_no_special && ++bad <= 10) {
      ADD_FAILURE() << diff_report(g, g.ids_no_special, got, t, g.ids == g.ids_no_special);
    }
  }
  EXPECT_EQ(bad, 0);
}

TEST(TokenizerGolden, DecodeRoundTrip) {
  const Tokenizer& t = v4_tokenizer();
  int bad = 0;
  for (const Golden& g : golden()) {
    const std::string a = t.decode(g.ids);
    const std::string b = t.decode(g.ids_no_special);
    if (a != g.text && ++bad <= 10) ADD_FAILURE() << g.id << ": decode(ids) = " << show(a) << " want " << show(g.text);
    if (b != g.text && ++bad <= 10) {
      ADD_FAILURE() << g.id << ": decode(ids_no_special) = " << show(b) << " want " << show(g.text);
    }
  }
  EXPECT_EQ(bad, 0);
}

TEST(TokenizerGolden, TokenStrings) {
  // The vocab spelling of each expected id matches the record's `tokens`.
  const Tokenizer& t = v4_tokenizer();
  for (const Golden& g : golden()) {
    for (size_t k = 0; k < g.tokens.size(); ++k) {
      ASSERT_EQ(t.token_id(g.tokens[k]), g.ids[k]) << g.id << " token " << k << " " << show(g.tokens[k]);
    }
  }
}

TEST(TokenizerGolden, KnownSpecialIds) {
  const Tokenizer& t = v4_tokenizer();
  EXPECT_EQ(t.token_id("<｜User｜>"), 128803);
  EXPECT_EQ(t.token_id("<｜Assistant｜>"), 128804);
  EXPECT_EQ(t.token_id("<think>"), 128821);
  EXPECT_EQ(t.token_id("</think>"), 128822);
  EXPECT_EQ(t.token_id("｜DSML｜"), 128825);
  EXPECT_EQ(t.token_id("<｜image｜>"), 129279);
  EXPECT_EQ(t.token_id("Ġworld"), 2058);
  EXPECT_EQ(t.token_id("no such token"), -1);
  EXPECT_TRUE(t.is_special(0));
  EXPECT_FALSE(t.is_special(128803));  // <｜User｜>: special=false in V4 (see PROVENANCE.md)
  EXPECT_TRUE(t.is_special(128805));   // <|EOT|>
  EXPECT_FALSE(t.is_special(128821));  // <think> is an added token but not special
  EXPECT_FALSE(t.is_special(2058));
  EXPECT_FALSE(t.is_special(-1));
  EXPECT_FALSE(t.is_special(1 << 30));
  EXPECT_EQ(t.token_text(2058), " world");
  EXPECT_EQ(t.token_text(128803), "<｜User｜>");
  const std::vector<int32_t> probe = {128803, 30594, 128804, 128821, 36101, 128822, 7624, 1};
  EXPECT_EQ(t.encode("<｜User｜>你好<｜Assistant｜><think>推理</think>答案<｜end▁of▁sentence｜>"), probe);
}

TEST(TokenizerGolden, SkipSpecialOnDecode) {
  const Tokenizer& t = v4_tokenizer();
  const std::string text = "<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜><think>x</think>yo<｜end▁of▁sentence｜>";
  const auto ids = t.encode(text);
  ASSERT_EQ(ids.front(), 0);
  ASSERT_EQ(ids.back(), 1);
  // Only special=true tokens go; non-special added tokens (<｜User｜>, <think>) stay.
  EXPECT_EQ(t.decode(ids, true), "<｜User｜>hi<｜Assistant｜><think>x</think>yo");
  EXPECT_EQ(t.decode(ids, false), text);
}

TEST(TokenizerGolden, WorstCaseRepeatedChar) {
  const Tokenizer& t = v4_tokenizer();
  const std::string text(100000, 'a');
  const auto ids = t.encode(text);
  EXPECT_EQ(t.decode(ids), text);
  EXPECT_LT(ids.size(), text.size() / 4);
}

}  // namespace
}  // namespace dsv4::test
