#pragma once
// HF normalizers that byte-level BPE tokenizers use: null, Sequence, NFC/NFD/NFKC/NFKD (needs
// utf8proc), Prepend and Replace. Anything else fails at load time with a clear message.
#include <nlohmann/json_fwd.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/regex.h"

namespace dsv4::tok {

class Normalizer {
 public:
  static Normalizer from_json(const nlohmann::json& j, const std::string& where);

  bool identity() const { return steps_.empty(); }
  std::string apply(std::string_view text, MatchData& md) const;

 private:
  enum class Kind { kNfc, kNfd, kNfkc, kNfkd, kPrepend, kReplace };
  struct Step {
    Kind kind;
    std::string text;         // Prepend: the prefix; Replace: the replacement
    std::optional<Regex> re;  // Replace: the pattern
  };
  void add(const nlohmann::json& j, const std::string& where);
  std::vector<Step> steps_;
};

}  // namespace dsv4::tok
