// Bad input must fail with a dsv4::Error that says what and where.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <fstream>

#include "core/error.h"
#include "tok_test_util.h"

namespace dsv4::test {
namespace {

namespace fs = std::filesystem;

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("dsv4_tok_test_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(reinterpret_cast<uintptr_t>(this)));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

TEST(TokenizerErrors, InvalidUtf8Input) {
  const Tokenizer& t = v4_tokenizer();
  const std::string msg = error_of([&] { t.encode("abc\xC3(def"); });
  EXPECT_NE(msg.find("not valid UTF-8"), std::string::npos) << msg;
  EXPECT_NE(msg.find("offset 3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("0xc3"), std::string::npos) << msg;
  for (const char* bad : {"\xFF", "a\xC0\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80", "tail\xE2\x82"}) {
    EXPECT_THROW(t.encode(bad), Error) << show(bad);
    EXPECT_THROW(t.encode(bad, false), Error) << show(bad);
  }
  EXPECT_TRUE(t.encode("").empty());
}

TEST(TokenizerErrors, TruncatedJson) {
  TempDir dir;
  std::ifstream in(tok_data("tokenizer.json"), std::ios::binary);
  std::string full((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(full.size(), 1000000u);
  const fs::path file = dir.path / "tokenizer.json";
  std::ofstream(file, std::ios::binary).write(full.data(), static_cast<std::streamsize>(full.size() / 2));
  for (const std::string& p : {file.string(), dir.path.string()}) {
    const std::string msg = error_of([&] { Tokenizer::load(p); });
    EXPECT_NE(msg.find(file.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("malformed JSON"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unexpected end of input"), std::string::npos) << msg;
  }
}

// Found by fuzz_tokenizer_json: nlohmann reports a number no type holds as out_of_range, not parse_error.
TEST(TokenizerErrors, NumberTooLargeIsMalformedJson) {
  const std::string msg = error_of([] { Tokenizer::from_json(R"({"version": 1E400})", "t.json"); });
  EXPECT_NE(msg.find("malformed JSON"), std::string::npos) << msg;
  EXPECT_NE(msg.find("number overflow"), std::string::npos) << msg;
}

TEST(TokenizerErrors, MissingFiles) {
  TempDir dir;
  std::string msg = error_of([&] { Tokenizer::load((dir.path / "nope.json").string()); });
  EXPECT_NE(msg.find("nope.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("does not exist"), std::string::npos) << msg;
  msg = error_of([&] { Tokenizer::load(dir.path.string()); });
  EXPECT_NE(msg.find("no tokenizer.json in directory"), std::string::npos) << msg;
}

TEST(TokenizerErrors, LoadsFromCheckpointDirectory) {
  const Tokenizer t = Tokenizer::load(std::string(DSV4_TEST_DATA) + "/tokenizer");
  EXPECT_EQ(t.vocab_size(), 129280u);
}

TEST(TokenizerErrors, DecodeOutOfRange) {
  const Tokenizer& t = v4_tokenizer();
  const std::vector<int32_t> ids = {1, 129280};
  const std::string msg = error_of([&] { t.decode(ids); });
  EXPECT_NE(msg.find("token id 129280 is out of range"), std::string::npos) << msg;
  EXPECT_THROW(t.token_text(-5), Error);
}

TEST(TokenizerErrors, StructuralProblems) {
  const auto msg_of = [](const std::string& json) { return error_of([&] { Tokenizer::from_json(json, "x.json"); }); };
  std::string m = msg_of("[1, 2]");
  EXPECT_NE(m.find("x.json"), std::string::npos) << m;
  m = msg_of(R"({"model": {"type": "Unigram", "vocab": []}})");
  EXPECT_NE(m.find("model type 'Unigram' is not supported"), std::string::npos) << m;
  m = msg_of(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}})");
  EXPECT_NE(m.find("model.merges[0] uses 'b'"), std::string::npos) << m;
  m = msg_of(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a"]}})");
  EXPECT_NE(m.find("model.merges[0] 'a' is not of the form"), std::string::npos) << m;
  m = msg_of(R"({"model": {"type": "BPE", "vocab": {"a": -3}, "merges": []}})");
  EXPECT_NE(m.find("out of range"), std::string::npos) << m;
  m = msg_of(R"({"model": {"type": "BPE", "vocab": {}, "merges": []}, "normalizer": {"type": "Lowercase"}})");
  EXPECT_NE(m.find("unsupported normalizer type 'Lowercase'"), std::string::npos) << m;
  m = msg_of(R"({"model": {"type": "BPE", "vocab": {}, "merges": []}, "pre_tokenizer": {"type": "Metaspace"}})");
  EXPECT_NE(m.find("unsupported pre-tokenizer type 'Metaspace'"), std::string::npos) << m;
  m = msg_of(R"({"model": {"type": "BPE", "vocab": {}, "merges": []},
                 "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"}})");
  EXPECT_NE(m.find("cannot compile regex '(unclosed'"), std::string::npos) << m;
  m = msg_of(R"({"model": {"type": "BPE", "vocab": {}, "merges": []}, "pre_tokenizer": null})");
  EXPECT_NE(m.find("no ByteLevel"), std::string::npos) << m;
}

}  // namespace
}  // namespace dsv4::test
