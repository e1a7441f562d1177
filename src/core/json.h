#pragma once
// Depth-bounded JSON parsing for untrusted text (request bodies, checkpoint headers, tokenizer files):
// nlohmann's parser is iterative, but copying, comparing and dumping a value recurse once per level,
// so a value nested a few thousand deep overflows a thread's stack long after it was parsed.
#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

#include "core/error.h"

namespace dsv4 {

// Deeper than any tool schema or config in use (the deepest real schemas nest ~20 levels).
inline constexpr int kMaxJsonDepth = 128;

// Thrown when the text nests deeper than allowed; `path` names where (e.g. "tools[0].function.parameters").
struct JsonTooDeep : Error {
  std::string path;
  JsonTooDeep(std::string message, std::string path) : Error(std::move(message)), path(std::move(path)) {}
};

// Throws JsonTooDeep when an array or object opens more than `max_depth` levels down; `what` names the
// text in the message. Syntax errors are left to the parse that follows (this returns quietly).
void check_json_depth(std::string_view text, std::string_view what, int max_depth = kMaxJsonDepth);

// check_json_depth, then J::parse, which throws nlohmann::json::parse_error on bad syntax and
// out_of_range on a number no type holds (1E400): callers catch nlohmann::json::exception.
template <class J = nlohmann::json>
J parse_json(std::string_view text, std::string_view what, int max_depth = kMaxJsonDepth) {
  check_json_depth(text, what, max_depth);
  return J::parse(text.begin(), text.end());
}

}  // namespace dsv4
