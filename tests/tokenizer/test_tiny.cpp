// Hand-written tokenizer.json files: merge forms and order, added-token flags, Split behaviours,
// normalizers, and the UTF-8 / regex helpers underneath.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "core/error.h"
#include "tok_test_util.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace dsv4::test {
namespace {

using nlohmann::json;
using Ids = std::vector<int32_t>;

json byte_level_pre(bool prefix = false, bool regex = false) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", prefix}, {"trim_offsets", true}, {"use_regex", regex}};
}

// Ids 0..255 are the single bytes (id == byte value), then "ab"=256, "abc"=257, "cd"=258.
json tiny_json(const json& merges, const json& added = json::array(), const json& pre = byte_level_pre(),
               const json& normalizer = nullptr) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[tok::byte_level::map(std::string(1, static_cast<char>(b)))] = b;
  vocab["ab"] = 256;
  vocab["abc"] = 257;
  vocab["cd"] = 258;
  return {{"version", "1.0"},
          {"added_tokens", added},
          {"normalizer", normalizer},
          {"pre_tokenizer", pre},
          {"post_processor", nullptr},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"vocab", vocab}, {"merges", merges}}}};
}

Tokenizer tiny(const json& merges, const json& added = json::array(), const json& pre = byte_level_pre(),
               const json& normalizer = nullptr) {
  return Tokenizer::from_json(tiny_json(merges, added, pre, normalizer).dump(), "tiny.json");
}

json added_token(const std::string& content, int id, bool special, bool normalized, bool lstrip = false,
                 bool rstrip = false, bool single_word = false) {
  return {{"id", id},         {"content", content}, {"special", special},        {"normalized", normalized},
          {"lstrip", lstrip}, {"rstrip", rstrip},   {"single_word", single_word}};
}

TEST(TokenizerTiny, StringAndPairMergesAgree) {
  const Tokenizer s = tiny(json{"a b", "ab c", "c d"});
  // json::array: a braced list of 2-element lists would become an object.
  const Tokenizer p = tiny(json::array({json::array({"a", "b"}), json::array({"ab", "c"}), json::array({"c", "d"})}));
  for (const Tokenizer* t : {&s, &p}) {
    EXPECT_EQ(t->encode("abcd"), (Ids{257, 'd'}));
    EXPECT_EQ(t->encode("xabcdab"), (Ids{'x', 257, 'd', 256}));
    EXPECT_EQ(t->encode("cdx"), (Ids{258, 'x'}));
    EXPECT_EQ(t->decode(t->encode("xabcdab")), "xabcdab");
    EXPECT_EQ(t->vocab_size(), 259u);
    EXPECT_EQ(t->bos_id(), -1);
  }
}

TEST(TokenizerTiny, MergeRankDecides) {
  // "c d" ranks first now, so "abcd" becomes ab + cd instead of abc + d.
  EXPECT_EQ(tiny(json{"c d", "a b", "ab c"}).encode("abcd"), (Ids{256, 258}));
  // Equal ranks resolve leftmost first: "aaa" has no merge here, "ababab" merges pairwise.
  EXPECT_EQ(tiny(json{"a b"}).encode("ababab"), (Ids{256, 256, 256}));
  // A later duplicate of a merge replaces the earlier rank (HF builds a map in order).
  // Here "a b" ends up last, so "c d" wins first and "ab c" never applies.
  EXPECT_EQ(tiny(json{"a b", "ab c", "c d", "a b"}).encode("abcd"), (Ids{256, 258}));
}

TEST(TokenizerTiny, LongWordsMatchShortWords) {
  // Words over 64 bytes take the queue-based path; merges never cross "abc" boundaries here, so
  // the result is the short word's, repeated. "ab c" ranked before "a b" is the non-monotone
  // case that forces the binary-heap fallback.
  std::string text;
  for (int i = 0; i < 30; ++i) text += "abc";
  for (const json& merges : {json{"a b", "ab c"}, json{"ab c", "a b"}}) {
    const Tokenizer t = tiny(merges);
    ASSERT_EQ(t.encode("abc"), (Ids{257}));
    EXPECT_EQ(t.encode(text), Ids(30, 257)) << merges.dump();
  }
  const Tokenizer t = tiny(json{"c d", "a b", "ab c"});
  std::string text2;
  for (int i = 0; i < 40; ++i) text2 += "abcd";
  Ids want;
  for (int i = 0; i < 40; ++i) want.insert(want.end(), {256, 258});
  EXPECT_EQ(t.encode(text2), want);
}

