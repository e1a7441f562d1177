#pragma once
// One attention sublayer (architecture.md §4.8–4.15): low-rank Q with per-head RMS, one shared latent KV row per
// token, a sliding window ring, compressed entries (CSA via the indexer, HCA all), sink softmax,
// de-rotation and the grouped low-rank output projection.
#include <cstdint>
#include <span>
#include <vector>

#include "io/config.h"
#include "model/batch.h"
#include "model/compressor.h"
#include "model/forward_context.h"
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
  // reserve_positions > 0: room for that many positions of compressed entries and index keys, so
  // appends up to there allocate nothing (SequenceState's growth rule, model/transformer.h).
  void reset(const AttentionWeights& w, const ModelConfig& cfg, const NumericsOptions& opt, int64_t reserve_positions = 0);
  // Rollback (SequenceState::mark): each part journals or truncates itself.
  void mark();
  void rollback();
  void release();
  size_t journal_bytes() const;
};

// x: attn_norm output [rows, D] of the segments' rows; one state per segment; out: [rows, D].
// When topk_out is given (storage for [rows] of index_topk) it receives the indexer's picks per row
// (CSA layers).
void attention_forward(const AttentionWeights& w, std::span<AttentionState* const> states, Segments segs,
                       const float* x, const ForwardContext& fc, float* out, const Picks* topk_out = nullptr);

// The pieces of the sublayer that other attention patterns (the DSpark draft block) reuse; x is the
// attn_norm output [rows, D] and pos[r] each row's absolute position.
// Queries (§4.8): qr = q_norm(wq_a x) [rows, q_r]; q = wq_b qr [rows, H, d], RMS per head, RoPE.
void attention_queries(const AttentionWeights& w, const float* x, int64_t rows, const int64_t* pos,
                       const ForwardContext& fc, float* qr, float* q);
// Window KV rows (§4.9): kv_norm(wkv x), RoPE, then the KV round-trip of the nope dims [rows, d].
void attention_kv(const AttentionWeights& w, const float* x, int64_t rows, const int64_t* pos,
                  const ForwardContext& fc, float* kv);
// De-rotated head outputs o [rows, H·d] → grouped wo_a → wo_b (§4.15) into out [rows, D].
void attention_output(const AttentionWeights& w, const float* o, int64_t rows, const ForwardContext& fc, float* out);

}  // namespace dsv4
