#pragma once
// One attention sublayer (architecture.md §4.8–4.15): low-rank Q with per-head RMS, one shared latent KV row per
// token, a sliding window ring, compressed entries (CSA via the indexer, HCA all), sink softmax,
// de-rotation and the grouped low-rank output projection.
#include <cstdint>
#include <vector>

#include "io/config.h"
#include "model/batch.h"
#include "model/compressor.h"
#include "model/indexer.h"
#include "model/kv_cache.h"
#include "model/options.h"
#include "model/weights.h"

namespace dsv4 {

class Rope;
class ThreadPool;

struct AttentionState {
  KVRows ring;           // window ring, slot = t mod window
  KVRows compressed;     // compressed entries (compressed kinds), entry j at row j
  CompressorState comp;  // main compressor
  IndexerState indexer;  // CSA only
  void reset(const AttentionWeights& w, const ModelConfig& cfg, const NumericsOptions& opt);
  // Rollback (SequenceState::mark): each part journals or truncates itself.
  void mark();
  void rollback();
  void release();
  size_t journal_bytes() const;
};

// x: attn_norm output [rows, D] of the segments' rows; one state per segment; out: [rows, D].
// When topk_out is given it receives the indexer's picks per row (CSA layers).
void attention_forward(const AttentionWeights& w, const std::vector<AttentionState*>& states,
                       const std::vector<Segment>& segs, const ModelConfig& cfg, const Rope& rope, const float* x,
                       const NumericsOptions& opt, ThreadPool& pool, float* out,
                       std::vector<std::vector<int32_t>>* topk_out = nullptr);

}  // namespace dsv4
