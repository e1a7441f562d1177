// config.json text → parse_config: a ModelConfig that passed validation, or dsv4::Error.
#include "core/error.h"
#include "fuzz_util.h"
#include "io/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const dsv4::ModelConfig c = dsv4::parse_config(std::string(fuzz::as_text(data, size)), "config.json");
    // What later code indexes with must agree with what validation promised.
    FUZZ_CHECK(int(c.compress_ratios.size()) == c.n_layers + c.n_mtp_layers, "compress_ratios size %zu",
               c.compress_ratios.size());
    FUZZ_CHECK(c.dim > 0 && c.n_layers > 0 && c.vocab_size > 0, "non-positive dims passed validation");
    FUZZ_CHECK(c.eos_token_id >= 0 && c.eos_token_id < c.vocab_size, "eos_token_id %d outside the vocab",
               c.eos_token_id);
  } catch (const dsv4::Error&) {
  }
  return 0;
}
