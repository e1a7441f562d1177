#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/regex.h"

#include <pcre2.h>

#include "core/error.h"

namespace dsv4::tok {
namespace {

// White_Space as class-body ranges (no U+180E, unlike PCRE2's \s).
constexpr std::string_view kSpaceBody =
    "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  if (pcre2_get_error_message(code, buf, sizeof buf) < 0) return "error " + std::to_string(code);
  return reinterpret_cast<const char*>(buf);
}

}  // namespace

MatchData::MatchData() : md_(pcre2_match_data_create(1, nullptr)) {
  if (!md_) fail("tokenizer: out of memory creating PCRE2 match data");
}
MatchData::~MatchData() { pcre2_match_data_free(md_); }

void Regex::Free::operator()(pcre2_real_code_8* c) const { pcre2_code_free(c); }

std::string onig_compat_pattern(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 32);
  bool in_class = false;
  size_t i = 0;
  while (i < p.size()) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char d = p[i + 1];
      if (d == 'Q') {  // \Q...\E is literal: copy untouched
        const size_t end = p.find("\\E", i + 2);
        const size_t stop = end == std::string_view::npos ? p.size() : end + 2;
        out.append(p.substr(i, stop - i));
        i = stop;
        continue;
      }
      if (d == 's') {
        if (in_class) {
          out.append(kSpaceBody);
        } else {
          out.append("[").append(kSpaceBody).append("]");
        }
      } else if (d == 'S') {
        out.append(in_class ? "\\S\\x{180E}" : "[\\S\\x{180E}]");
      } else {
        out.push_back(c);
        out.push_back(d);
      }
      i += 2;
      continue;
    }
    if (in_class) {
      if (c == '[' && i + 1 < p.size() && p[i + 1] == ':') {  // POSIX class [:alpha:]
        const size_t end = p.find(":]", i + 2);
        const size_t stop = end == std::string_view::npos ? p.size() : end + 2;
        out.append(p.substr(i, stop - i));
        i = stop;
        continue;
      }
      if (c == ']') in_class = false;
      out.push_back(c);
      ++i;
      continue;
    }
    out.push_back(c);
    ++i;
    if (c == '[') {
      in_class = true;
      if (i < p.size() && p[i] == '^') out.push_back(p[i++]);
      if (i < p.size() && p[i] == ']') out.push_back(p[i++]);  // a leading ']' is literal
    }
  }
  return out;
}

Regex Regex::compile(std::string_view pattern, std::string_view what) {
  const std::string pat = onig_compat_pattern(pattern);
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pat.data()), pat.size(),
                                   PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
  if (!code) {
    fail("{}: cannot compile regex '{}': {} (at offset {} of the rewritten pattern)", what, pattern,
         pcre2_message(err), off);
  }
  Regex r;
  r.code_.reset(code);
  r.what_ = what;
  // JIT is an optimisation only; the interpreter gives the same matches.
  r.jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return r;
}

Regex Regex::literal(std::string_view text, std::string_view what) {
  std::string pat = "\\Q";
  size_t i = 0;
  for (size_t e; (e = text.find("\\E", i)) != std::string_view::npos; i = e + 2) {
    pat.append(text.substr(i, e - i)).append("\\E\\\\E\\Q");  // \E cannot appear inside \Q...\E
  }
  pat.append(text.substr(i)).append("\\E");
  return compile(pat, what);
}

bool Regex::find(std::string_view subject, size_t start, MatchData& md, size_t* ms, size_t* me) const {
  const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
  const int rc = jit_ ? pcre2_jit_match(code_.get(), s, subject.size(), start, 0, md.get(), nullptr)
                      : pcre2_match(code_.get(), s, subject.size(), start, PCRE2_NO_UTF_CHECK, md.get(), nullptr);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) fail("{}: regex match failed: {}", what_, pcre2_message(rc));
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
  *ms = ov[0];
  *me = ov[1];
  return true;
}

}  // namespace dsv4::tok
