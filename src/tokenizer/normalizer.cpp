#include "tokenizer/normalizer.h"

#include <nlohmann/json.hpp>

#include <cstdlib>

#include "core/error.h"

// Unicode normalization forms come from utf8proc; the build defines DSV4_HAVE_UTF8PROC when it
// links the library (V4 itself has an empty normalizer and does not need it).
#if defined(DSV4_HAVE_UTF8PROC) && __has_include(<utf8proc.h>)
#include <utf8proc.h>
#define DSV4_TOK_UTF8PROC 1
#else
#define DSV4_TOK_UTF8PROC 0
#endif

namespace dsv4::tok {
namespace {

#if DSV4_TOK_UTF8PROC
std::string unicode_normalize(std::string_view text, int options) {
  utf8proc_uint8_t* out = nullptr;
  const utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()), static_cast<utf8proc_ssize_t>(text.size()),
                   &out, static_cast<utf8proc_option_t>(options | UTF8PROC_STABLE));
  if (n < 0) fail("tokenizer normalizer: {}", utf8proc_errmsg(n));
  std::string s(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
  std::free(out);
  return s;
}
#endif

}  // namespace

Normalizer Normalizer::from_json(const nlohmann::json& j, const std::string& where) {
  Normalizer n;
  if (!j.is_null()) n.add(j, where + ": normalizer");
  return n;
}

void Normalizer::add(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) fail("{}: expected an object with a 'type'", where);
  const std::string type = j["type"].get<std::string>();
  if (type == "Sequence") {
    const auto it = j.find("normalizers");
    if (it == j.end() || !it->is_array()) fail("{}: Sequence without a 'normalizers' array", where);
    for (size_t i = 0; i < it->size(); ++i) add((*it)[i], where + "[" + std::to_string(i) + "]");
    return;
  }
  Step s;
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
#if DSV4_TOK_UTF8PROC
    s.kind = type == "NFC" ? Kind::kNfc : type == "NFD" ? Kind::kNfd : type == "NFKC" ? Kind::kNfkc : Kind::kNfkd;
#else
    fail("{}: normalizer {} needs Unicode normalization, but this build has no utf8proc", where, type);
#endif
  } else if (type == "Prepend") {
    if (!j.contains("prepend") || !j["prepend"].is_string()) fail("{}: Prepend without a 'prepend' string", where);
    s.kind = Kind::kPrepend;
    s.text = j["prepend"].get<std::string>();
  } else if (type == "Replace") {
    const auto pat = j.find("pattern");
    if (pat == j.end() || !pat->is_object() || !j.contains("content") || !j["content"].is_string()) {
      fail("{}: Replace needs a 'pattern' object and a 'content' string", where);
    }
    s.kind = Kind::kReplace;
    s.text = j["content"].get<std::string>();
    if (pat->contains("Regex") && (*pat)["Regex"].is_string()) {
      s.re.emplace(Regex::compile((*pat)["Regex"].get<std::string>(), where));
    } else if (pat->contains("String") && (*pat)["String"].is_string()) {
      s.re.emplace(Regex::literal((*pat)["String"].get<std::string>(), where));
    } else {
      fail("{}: Replace pattern must be {{\"Regex\": ...}} or {{\"String\": ...}}", where);
    }
  } else {
    fail("{}: unsupported normalizer type '{}'", where, type);
  }
  steps_.push_back(std::move(s));
}

std::string Normalizer::apply(std::string_view text, MatchData& md) const {
  std::string cur(text);
  for (const Step& s : steps_) {
    switch (s.kind) {
#if DSV4_TOK_UTF8PROC
      case Kind::kNfc:
        cur = unicode_normalize(cur, UTF8PROC_COMPOSE);
        break;
      case Kind::kNfd:
        cur = unicode_normalize(cur, UTF8PROC_DECOMPOSE);
        break;
      case Kind::kNfkc:
        cur = unicode_normalize(cur, UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
        break;
      case Kind::kNfkd:
        cur = unicode_normalize(cur, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
        break;
#else
      case Kind::kNfc:
      case Kind::kNfd:
      case Kind::kNfkc:
      case Kind::kNfkd:
        break;  // unreachable: rejected at load time
#endif
      case Kind::kPrepend:
        if (!cur.empty()) cur.insert(0, s.text);  // HF prepends only to non-empty strings
        break;
      case Kind::kReplace: {
        std::string out;
        size_t prev = 0;
        s.re->for_each_match(cur, md, [&](size_t b, size_t e) {
          out.append(cur, prev, b - prev).append(s.text);
          prev = e;
        });
        out.append(cur, prev, std::string::npos);
        cur = std::move(out);
        break;
      }
    }
  }
  return cur;
}

}  // namespace dsv4::tok
