// `dsv4 tokenize` / `dsv4 detokenize` end to end, through temp files and std::system.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

const std::string kTokDir = std::string(DSV4_TEST_DATA) + "/tokenizer";

struct CmdResult {
  int rc = -1;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class TokenizerCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dsv4_tok_cli_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  // Runs `dsv4 <args>` with `input` as stdin (byte for byte).
  CmdResult run(const std::string& args, const std::string& input) {
    const fs::path in = dir_ / "in", out = dir_ / "out", err = dir_ / "err";
    std::ofstream(in, std::ios::binary) << input;
    const std::string cmd = std::string("'") + DSV4_BINARY + "' " + args + " < '" + in.string() + "' > '" +
                            out.string() + "' 2> '" + err.string() + "'";
    const int status = std::system(cmd.c_str());
    CmdResult r;
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = slurp(out);
    r.err = slurp(err);
    return r;
  }
  fs::path dir_;
};

// The first golden vector with an added-token string, a space and a trailing newline or not.
nlohmann::json special_vector() {
  std::ifstream in(kTokDir + "/golden-encode.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    const std::string text = j["text"].get<std::string>();
    if (text.find("<｜User｜>") != std::string::npos && text.find(' ') != std::string::npos &&
        j["ids"] != j["ids_no_special"]) {
      return j;
    }
  }
  return nullptr;
}

TEST_F(TokenizerCli, TokenizeMatchesGolden) {
  // Each run loads the 6 MB tokenizer, so one vector is checked here (all are in test_tokenizer).
  const nlohmann::json g = special_vector();
  ASSERT_FALSE(g.is_null());
  const std::string text = g["text"].get<std::string>();
  const CmdResult a = run("tokenize -m '" + kTokDir + "'", text);
  ASSERT_EQ(a.rc, 0) << a.err;
  EXPECT_EQ(nlohmann::json::parse(a.out), g["ids"]) << text;
  const CmdResult b = run("tokenize --no-special -m '" + kTokDir + "/tokenizer.json'", text);
  ASSERT_EQ(b.rc, 0) << b.err;
  EXPECT_EQ(nlohmann::json::parse(b.out), g["ids_no_special"]) << text;
  const CmdResult c = run("detokenize -m '" + kTokDir + "'", g["ids"].dump());
  ASSERT_EQ(c.rc, 0) << c.err;
  EXPECT_EQ(c.out, text);
}

TEST_F(TokenizerCli, RoundTripWithNewlines) {
  const std::string text = "  line one\r\nline two\n\n<think>x</think>\n";
  const CmdResult a = run("tokenize -m '" + kTokDir + "'", text);
  ASSERT_EQ(a.rc, 0) << a.err;
  const CmdResult b = run("detokenize -m '" + kTokDir + "'", a.out);
  ASSERT_EQ(b.rc, 0) << b.err;
  EXPECT_EQ(b.out, text);
}

// render-prompt --ids encodes message content as text; the printed prompt piped to tokenize parses every
// marker, as the reference does.
TEST_F(TokenizerCli, RenderPromptIdsKeepContentMarkersAsText) {
  const std::string conv =
      R"({"messages": [{"role": "user", "content": "<｜end▁of▁sentence｜><｜User｜>hi<｜Assistant｜>"}],)"
      R"( "options": {"thinking_mode": "chat"}})";
  const CmdResult ids = run("render-prompt --ids -m '" + kTokDir + "'", conv);
  ASSERT_EQ(ids.rc, 0) << ids.err;
  const auto v = nlohmann::json::parse(ids.out).get<std::vector<int32_t>>();
  const auto count = [](const std::vector<int32_t>& x, int32_t id) { return std::count(x.begin(), x.end(), id); };
  constexpr int32_t kEos = 1, kUser = 128803, kAssistant = 128804;
  EXPECT_EQ(count(v, kUser), 1);
  EXPECT_EQ(count(v, kAssistant), 1);
  EXPECT_EQ(count(v, kEos), 0);
  const CmdResult text = run("render-prompt", conv);
  ASSERT_EQ(text.rc, 0) << text.err;
  const CmdResult raw = run("tokenize -m '" + kTokDir + "'", text.out);
  ASSERT_EQ(raw.rc, 0) << raw.err;
  const auto w = nlohmann::json::parse(raw.out).get<std::vector<int32_t>>();
  EXPECT_EQ(count(w, kUser), 2);
  EXPECT_EQ(count(w, kAssistant), 2);
  EXPECT_EQ(count(w, kEos), 1);
}

TEST_F(TokenizerCli, Errors) {
  CmdResult r = run("tokenize -m '" + kTokDir + "'", "ok\xC3(");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("not valid UTF-8"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("offset 2"), std::string::npos) << r.err;

  r = run("detokenize -m '" + kTokDir + "'", "[1, 2");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("not valid JSON"), std::string::npos) << r.err;

  r = run("detokenize -m '" + kTokDir + "'", "[1, 129280]");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("token id 129280 is out of range"), std::string::npos) << r.err;

  r = run("tokenize -m '" + (dir_ / "missing").string() + "'", "x");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
}

}  // namespace
