// Ambiguous tokenizer.json files (issue 13) and the cross-check against the model's config.json:
// each rejection names the file, the ids and the config key.
#include <gtest/gtest.h>

#include <functional>

#include "core/error.h"
#include "tok_test_util.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/model_fit.h"

namespace dsv4::test {
namespace {

using nlohmann::json;

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

// Bytes at ids 2..257; BOS = 0 and EOS = 1 are added tokens.
json fit_json(json added = nullptr) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[tok::byte_level::map(std::string(1, static_cast<char>(b)))] = b + 2;
  if (added.is_null())
    added = json::array({{{"id", 0}, {"content", "<｜begin▁of▁sentence｜>"}, {"special", true}},
                         {{"id", 1}, {"content", "<｜end▁of▁sentence｜>"}, {"special", true}}});
  return {{"added_tokens", added},
          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}}}};
}

std::string load_error(const json& j) {
  return error_of([&] { Tokenizer::from_json(j.dump(), "ckpt/tokenizer.json"); });
}

TEST(TokenizerFile, DuplicateVocabIdsAreRejected) {
  json j = fit_json();
  j["model"]["vocab"]["hello"] = 7;  // id 7 is already a byte
  const std::string msg = load_error(j);
  EXPECT_NE(msg.find("ckpt/tokenizer.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("id 7"), std::string::npos) << msg;
  EXPECT_NE(msg.find("\"hello\""), std::string::npos) << msg;
}

TEST(TokenizerFile, ConflictingAddedTokensAreRejected) {
  json j = fit_json();
  j["added_tokens"].push_back({{"id", 1}, {"content", "<eos2>"}, {"special", true}});  // id 1 again
  std::string msg = load_error(j);
  EXPECT_NE(msg.find("added_tokens[2]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("id 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("<eos2>"), std::string::npos) << msg;
  j = fit_json();
  j["added_tokens"].push_back({{"id", 300}, {"content", "<｜end▁of▁sentence｜>"}, {"special", true}});
  msg = load_error(j);
  EXPECT_NE(msg.find("added_tokens[2]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("300"), std::string::npos) << msg;
  // An exact repeat is harmless and loads.
  j = fit_json();
  j["added_tokens"].push_back(j["added_tokens"][1]);
  const Tokenizer t = Tokenizer::from_json(j.dump(), "x");
  EXPECT_EQ(t.eos_id(), 1);
  EXPECT_EQ(t.encode("a<｜end▁of▁sentence｜>"), (std::vector<int32_t>{'a' + 2, 1}));
}

TEST(TokenizerFit, AcceptsAMatchingModel) {
  const Tokenizer t = Tokenizer::from_json(fit_json().dump(), "x");
  EXPECT_NO_THROW(check_tokenizer_fits(t, {258, 0, 1}, "ckpt"));
  EXPECT_NO_THROW(check_tokenizer_fits(t, {129280, 0, 1}, "ckpt"));  // spare rows are fine
}

TEST(TokenizerFit, IdsBeyondTheModelVocabAreRejected) {
  const Tokenizer t = Tokenizer::from_json(fit_json().dump(), "x");
  const std::string msg = error_of([&] { check_tokenizer_fits(t, {200, 0, 1}, "ckpt"); });
  EXPECT_NE(msg.find("ckpt"), std::string::npos) << msg;
  EXPECT_NE(msg.find("vocab_size = 200"), std::string::npos) << msg;
  EXPECT_NE(msg.find("257"), std::string::npos) << msg;
}

TEST(TokenizerFit, ModelEosOrBosMissingFromTheTokenizerIsRejected) {
  // No EOS at all: the added tokens hold only BOS, and id 1 is unbound.
  const Tokenizer no_eos = Tokenizer::from_json(
      fit_json(json::array({{{"id", 0}, {"content", "<｜begin▁of▁sentence｜>"}, {"special", true}}})).dump(), "x");
  std::string msg = error_of([&] { check_tokenizer_fits(no_eos, {258, 0, 1}, "ckpt"); });
  EXPECT_NE(msg.find("eos_token_id = 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tokenizer.json"), std::string::npos) << msg;
  const Tokenizer t = Tokenizer::from_json(fit_json().dump(), "x");
  msg = error_of([&] { check_tokenizer_fits(t, {1000, 0, 500}, "ckpt"); });  // past the tokenizer's ids
  EXPECT_NE(msg.find("eos_token_id = 500"), std::string::npos) << msg;
  msg = error_of([&] { check_tokenizer_fits(t, {1000, 700, 1}, "ckpt"); });
  EXPECT_NE(msg.find("bos_token_id = 700"), std::string::npos) << msg;
}

}  // namespace
}  // namespace dsv4::test