// Random merge lists (ranks shuffled, so some create pairs ranked before their parts) against a
// naive reference: repeatedly merge the lowest-ranked adjacent pair, leftmost first. Words are
// joined by 'z' (no merges) into pieces over 64 bytes, so the queue-based path is covered too.
TEST(TokenizerTiny, RandomMergesMatchReference) {
  uint64_t x = 88172645463325252ull;
  const auto rnd = [&](uint64_t n) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x % n;
  };
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<std::string> toks = {"a", "b", "c", "d"};
    std::vector<std::pair<std::string, std::string>> pairs;
    for (int m = 0; m < 40; ++m) {
      const std::string& l = toks[rnd(toks.size())];
      const std::string& r = toks[rnd(toks.size())];
      if (l.size() + r.size() > 8) continue;
      bool dup = false;
      for (const auto& p : pairs) dup |= p.first == l && p.second == r;
      if (dup) continue;
      pairs.emplace_back(l, r);
      if (std::find(toks.begin(), toks.end(), l + r) == toks.end()) toks.push_back(l + r);
    }
    for (size_t i = pairs.size(); i > 1; --i) std::swap(pairs[i - 1], pairs[rnd(i)]);  // shuffle ranks
    json j = tiny_json(json::array());
    std::map<std::string, int> id;
    for (int b = 0; b < 256; ++b) id[tok::byte_level::map(std::string(1, static_cast<char>(b)))] = b;
    for (const auto& t : toks) {
      if (!id.count(t)) id[t] = 1000 + static_cast<int>(id.size());
    }
    json vocab = json::object();
    for (const auto& [t, i] : id) vocab[t] = i;
    json merges = json::array();
    for (const auto& p : pairs) merges.push_back(p.first + " " + p.second);
    j["model"]["vocab"] = vocab;
    j["model"]["merges"] = merges;
    const Tokenizer t = Tokenizer::from_json(j.dump(), "random.json");

    const auto reference = [&](const std::string& w) {
      std::vector<std::string> parts;
      for (char c : w) parts.emplace_back(1, c);
      for (;;) {
        size_t best = SIZE_MAX, best_rank = SIZE_MAX;
        for (size_t i = 0; i + 1 < parts.size(); ++i) {
          for (size_t r = 0; r < pairs.size() && r < best_rank; ++r) {
            if (pairs[r].first == parts[i] && pairs[r].second == parts[i + 1]) {
              best_rank = r;
              best = i;
            }
          }
        }
        if (best == SIZE_MAX) break;
        parts[best] += parts[best + 1];
        parts.erase(parts.begin() + static_cast<long>(best) + 1);
      }
      Ids ids;
      for (const auto& p : parts) ids.push_back(id.at(p));
      return ids;
    };
    std::string joined;
    Ids joined_want;
    for (int w = 0; w < 12; ++w) {
      std::string word;
      for (uint64_t k = 0, n = 3 + rnd(10); k < n; ++k) word.push_back(static_cast<char>('a' + rnd(4)));
      const Ids want = reference(word);
      ASSERT_EQ(t.encode(word), want) << "trial " << trial << " word " << word;
      joined += word + "z";
      joined_want.insert(joined_want.end(), want.begin(), want.end());
      joined_want.push_back('z');
    }
    ASSERT_GT(joined.size(), 64u);
    ASSERT_EQ(t.encode(joined), joined_want) << "trial " << trial << " text " << joined;
  }
}

TEST(TokenizerTiny, ByteLevelPrefixSpaceAndRegex) {
  json vocab_merges = json{"a b"};
  const Tokenizer t = tiny(vocab_merges, json::array(), byte_level_pre(true, true));
  // " ab" gets its prefix; the GPT-2 regex then splits "ab ab" into "ab" and " ab".
  EXPECT_EQ(t.encode("ab"), (Ids{' ', 256}));
  EXPECT_EQ(t.encode("ab ab"), (Ids{' ', 256, ' ', 256}));
  EXPECT_EQ(t.decode(t.encode("ab ab")), " ab ab");
}

TEST(TokenizerTiny, AddedTokensLongestFirstAndFlags) {
  const json added = json{added_token("<x>", 300, true, false),       added_token("<xy>", 301, false, false),
                          added_token("[L]", 302, false, true, true), added_token("[R]", 303, false, true, false, true),
                          added_token("cd", 304, false, true, false, false, true)};
  const Tokenizer t = tiny(json{"a b"}, added);
  EXPECT_EQ(t.vocab_size(), 305u);
  EXPECT_EQ(t.encode("a<x>b<xy>"), (Ids{'a', 300, 'b', 301}));
  EXPECT_EQ(t.encode("a<x>b", false), (Ids{'a', '<', 'x', '>', 'b'}));
  EXPECT_EQ(t.encode("ab  [L]ab"), (Ids{256, 302, 256}));       // lstrip eats the spaces before
  EXPECT_EQ(t.encode("ab[R] \t ab"), (Ids{256, 303, 256}));     // rstrip eats the spaces after
  EXPECT_EQ(t.encode("cd ab"), (Ids{304, ' ', 256}));           // single_word: whole word
  EXPECT_EQ(t.encode("xcd"), (Ids{'x', 'c', 'd'}));             // inside a word: not matched
  EXPECT_EQ(t.encode("cdé"), (Ids{'c', 'd', 0xC3, 0xA9}));      // é is a letter too
  EXPECT_EQ(t.encode("cd,"), (Ids{304, ','}));
  EXPECT_TRUE(t.is_special(300));
  EXPECT_FALSE(t.is_special(301));
  EXPECT_EQ(t.decode(Ids{'a', 300, 'b'}, true), "ab");
  EXPECT_EQ(t.token_id("<xy>"), 301);
  EXPECT_THROW(t.decode(Ids{280}), Error);  // a hole between the vocab and the added ids
}

