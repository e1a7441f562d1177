#pragma once
// Mean next-token cross-entropy of a text under the model (dsv4-nano model card protocol): the whole
// text is tokenized without BOS and cut into consecutive chunks of ctx-1 tokens; each window is
// [BOS] + chunk, run from position 0 with fresh state, and every chunk token is scored exactly once.
#include <cstdint>
#include <functional>
#include <string>

#include "model/transformer.h"
#include "tokenizer/tokenizer.h"

namespace dsv4 {

struct PerplexityResult {
  int64_t tokens = 0;
  double mean_ce_nats = 0;
  // With a base model (the native checkpoint a quantised one was made from): the mean over scored tokens
  // of KL(base ‖ model) of the next-token distributions, its 99th percentile, the base's own cross-entropy,
  // and how often both models' most likely token agree.
  bool has_base = false;
  double mean_kl = 0, kl_p99 = 0, base_mean_ce_nats = 0, top1_agreement = 0;
  double perplexity() const;
};

// base (optional) must share the tokenizer and vocabulary; it runs the same windows.
PerplexityResult perplexity(const Model& m, const Tokenizer& tok, const std::string& text, int64_t ctx,
                            const std::function<void(int64_t done, int64_t total)>& progress = {},
                            const Model* base = nullptr);

}  // namespace dsv4
