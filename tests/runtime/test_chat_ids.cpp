// Golden chat vectors end to end: rendered prompt text -> token ids (added tokens matched, no BOS added).
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "chat/encoder.h"
#include "tokenizer/tokenizer.h"

namespace dsv4 {
namespace {

using chat::Json;

std::vector<Json> golden_chat() {
  std::ifstream in(std::string(DSV4_TEST_DATA) + "/encoding/golden-chat.jsonl");
  std::vector<Json> out;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(Json::parse(line));
  return out;
}

const Tokenizer& tokenizer() {
  static const Tokenizer tok = Tokenizer::load(std::string(DSV4_TEST_DATA) + "/tokenizer/tokenizer.json");
  return tok;
}

class GoldenChatIds : public ::testing::TestWithParam<Json> {};

TEST_P(GoldenChatIds, RenderedPromptTokenizesToGoldenIds) {
  const Json& rec = GetParam();
  std::string prompt = chat::render_prompt(rec.at("messages"), chat::options_from_json(rec.at("options")));
  ASSERT_EQ(prompt, rec.at("prompt").get<std::string>());
  std::vector<int32_t> want = rec.at("ids").get<std::vector<int32_t>>();
  EXPECT_EQ(tokenizer().encode(prompt, /*parse_special=*/true), want);
}

INSTANTIATE_TEST_SUITE_P(Golden, GoldenChatIds, ::testing::ValuesIn(golden_chat()),
                         [](const ::testing::TestParamInfo<Json>& info) {
                           std::string s = info.param.at("id").get<std::string>();
                           for (char& c : s)
                             if (c == '-') c = '_';
                           return s;
                         });

TEST(GoldenChatIdsFile, HasAllRecords) { EXPECT_EQ(golden_chat().size(), 58u); }

TEST(ChatMarkers, AreSingleAddedTokens) {
  // FORMAT.md §1: the ids the prompt format relies on.
  const std::pair<const char*, int32_t> markers[] = {
      {"<｜begin▁of▁sentence｜>", 0}, {"<｜end▁of▁sentence｜>", 1}, {"<｜User｜>", 128803}, {"<｜Assistant｜>", 128804},
      {"<think>", 128821},          {"</think>", 128822},        {"｜DSML｜", 128825},   {"<｜latest_reminder｜>", 128828},
      {"<｜action｜>", 128829},       {"<｜query｜>", 128830},       {"<｜authority｜>", 128831}, {"<｜domain｜>", 128832},
      {"<｜title｜>", 128836},        {"<｜read_url｜>", 128845},    {"<｜extracted_url｜>", 128844},
  };
  for (const auto& [text, id] : markers) EXPECT_EQ(tokenizer().encode(text, true), std::vector<int32_t>{id}) << text;
}

}  // namespace
}  // namespace dsv4
