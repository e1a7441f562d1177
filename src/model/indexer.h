#pragma once
// The lightning indexer of CSA layers (architecture.md §4.13): scores every visible compressed entry for each
// query and keeps the top-k.
#include <cstdint>
#include <span>
#include <vector>

#include "io/config.h"
#include "model/batch.h"
#include "model/compressor.h"
#include "model/forward_context.h"
#include "model/options.h"

namespace dsv4 {

struct IndexerState {
  CompressorState comp;
  std::vector<float> keys;  // [n_entries, index_head_dim], after Hadamard and the FP4 round-trip
  void reset(const IndexerWeights& w) {
    comp.reset(w.comp);
    keys.clear();
  }
  // Entries the keys hold before an append reallocates (the bound of a row's scores).
  size_t key_capacity(int dI) const { return keys.capacity() / size_t(dI); }
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

// The indexer's choice for each row of a batch: row r picked n[r] entry ids, ids[r·K ..], K = index_topk.
struct Picks {
  int32_t* ids = nullptr;
  int32_t* n = nullptr;
  int K = 0;
  static Picks take(Arena& a, int64_t rows, int K) { return {a.take<int32_t>(size_t(rows) * size_t(K)), a.take<int32_t>(size_t(rows)), K}; }
  const int32_t* row(int64_t r) const { return ids + r * K; }
};

// x: attn_norm output [rows, D]; qr: q_norm output [rows, q_lora_rank]; one state per segment.
// Writes, per row, the chosen entry ids in descending score order (ties: lower id first),
// k_t = min(index_topk, ⌊(t+1)/4⌋), into `out` ([rows] of index_topk).
void indexer_forward(const IndexerWeights& w, std::span<IndexerState* const> states, Segments segs, const float* x,
                     const float* qr, const ForwardContext& fc, const Picks& out);

}  // namespace dsv4
