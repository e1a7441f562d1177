#pragma once
// Shared by the runtime tests: the bundled dsv4-nano model, prompts in its chat format, a request
// collector, and a byte-only tokenizer for the tiny fixtures (whose heads have padding rows).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <future>
#include <string>
#include <vector>

#include "chat/encoder.h"
#include "runtime/scheduler.h"

namespace dsv4 {

inline const std::string kNano = std::string(DSV4_TEST_DATA) + "/../../models/dsv4-nano";

struct Nano {
  Tokenizer tok = Tokenizer::load(kNano);
  Model model{kNano};
};
inline Nano& nano() {
  static Nano n;
  return n;
}

inline std::vector<int32_t> prompt_ids(const std::string& user) {
  nlohmann::ordered_json msgs = nlohmann::ordered_json::array({{{"role", "user"}, {"content", user}}});
  return nano().tok.encode(chat::render_prompt(msgs, {}), true);
}

struct Collected {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;  // the chosen token's, when asked for
  std::string text, finish;
  int64_t cached = -1;
  std::promise<void> done;
};

inline uint64_t submit(Scheduler& s, GenerationRequest req, Collected& c) {
  return s.submit(std::move(req), [&c](const GenerationEvent& e) {
    if (e.kind == GenerationEvent::Kind::Token) {
      if (e.token >= 0) c.tokens.push_back(e.token), c.logprobs.push_back(e.logprob);
      c.text += e.text;
    } else if (e.kind == GenerationEvent::Kind::Done || e.kind == GenerationEvent::Kind::Error) {
      c.finish = e.kind == GenerationEvent::Kind::Error ? "error: " + e.error : finish_reason_name(e.finish_reason);
      c.cached = e.cached_tokens;
      c.done.set_value();
    }
  });
}

inline GenerationRequest greedy(std::vector<int32_t> prompt, int n) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.sampling.temperature = 0;
  r.max_tokens = n;
  return r;
}

// A byte-level tokenizer with only the 256 byte tokens: the tiny fixture's head has 512 rows, so half
// of its ids are padding the tokenizer cannot decode (as V4's 129280-row head is past the last token).
inline Tokenizer bytes_only_tokenizer() {
  nlohmann::json vocab = nlohmann::json::object();
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    // GPT-2's byte-to-unicode map: printable Latin-1 bytes stand for themselves, the rest from U+0100.
    const bool direct = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    const int cp = direct ? b : 256 + n++;
    std::string u;
    if (cp < 0x80) u += char(cp);
    else {
      u += char(0xC0 | (cp >> 6));
      u += char(0x80 | (cp & 0x3F));
    }
    vocab[u] = b;
  }
  nlohmann::json j = {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}},
                      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}},
                      {"decoder", {{"type", "ByteLevel"}}},
                      {"added_tokens", nlohmann::json::array()}};
  return Tokenizer::from_json(j.dump(), "bytes-only");
}

}  // namespace dsv4
