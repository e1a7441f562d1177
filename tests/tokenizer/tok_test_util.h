#pragma once
// Shared helpers for the tokenizer tests: the V4 tokenizer (loaded once) and the golden vectors.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace dsv4::test {

inline std::string tok_data(const std::string& name) { return std::string(DSV4_TEST_DATA) + "/tokenizer/" + name; }

inline const Tokenizer& v4_tokenizer() {
  static const Tokenizer t = Tokenizer::load(tok_data("tokenizer.json"));
  return t;
}

struct Golden {
  std::string id, category, text;
  std::vector<int32_t> ids, ids_no_special;
  std::vector<std::string> tokens;  // empty on "long" records
};

inline const std::vector<Golden>& golden() {
  static const std::vector<Golden> g = [] {
    std::vector<Golden> v;
    std::ifstream in(tok_data("golden-encode.jsonl"));
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      const auto j = nlohmann::json::parse(line);
      Golden r;
      r.id = j.at("id").get<std::string>();
      r.category = j.at("category").get<std::string>();
      r.text = j.at("text").get<std::string>();
      r.ids = j.at("ids").get<std::vector<int32_t>>();
      r.ids_no_special = j.at("ids_no_special").get<std::vector<int32_t>>();
      if (j.contains("tokens")) r.tokens = j["tokens"].get<std::vector<std::string>>();
      v.push_back(std::move(r));
    }
    return v;
  }();
  return g;
}

// JSON-escaped text, so control bytes and odd whitespace show up in failure messages.
inline std::string show(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

inline bool valid_utf8(const std::string& s) {
  try {
    (void)nlohmann::json(s).dump();
    return true;
  } catch (const nlohmann::json::type_error&) {
    return false;
  }
}

}  // namespace dsv4::test
