#pragma once
// The cross-check between a checkpoint's config.json and its tokenizer.json, for every command that
// loads both: token ids must be model rows, and the model's BOS/EOS must be tokens.
#include <cstdint>
#include <string>

#include "tokenizer/tokenizer.h"

namespace dsv4 {

struct ModelVocab {
  int64_t vocab_size = 0;  // embedding / head rows
  int32_t bos_id = 0, eos_id = 1;
};

// Throws dsv4::Error naming `where` (the checkpoint folder) and the config key at fault.
void check_tokenizer_fits(const Tokenizer& tok, const ModelVocab& model, const std::string& where);

}  // namespace dsv4
