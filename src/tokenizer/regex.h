#pragma once
// PCRE2 (UTF + Unicode properties, JIT when available) with Oniguruma-compatible iteration, the
// engine HF tokenizers uses for its Split patterns.
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "tokenizer/utf8.h"

struct pcre2_real_code_8;
struct pcre2_real_match_data_8;

namespace dsv4::tok {

// Per-call scratch for matching; one per thread (Regex itself is immutable and shared).
class MatchData {
 public:
  MatchData();
  ~MatchData();
  MatchData(const MatchData&) = delete;
  MatchData& operator=(const MatchData&) = delete;
  pcre2_real_match_data_8* get() const { return md_; }

 private:
  pcre2_real_match_data_8* md_;
};

class Regex {
 public:
  // `what` names the pattern's origin in error messages (e.g. "tokenizer.json: pre_tokenizer[0]").
  static Regex compile(std::string_view pattern, std::string_view what);
  // A literal string (HF's {"String": ...} patterns).
  static Regex literal(std::string_view text, std::string_view what);

  // Leftmost match starting at or after `start`; subject must be valid UTF-8.
  bool find(std::string_view subject, size_t start, MatchData& md, size_t* ms, size_t* me) const;

  // Calls fn(start, end) for each match, like rust-onig's find_iter: an empty match right where
  // the previous match ended is skipped and the search moves on by one character.
  template <typename Fn>
  void for_each_match(std::string_view subject, MatchData& md, Fn&& fn) const {
    size_t pos = 0;
    bool have_last = false;
    size_t last_end = 0;
    while (pos <= subject.size()) {
      size_t s, e;
      if (!find(subject, pos, md, &s, &e)) return;
      if (s == e && have_last && last_end == e) {
        size_t len = 1;
        if (pos < subject.size()) utf8::classify(reinterpret_cast<const unsigned char*>(subject.data()) + pos,
                                                 subject.size() - pos, &len);
        pos += len;
        continue;
      }
      pos = e;
      have_last = true;
      last_end = e;
      fn(s, e);
    }
  }

 private:
  struct Free {
    void operator()(pcre2_real_code_8* c) const;
  };
  std::unique_ptr<pcre2_real_code_8, Free> code_;
  std::string what_;
  bool jit_ = false;
};

// Rewrites \s and \S so they mean what they mean in Oniguruma (the Unicode White_Space set);
// PCRE2 also counts U+180E as space. Exposed for tests.
std::string onig_compat_pattern(std::string_view pattern);

}  // namespace dsv4::tok
