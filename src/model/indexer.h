#pragma once
// The lightning indexer of CSA layers (architecture.md §4.13): scores every visible compressed entry for each
// query and keeps the top-k.
#include <cstdint>
#include <vector>

#include "io/config.h"
#include "model/batch.h"
#include "model/compressor.h"
#include "model/options.h"

namespace dsv4 {

struct IndexerState {
  CompressorState comp;
  std::vector<float> keys;  // [n_entries, index_head_dim], after Hadamard and the FP4 round-trip
  void reset(const IndexerWeights& w) {
    comp.reset(w.comp);
    keys.clear();
  }
  // Rollback (SequenceState::mark): keys are append-only, so the mark is their count and rollback
  // truncates; the compressor journals its own rows.
  size_t keys_at_mark = 0;
  void mark() {
    comp.mark();
    keys_at_mark = keys.size();
  }
  void rollback() {
    comp.rollback();
    keys.resize(keys_at_mark);
  }
  void release() { comp.release(); }
};

// x: attn_norm output [rows, D]; qr: q_norm output [rows, q_lora_rank]; one state per segment.
// Returns, per row, the chosen entry ids in descending score order (ties: lower id first),
// k_t = min(index_topk, ⌊(t+1)/4⌋).
std::vector<std::vector<int32_t>> indexer_forward(const IndexerWeights& w, const std::vector<IndexerState*>& states,
                                                  const std::vector<Segment>& segs, const ModelConfig& cfg,
                                                  const float* x, const float* qr, const Rope& rope,
                                                  const NumericsOptions& opt, ThreadPool& pool);

}  // namespace dsv4
