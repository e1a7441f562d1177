#pragma once
// A llama.cpp `deepseek4` GGUF seen as a native checkpoint (docs/gguf.md): the HF config.json its
// metadata stands for and its tensors under the native names (the tokenizer: tokenizer/tokenizer_gguf.cpp).
#include <string>

#include "io/gguf.h"

namespace dsv4 {

// The HF config.json text for the model's metadata. Throws naming the key when general.architecture is
// not deepseek4 or a required key is missing.
std::string gguf_deepseek4_config_json(const GgufModel& m);

// The native name of a GGUF tensor name (blk.N.attn_q_a.weight -> layers.N.attn.wq_a.weight); names the
// mapping does not know come back unchanged, but for blk.N.X -> layers.N.X (the MTP stages' own tensors:
// Checkpoint maps blocks past block_count to mtp.{N - block_count}). Stacked expert tensors map to the "{e}" pattern
// (layers.N.ffn.experts.{e}.w1.weight); `stacked` tells the caller to slice them.
std::string gguf_deepseek4_native_name(const std::string& gguf_name, bool* stacked = nullptr);

// The inverse, for converters and tests: a routed expert maps to its stacked tensor with *expert set to
// its index (-1 for every other name); layers.N.X without a llama.cpp name -> blk.N.X.
std::string gguf_deepseek4_gguf_name(const std::string& native_name, int* expert = nullptr);

}  // namespace dsv4
