// StreamDecoder: ids one at a time, never a partial UTF-8 sequence in any chunk.
#include <gtest/gtest.h>

#include <thread>

#include "tok_test_util.h"

namespace dsv4::test {
namespace {

std::string stream_all(const Tokenizer& t, const std::vector<int32_t>& ids, bool skip, const std::string& name) {
  StreamDecoder dec(t, skip);
  std::string all;
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string chunk = dec.push(ids[i]);
    EXPECT_TRUE(valid_utf8(chunk)) << name << ": chunk after id #" << i << " is not valid UTF-8: " << show(chunk);
    all += chunk;
  }
  const std::string tail = dec.flush();
  EXPECT_TRUE(valid_utf8(tail)) << name << ": flush is not valid UTF-8";
  return all + tail;
}

TEST(TokenizerStream, GoldenVectorsIdById) {
  const Tokenizer& t = v4_tokenizer();
  for (const Golden& g : golden()) {
    EXPECT_EQ(stream_all(t, g.ids, false, g.id), g.text) << g.id;
    EXPECT_EQ(stream_all(t, g.ids_no_special, false, g.id), g.text) << g.id;
  }
}

TEST(TokenizerStream, SkipSpecialMatchesDecode) {
  const Tokenizer& t = v4_tokenizer();
  for (const Golden& g : golden()) {
    if (g.category != "special_text") continue;
    EXPECT_EQ(stream_all(t, g.ids, true, g.id), t.decode(g.ids, true)) << g.id;
  }
}

TEST(TokenizerStream, HoldsBackSplitCharacters) {
  const Tokenizer& t = v4_tokenizer();
  // Single-byte tokens of "😀" (F0 9F 98 80): nothing comes out until the last byte.
  const std::string emoji = "\xF0\x9F\x98\x80";
  std::vector<int32_t> ids;
  for (unsigned char b : emoji) {
    std::string one(1, static_cast<char>(b));
    int32_t id = -1;
    for (int32_t i = 0; i < static_cast<int32_t>(t.vocab_size()) && id < 0; ++i) {
      if (!t.is_special(i) && t.token_text(i) == one) id = i;
    }
    ASSERT_GE(id, 0);
    ids.push_back(id);
  }
  StreamDecoder dec(t);
  EXPECT_EQ(dec.push(ids[0]), "");
  EXPECT_EQ(dec.push(ids[1]), "");
  EXPECT_EQ(dec.push(ids[2]), "");
  EXPECT_EQ(dec.push(ids[3]), emoji);
  EXPECT_EQ(dec.flush(), "");

  // An unfinished sequence at the end becomes one U+FFFD, like decode().
  StreamDecoder dec2(t);
  EXPECT_EQ(dec2.push(ids[0]), "");
  EXPECT_EQ(dec2.push(ids[1]), "");
  EXPECT_EQ(dec2.flush(), "\xEF\xBF\xBD");
  const std::vector<int32_t> two = {ids[0], ids[1]};
  EXPECT_EQ(t.decode(two), "\xEF\xBF\xBD");

  // A broken sequence followed by ASCII: replacement then the text, same as decode().
  const int32_t a = t.encode("A")[0];
  const std::vector<int32_t> broken = {ids[0], ids[1], a};
  StreamDecoder dec3(t);
  std::string out = dec3.push(ids[0]);
  out += dec3.push(ids[1]);
  out += dec3.push(a);
  out += dec3.flush();
  EXPECT_EQ(out, "\xEF\xBF\xBD" "A");
  EXPECT_EQ(t.decode(broken), out);
}

TEST(TokenizerStream, RejectsUnknownId) {
  StreamDecoder dec(v4_tokenizer());
  EXPECT_THROW(dec.push(-1), Error);
  EXPECT_THROW(dec.push(1 << 20), Error);
}

TEST(TokenizerStream, ConcurrentEncode) {
  // The BPE cache is shared; encode must be safe from several threads.
  const Tokenizer& t = v4_tokenizer();
  std::vector<std::thread> th;
  std::vector<int> bad(4, 0);
  for (int k = 0; k < 4; ++k) {
    th.emplace_back([&, k] {
      for (int rep = 0; rep < 3; ++rep) {
        for (const Golden& g : golden()) bad[k] += t.encode(g.text) != g.ids;
      }
    });
  }
  for (auto& x : th) x.join();
  for (int k = 0; k < 4; ++k) EXPECT_EQ(bad[k], 0) << "thread " << k;
}

}  // namespace
}  // namespace dsv4::test
