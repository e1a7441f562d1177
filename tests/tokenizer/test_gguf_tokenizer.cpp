// The tokenizer of a llama.cpp GGUF (tokenizer/tokenizer_gguf.cpp): the V4 tokenizer.json written as
// tokenizer.ggml.* metadata the way the converter does, read back, must encode the golden vectors.
#include <gtest/gtest.h>

#include <filesystem>

#include "io/gguf_writer.h"
#include "tok_test_util.h"

using namespace dsv4;
using namespace dsv4::test;
namespace fs = std::filesystem;

namespace {

struct TmpDir {
  fs::path p = fs::temp_directory_path() / ("dsv4_tok_gguf_" + std::to_string(::getpid()) + "_" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
  TmpDir() { fs::remove_all(p), fs::create_directories(p); }
  ~TmpDir() {
    std::error_code ec;
    fs::remove_all(p, ec);
  }
};

std::string write_tokenizer_gguf(const fs::path& dir) {
  GgufWriter w;
  w.add_string("general.architecture", "deepseek4");
  add_tokenizer_metadata(w, tok_data("tokenizer.json"), 129280);
  const std::string path = (dir / "model.gguf").string();
  w.write(path);
  return path;
}

}  // namespace

TEST(TokenizerGguf, EncodesTheGoldenVectorsLikeTokenizerJson) {
  TmpDir d;
  const Tokenizer t = Tokenizer::load(write_tokenizer_gguf(d.p));
  int bad = 0;
  for (const Golden& g : golden()) {
    if (t.encode(g.text, true) != g.ids && ++bad <= 5) ADD_FAILURE() << g.id << " (special) " << show(g.text);
    if (t.encode(g.text, false) != g.ids_no_special && ++bad <= 5) ADD_FAILURE() << g.id << " " << show(g.text);
  }
  EXPECT_EQ(bad, 0);
  const Tokenizer& ref = v4_tokenizer();
  for (const Golden& g : golden()) EXPECT_EQ(t.decode(g.ids), ref.decode(g.ids)) << g.id;
}

TEST(TokenizerGguf, TokenizerJsonBesideTheGgufWins) {
  TmpDir d;
  const std::string path = write_tokenizer_gguf(d.p);
  // A tiny tokenizer.json in the same folder: loading the GGUF path must pick it.
  fs::copy_file(std::string(DSV4_TEST_DATA) + "/tokenizer/tokenizer.json", d.p / "tokenizer.json");
  EXPECT_EQ(Tokenizer::load(path).encode("hello world"), v4_tokenizer().encode("hello world"));
  fs::remove(d.p / "tokenizer.json");
  EXPECT_EQ(Tokenizer::load(path).encode("hello world"), v4_tokenizer().encode("hello world"));
}

TEST(TokenizerGguf, UnsupportedModelIsNamed) {
  TmpDir d;
  GgufWriter w;
  w.add_string("tokenizer.ggml.model", "llama");
  w.write((d.p / "m.gguf").string());
  try {
    Tokenizer::load((d.p / "m.gguf").string());
    FAIL() << "loaded a llama (sentencepiece) vocabulary";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.ggml.model"), std::string::npos) << e.what();
  }
}
