#pragma once
// HF pre-tokenizers: a chain of Split steps (regex or literal, each with a delimiter behaviour and
// optional invert) followed by ByteLevel. Pieces flow through the chain without being copied.
#include <nlohmann/json_fwd.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/regex.h"

namespace dsv4::tok {

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// Receives the final pieces (raw bytes, never empty).
class PieceSink {
 public:
  virtual void piece(std::string_view bytes) = 0;

 protected:
  ~PieceSink() = default;
};

class PreTokenizer {
 public:
  // `where` prefixes error messages (it names the file). A null JSON value is allowed.
  static PreTokenizer from_json(const nlohmann::json& j, const std::string& where);

  void run(std::string_view text, MatchData& md, PieceSink& sink) const;

  bool has_byte_level() const { return byte_level_; }

 private:
  struct Split {
    std::optional<Regex> re;
    SplitBehavior behavior;
    bool invert;
  };
  void add_step(const nlohmann::json& j, const std::string& where);
  void run_from(size_t step, std::string_view piece, MatchData& md, PieceSink& sink) const;
  void leaf(std::string_view piece, MatchData& md, PieceSink& sink) const;

  std::vector<Split> splits_;
  bool byte_level_ = false;
  bool add_prefix_space_ = false;
  std::optional<Regex> byte_level_re_;  // the GPT-2 pattern, when ByteLevel has use_regex
};

}  // namespace dsv4::tok
