// The real V4 tokenizer (tests/data/tokenizer/tokenizer.json). Each input is used twice:
// as text (byte 0 bit 0: parse_special), where encode must round-trip through decode; and as token
// ids (3 bytes each, a few out of range on both sides), where decode and StreamDecoder — pushed one
// id at a time, then flushed — must agree (tokenizer.h), or both reject the same id.
#include <optional>

#include "core/error.h"
#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

using namespace dsv4;

namespace {

const Tokenizer& v4() {
  static const Tokenizer t = Tokenizer::load(DSV4_TEST_DATA "/tokenizer/tokenizer.json");
  return t;
}

std::optional<std::string> decode(const std::vector<int32_t>& ids, bool skip_special) {
  try {
    return v4().decode(ids, skip_special);
  } catch (const Error&) {
    return std::nullopt;
  }
}

std::optional<std::string> stream_decode(const std::vector<int32_t>& ids, bool skip_special) {
  try {
    StreamDecoder sd(v4(), skip_special);
    std::string out;
    for (int32_t id : ids) out += sd.push(id);
    return out + sd.flush();
  } catch (const Error&) {
    return std::nullopt;
  }
}

void check_decoders(const std::vector<int32_t>& ids) {
  for (bool skip : {false, true}) {
    const auto a = decode(ids, skip), b = stream_decode(ids, skip);
    FUZZ_CHECK(a.has_value() == b.has_value(), "decode %s, StreamDecoder %s", a ? "accepts" : "rejects",
               b ? "accepts" : "rejects");
    FUZZ_CHECK(a == b, "decode and StreamDecoder differ (skip_special=%d)", int(skip));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool special = data[0] & 1;
  const std::string_view text = fuzz::as_text(data + 1, size - 1);
  std::vector<int32_t> ids;
  try {
    ids = v4().encode(text, special);
  } catch (const Error&) {
    ids.clear();  // not UTF-8
  }
  if (!ids.empty() || text.empty()) {
    for (int32_t id : ids) FUZZ_CHECK(v4().has_token(id), "encode produced id %d", id);
    const auto back = decode(ids, false);
    FUZZ_CHECK(back && *back == text, "decode(encode(text)) != text");
    check_decoders(ids);
  }

  ids.clear();
  const int64_t span = int64_t(v4().vocab_size()) + 8;
  for (size_t i = 1; i + 3 <= size; i += 3) {
    const int64_t v = int64_t(data[i]) | int64_t(data[i + 1]) << 8 | int64_t(data[i + 2]) << 16;
    ids.push_back(int32_t(v % (span + 4) - 4));  // -4 .. vocab_size + 7
  }
  check_decoders(ids);
  for (int32_t id : ids)
    if (v4().has_token(id)) (void)v4().token_text(id), (void)v4().is_special(id);
  return 0;
}
