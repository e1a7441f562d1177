// tokenizer.json parsing: small mutated tokenizer files (corpus: hand-written BPE models with added
// tokens, normalizers and Split pre-tokenizers). A file is rejected with dsv4::Error, or the tokenizer
// it yields encodes and decodes text, and every id it encodes to is a token it can decode.
#include <optional>

#include "core/error.h"
#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

using namespace dsv4;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::optional<Tokenizer> t;
  try {
    t = Tokenizer::from_json(fuzz::as_text(data, size), "tokenizer.json");
  } catch (const Error&) {
    return 0;
  }
  for (std::string_view text : {"", "abcd ab cd", "Hello, world! 123 4567\n\n  x", "<｜User｜>hi<｜Assistant｜>",
                                "héllo 中文字 日本語 ｜▁ \xF0\x9F\x98\x80 \t\r\n"}) {
    for (bool special : {false, true}) {
      std::vector<int32_t> ids;
      try {
        ids = t->encode(text, special);
      } catch (const Error&) {
        continue;  // e.g. a byte the vocabulary cannot spell
      }
      for (int32_t id : ids) FUZZ_CHECK(t->has_token(id), "encode produced id %d", id);
      try {
        (void)t->decode(ids);
      } catch (const Error&) {
        FUZZ_CHECK(false, "decode rejected ids encode produced");
      }
    }
  }
  const size_t n = std::min<size_t>(t->vocab_size(), 512);
  for (int32_t id = 0; id < int32_t(n); ++id) {
    if (!t->has_token(id)) continue;
    StreamDecoder sd(*t);
    (void)sd.push(id);
    (void)sd.flush();
  }
  (void)t->bos_id(), (void)t->eos_id();
  return 0;
}
