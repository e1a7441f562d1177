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

// The pieces of the sublayer that other attention patterns (the DSpark draft block) reuse; x is the
// attn_norm output [rows, D] and pos[r] each row's absolute position.
// Queries (§4.8): qr = q_norm(wq_a x) [rows, q_r]; q = wq_b qr [rows, H, d], RMS per head, RoPE.
void attention_queries(const AttentionWeights& w, const ModelConfig& cfg, const Rope& rope, const float* x,
                       int64_t rows, const int64_t* pos, const NumericsOptions& opt, ThreadPool& pool, float* qr,
                       float* q);
// Window KV rows (§4.9): kv_norm(wkv x), RoPE, then the KV round-trip of the nope dims [rows, d].
void attention_kv(const AttentionWeights& w, const ModelConfig& cfg, const Rope& rope, const float* x, int64_t rows,
                  const int64_t* pos, const NumericsOptions& opt, ThreadPool& pool, float* kv);
// De-rotated head outputs o [rows, H·d] → grouped wo_a → wo_b (§4.15) into out [rows, D].
void attention_output(const AttentionWeights& w, const ModelConfig& cfg, const float* o, int64_t rows,
                      const NumericsOptions& opt, ThreadPool& pool, float* out);

}  // namespace dsv4
