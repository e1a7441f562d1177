#pragma once
// Added-token matching as HF's AddedVocabulary does it: leftmost-longest over the text, then the
// per-token single_word / lstrip / rstrip rules.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/regex.h"

namespace dsv4::tok {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool normalized = true;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
};

class AddedMatcher {
 public:
  // `pattern` is the string matched in the text (the content, normalized if the token is).
  void add(std::string_view pattern, const AddedToken* token);
  bool empty() const { return nodes_.size() <= 1; }

  // Calls on_text(piece) for the text between matches and on_token(id) for each match.
  // `word_char` answers "is this code point alphanumeric" for single_word tokens.
  template <typename OnText, typename OnToken, typename WordChar>
  void split(std::string_view text, OnText&& on_text, OnToken&& on_token, WordChar&& word_char) const;

 private:
  // Longest pattern starting at pos; returns its end and sets *tok, or returns 0.
  size_t longest_at(std::string_view text, size_t pos, const AddedToken** tok) const;

  struct Node {
    const AddedToken* token = nullptr;
    std::vector<std::pair<unsigned char, int32_t>> kids;  // sorted by byte
  };
  std::vector<Node> nodes_{1};
  bool first_byte_[256] = {};
};

template <typename OnText, typename OnToken, typename WordChar>
void AddedMatcher::split(std::string_view text, OnText&& on_text, OnToken&& on_token, WordChar&& word_char) const {
  size_t emitted = 0;  // end of what has been handed out
  size_t pos = 0;
  while (pos < text.size()) {
    if (!first_byte_[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    const AddedToken* tok = nullptr;
    const size_t end = longest_at(text, pos, &tok);
    if (end == 0) {
      ++pos;
      continue;
    }
    size_t start = pos, stop = end;
    pos = end;  // matches never overlap, even when one is discarded below
    if (start < emitted) continue;  // swallowed by the previous token's rstrip
    if (tok->single_word) {
      size_t len;
      const bool left_ok = start == 0 || !word_char(utf8::decode_at(text, utf8::prev_start(text, start), &len));
      const bool right_ok = stop == text.size() || !word_char(utf8::decode_at(text, stop, &len));
      if (!left_ok || !right_ok) continue;
    }
    if (tok->lstrip) {
      while (start > emitted) {
        const size_t p = utf8::prev_start(text, start);
        size_t len;
        if (!utf8::is_white_space(utf8::decode_at(text, p, &len))) break;
        start = p;
      }
    }
    if (tok->rstrip) {
      while (stop < text.size()) {
        size_t len;
        if (!utf8::is_white_space(utf8::decode_at(text, stop, &len))) break;
        stop += len;
      }
      pos = stop;
    }
    if (start > emitted) on_text(text.substr(emitted, start - emitted));
    on_token(tok->id);
    emitted = stop;
  }
  if (emitted < text.size()) on_text(text.substr(emitted));
}

}  // namespace dsv4::tok
