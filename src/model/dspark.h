#pragma once
// DSpark, the draft head of V4-Flash-0731 (architecture.md §4.20; the official reference's DSparkBlock,
// DSparkAttention, DSparkMarkovHead, DSparkConfidenceHead and Transformer.forward_spec).
//
// The main model's hidden state after a few target layers (the "taps", the mean of the residual streams)
// is projected to main_x = main_norm(main_proj(taps)); every stage turns main_x of each consumed position
// into one KV row of its own sliding window (commit). A draft at p takes the block
// [t_{p+1}, noise × (block−1)] at positions p+1 … p+block through the stages — full blocks whose
// attention reads the stage's window of main KV plus every block token (bidirectional) — then the last
// stage's hc_head, norm and the shared head give one logit row per block token. A rank-r bigram bias
// (the Markov head) is added row by row along the greedy chain, and a confidence head scores each row
// from the pre-norm hidden and the bigram embedding. Model::dspark_commit / dspark_draft run it
// (model/transformer.h).
#include <cstdint>
#include <functional>
#include <vector>

namespace dsv4 {

struct SequenceState;

// Taps [S, T·D] (ForwardResult::taps, T target layers) of positions st->dspark_pos … +S−1; only the last
// min(S, window) reach the rings.
struct DSparkCommit {
  SequenceState* st;
  const float* taps;
  int64_t S;
};

// A draft after the committed positions ≤ p = st->dspark_pos − 1 (the main model consumed at least those).
struct DSparkDraftInput {
  const SequenceState* st;
  int32_t token;                    // t_{p+1}, the main model's token for position p+1
  const int32_t* forced = nullptr;  // [block]: Markov inputs of rows 0 … block−1 instead of the
                                    // chain [token, argmax rows 0 … block−2] (teacher forcing)
};

struct DSparkDraftOptions {
  bool keep_stage_streams = false;
  // The next id of the chain from row j of draft i ([V] logits after the Markov bias), e.g. a sampler;
  // empty = greedy (the first maximum, as torch.argmax).
  std::function<int32_t(size_t i, int j, const float* logits)> pick;
};

struct DSparkDraft {
  std::vector<float> logits;         // [block, V] after the Markov bias; row j predicts position p+2+j
  std::vector<int32_t> ids;          // [block+1]: token, then the id picked from each row
  std::vector<float> confidence;     // [block], raw (no sigmoid)
  std::vector<float> stage_streams;  // [stages, block, n, D] each stage's output, when keep_stage_streams
};

}  // namespace dsv4
