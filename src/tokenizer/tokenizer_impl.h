#pragma once
// Internal state behind dsv4::Tokenizer (shared, immutable after loading except the BPE cache).
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/regex.h"
#include "tokenizer/tokenizer.h"

namespace dsv4::tok {

struct TokenizerImpl {
  std::string source;  // file name for error messages

  BpeModel bpe;
  Normalizer normalizer;
  PreTokenizer pre;

  std::vector<AddedToken> added;  // stable storage: the matchers point into it
  AddedMatcher raw_matcher;       // normalized=false tokens, matched on the raw text
  AddedMatcher norm_matcher;      // normalized=true tokens, matched after normalization
  std::optional<Regex> word_char;  // alphanumeric test for single_word tokens

  StringIdMap vocab;        // model vocab (byte-level spelling) -> id
  StringIdMap added_by_text;  // added-token content -> id

  // Decoded bytes of every id: blob[off[id], off[id + 1]).
  std::string blob;
  std::vector<uint32_t> off;
  std::vector<uint8_t> flags;  // kPresent | kSpecial
  static constexpr uint8_t kPresent = 1, kSpecial = 2;

  int32_t bos = -1, eos = -1;

  size_t vocab_size() const { return flags.size(); }
  std::string_view bytes_of(int32_t id) const;  // throws for unknown ids
  void encode(std::string_view text, bool parse_special, std::vector<int32_t>& out) const;
  void encode_pieces(std::span<const EncodePiece> pieces, std::vector<int32_t>& out) const;

  static std::shared_ptr<TokenizerImpl> parse(std::string_view json_text, const std::string& name);
};

}  // namespace dsv4::tok
