// DSML completion parser. Input: byte 0 = mode (bit 0: thinking), byte 1 = chunking seed, the rest is
// the completion text. Checks the StreamParser promises of chat/parser.h: fed in random chunks it
// accepts exactly what parse_completion accepts, its deltas concatenate to the one-shot result, no
// delta carries markup or (for valid UTF-8 input) half a character, and after an error or finish()
// every call throws. finish_truncated() at a random cut must not crash either.
#include <functional>
#include <optional>
#include <random>

#include "chat/markers.h"
#include "chat/parser.h"
#include "core/error.h"
#include "fuzz_util.h"

using namespace dsv4;
using namespace dsv4::chat;

namespace {

struct Collected {
  ParsedCompletion p;
  void take(const StreamParser::Delta& d, bool valid_utf8) {
    for (const std::string* s : {&d.content, &d.reasoning}) {
      FUZZ_CHECK(!valid_utf8 || is_valid_utf8(*s), "delta splits a UTF-8 character");
      for (std::string_view m : {marker::kThinkOpen, marker::kThinkClose, marker::kDsml, marker::kEos, marker::kBos})
        FUZZ_CHECK(s->find(m) == std::string::npos, "markup in a delta: %s", s->c_str());
    }
    p.content += d.content;
    p.reasoning_content += d.reasoning;
    p.tool_calls.insert(p.tool_calls.end(), d.tool_calls.begin(), d.tool_calls.end());
  }
};

std::string show(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

bool throws(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error&) {
    return true;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const bool thinking = data[0] & 1;
  std::minstd_rand rng(data[1]);
  const std::string_view text = fuzz::as_text(data + 2, size - 2);
  const bool valid = is_valid_utf8(text);

  std::optional<ParsedCompletion> once;
  try {
    once = parse_completion(text, thinking);
  } catch (const Error&) {
  }

  StreamParser sp(thinking);
  Collected got;
  bool ok = true;
  try {
    for (size_t i = 0; i < text.size();) {
      const size_t n = std::min<size_t>(1 + rng() % 24, text.size() - i);
      got.take(sp.push(text.substr(i, n)), valid);
      i += n;
    }
    got.take(sp.finish(), valid);
  } catch (const Error&) {
    ok = false;
  }
  FUZZ_CHECK(ok == once.has_value(), "stream %s, one-shot %s", ok ? "accepts" : "rejects",
             once ? "accepts" : "rejects");
  FUZZ_CHECK(throws([&] { sp.push("x"); }) && throws([&] { sp.finish(); }), "a closed parser accepted more");
  if (once) {
    FUZZ_CHECK(to_json(got.p) == to_json(*once), "stream %s != one-shot %s", show(to_json(got.p)).c_str(),
               show(to_json(*once)).c_str());
  }

  // Cut short anywhere (token limit, client gone): whatever comes back is clean text.
  StreamParser cut(thinking);
  Collected part;
  const size_t at = text.empty() ? 0 : rng() % (text.size() + 1);
  try {
    part.take(cut.push(text.substr(0, at)), valid && is_valid_utf8(text.substr(0, at)));
    part.take(cut.finish_truncated(), false);
  } catch (const Error&) {
  }
  return 0;
}