TEST(TokenizerTiny, Normalizers) {
  const json replace = {{"type", "Replace"}, {"pattern", {{"String", "q"}}}, {"content", "a"}};
  EXPECT_EQ(tiny(json{"a b"}, json::array(), byte_level_pre(), replace).encode("qb"), (Ids{256}));
  const json seq = {{"type", "Sequence"},
                    {"normalizers", json{{{"type", "Prepend"}, {"prepend", "x"}}, replace}}};
  EXPECT_EQ(tiny(json{"a b"}, json::array(), byte_level_pre(), seq).encode("qb"), (Ids{'x', 256}));
  const json nfc = {{"type", "NFC"}};
#ifdef DSV4_HAVE_UTF8PROC
  EXPECT_EQ(tiny(json::array(), json::array(), byte_level_pre(), nfc).encode("e\xCC\x81"), (Ids{0xC3, 0xA9}));
#else
  try {
    tiny(json::array(), json::array(), byte_level_pre(), nfc);
    ADD_FAILURE() << "NFC loaded without utf8proc";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("normalizer NFC"), std::string::npos) << e.what();
  }
#endif
}

// Collects the pieces a pre-tokenizer produces.
struct Collect final : tok::PieceSink {
  std::vector<std::string> pieces;
  void piece(std::string_view b) override { pieces.emplace_back(b); }
};

std::vector<std::string> pieces(const std::string& behavior, bool invert, const std::string& text,
                                const std::string& pattern = "-") {
  const json pre = {{"type", "Sequence"},
                    {"pretokenizers", json{{{"type", "Split"},
                                            {"pattern", {{"String", pattern}}},
                                            {"behavior", behavior},
                                            {"invert", invert}},
                                           byte_level_pre()}}};
  const auto p = tok::PreTokenizer::from_json(pre, "test");
  tok::MatchData md;
  Collect c;
  p.run(text, md, c);
  return c.pieces;
}

using Pieces = std::vector<std::string>;

TEST(TokenizerTiny, SplitBehaviours) {
  // The examples from the HF tokenizers documentation.
  const std::string s = "the-final--countdown";
  EXPECT_EQ(pieces("Removed", false, s), (Pieces{"the", "final", "countdown"}));
  EXPECT_EQ(pieces("Isolated", false, s), (Pieces{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(pieces("MergedWithPrevious", false, s), (Pieces{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(pieces("MergedWithNext", false, s), (Pieces{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(pieces("Contiguous", false, s), (Pieces{"the", "-", "final", "--", "countdown"}));
  EXPECT_EQ(pieces("Removed", true, s), (Pieces{"-", "-", "-"}));
  EXPECT_EQ(pieces("MergedWithPrevious", true, s), (Pieces{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(pieces("Isolated", false, "a.b", "."), (Pieces{"a", ".", "b"}));  // String patterns are literal
  EXPECT_EQ(pieces("Isolated", false, "a\\Eb", "\\E"), (Pieces{"a", "\\E", "b"}));
}

TEST(TokenizerTiny, RegexIsOnigurumaCompatible) {
  tok::MatchData md;
  const auto re = tok::Regex::compile("\\s+", "test");
  size_t b, e;
  EXPECT_TRUE(re.find("x\xC2\x85y", 0, md, &b, &e));         // U+0085 is White_Space
  EXPECT_FALSE(re.find("x\xE1\xA0\x8Ey", 0, md, &b, &e));    // U+180E is not (PCRE2 says it is)
  const auto neg = tok::Regex::compile("[^\\s]+|\\S", "test");
  EXPECT_TRUE(neg.find("\xE1\xA0\x8E", 0, md, &b, &e));
  EXPECT_EQ(e - b, 3u);
  // Empty matches advance one character, as rust-onig's find_iter does.
  std::vector<std::pair<size_t, size_t>> m;
  tok::Regex::compile("x*", "test").for_each_match("axé", md, [&](size_t s, size_t t) { m.emplace_back(s, t); });
  const std::vector<std::pair<size_t, size_t>> want = {{0, 0}, {1, 2}, {4, 4}};
  EXPECT_EQ(m, want);
}

TEST(TokenizerUtf8, LossyDecodingRules) {
  const auto lossy = [](const std::string& s) {
    std::string out;
    tok::utf8::append_lossy(out, s);
    return out;
  };
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(lossy("ok"), "ok");
  EXPECT_EQ(lossy("a\xF0\x9F\x98" "b"), "a" + fffd + "b");  // truncated sequence: one U+FFFD
  EXPECT_EQ(lossy("\xE0\x80"), fffd + fffd);                // overlong lead, then a stray byte
  EXPECT_EQ(lossy("\xED\xA0\x80"), fffd + fffd + fffd);     // surrogate
  EXPECT_EQ(lossy("\xFF"), fffd);
  EXPECT_EQ(tok::utf8::first_invalid("0123456789abcdef\x80"), 16u);
  EXPECT_EQ(tok::utf8::first_invalid("é中😀"), std::string("é中😀").size());
}

}  // namespace
}  // namespace dsv4::test
