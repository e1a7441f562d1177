// The tokenizer of a llama.cpp GGUF: its tokenizer.ggml.* metadata rewritten as the tokenizer.json it came
// from, so one loader (tokenizer_load.cpp) validates both. docs/gguf.md lists what the GGUF keeps.
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

namespace dsv4 {

namespace {

// llama_token_type as the converter writes it.
enum TokenType : int64_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

// The DeepSeek V3/V4 pre-tokenizer (llama.cpp's "deepseek-v3" preset; the V4 tokenizer.json has the same
// three splits): digit runs of up to three, CJK runs, then the word/punctuation/space pattern.
nlohmann::ordered_json deepseek_v3_pre_tokenizer() {
  auto split = [](const char* re) {
    return nlohmann::ordered_json{{"type", "Split"}, {"pattern", {{"Regex", re}}}, {"behavior", "Isolated"}, {"invert", false}};
  };
  nlohmann::ordered_json seq = nlohmann::ordered_json::array();
  seq.push_back(split(R"(\p{N}{1,3})"));
  seq.push_back(split("[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"));
  seq.push_back(split("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
                      " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"));
  seq.push_back({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}});
  return {{"type", "Sequence"}, {"pretokenizers", seq}};
}

}  // namespace

std::string tokenizer_json_from_gguf(const std::string& path) {
  const GgufModel m(path);
  const GgufFile& f = m.first();
  const std::string& model = f.get_string("tokenizer.ggml.model");
  if (model != "gpt2")
    fail("{}: key 'tokenizer.ggml.model' is '{}'; only 'gpt2' (byte-level BPE) is supported", f.path(), model);
  const std::string pre = f.find("tokenizer.ggml.pre") ? f.get_string("tokenizer.ggml.pre") : "";
  if (pre != "deepseek-v3" && pre != "deepseek-v4")
    fail("{}: key 'tokenizer.ggml.pre' is '{}'; only the DeepSeek V3/V4 pre-tokenizer ('deepseek-v3') is supported",
         f.path(), pre);
  const auto& tokens = f.get_strings("tokenizer.ggml.tokens");
  const auto& types = f.get_ints("tokenizer.ggml.token_type");
  if (types.size() != tokens.size())
    fail("{}: key 'tokenizer.ggml.token_type' has {} entries for {} tokens", f.path(), types.size(), tokens.size());
  // nlohmann::json (a std::map) for the 129k-entry vocabulary: ordered_json looks keys up linearly.
  nlohmann::json vocab = nlohmann::json::object();
  nlohmann::ordered_json added = nlohmann::ordered_json::array();
  for (size_t id = 0; id < tokens.size(); ++id) {
    const int64_t t = types[id];
    if (t < kNormal || t > kByte) fail("{}: token {} has unknown type {}", f.path(), id, t);
    if (t == kUnused) continue;  // the converter's [PADn] fillers of unassigned ids
    // Every kept token is in the BPE vocabulary (merges may produce an added token); control and
    // user-defined ones are also added tokens, matched before BPE.
    vocab.emplace(tokens[id], id);  // the first id of a repeated string wins
    if (t == kControl || t == kUserDefined)
      added.push_back({{"id", id}, {"content", tokens[id]}, {"single_word", false}, {"lstrip", false},
                       {"rstrip", false}, {"normalized", t == kUserDefined}, {"special", t == kControl}});
  }
  nlohmann::ordered_json merges = nlohmann::ordered_json::array();
  if (f.find("tokenizer.ggml.merges"))
    for (const auto& s : f.get_strings("tokenizer.ggml.merges")) merges.push_back(s);
  nlohmann::json j;
  j["version"] = "1.0";
  j["added_tokens"] = added;
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", nlohmann::ordered_json::array()}};
  j["pre_tokenizer"] = deepseek_v3_pre_tokenizer();
  j["post_processor"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}};
  j["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  j["model"] = {{"type", "BPE"},       {"dropout", nullptr}, {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},   {"byte_fallback", false}, {"vocab", vocab}, {"merges", merges}};
  return j.dump();
}

}  // namespace dsv4
