#pragma once
// The KV compressor (architecture.md §4.11–4.12): every R consecutive tokens pool into one entry through a
// per-channel softmax over slots; ratio 4 overlaps each group with the previous one.
#include <cstdint>
#include <vector>

#include "model/forward_context.h"
#include "model/kv_cache.h"
#include "model/weights.h"

namespace dsv4 {

class Rope;
class ThreadPool;

struct CompressorState {
  std::vector<float> kv, score;            // [R, width]: rows of the incomplete group (score includes ape)
  std::vector<float> prev_kv, prev_score;  // [R, width]: last complete group (overlap only)
  bool has_prev = false;

  void reset(const CompressorWeights& w);

  // Rollback (SequenceState::mark). While marked, compressor_forward saves each slot row before its
  // first overwrite and the previous group before its first replacement, so undoing N tokens copies
  // min(N, R) rows of kv and score plus, if a group completed, one previous group; mark() copies nothing.
  void mark();
  void rollback();  // to the state at mark(), bit for bit; stays marked
  void release();
  size_t journal_bytes() const;
  void before_slot_write(int slot, int width);  // called by compressor_forward
  void before_prev_replace();

 private:
  RowJournal kv_undo_, score_undo_;
  bool prev_saved_ = false, saved_has_prev_ = false;
  std::vector<float> saved_prev_kv_, saved_prev_score_;
};

// The projections a = wkv·x and g = wgate·x of a batch of rows ([rows, width] each), taken from fc.arena.
struct CompressorInput {
  float* a;
  float* g;
};
CompressorInput compressor_project(const CompressorWeights& w, const float* x, int64_t rows, const ForwardContext& fc);

// The most entries S consecutive tokens can complete: the room compressor_forward needs.
inline int64_t max_entries(int64_t S, int ratio) { return (S + ratio - 1) / ratio; }

// Feeds the rows of one sequence, positions p0 .. p0+S-1 (a, g point at its first row). Each completed
// group j is pooled and post-processed (RMSNorm, RoPE at position j·R) into the next row of `entries`
// ([max_entries(S, R), d_c]) with its id in `ids`; returns how many. With mark_at ≥ 0 the state is
// marked at that absolute position (Segment::mark_at); entries emitted before it are those whose id j
// has (j+1)·R ≤ mark_at.
size_t compressor_forward(const CompressorWeights& w, CompressorState& st, const float* a, const float* g, int64_t S,
                          int64_t p0, const Rope& rope, float norm_eps, float* entries, int64_t* ids,
                          int64_t mark_at = -1);

// How many of the n entries `ids` (ascending, as compressor_forward emits them) complete before position pos.
size_t entries_before(const int64_t* ids, size_t n, int ratio, int64_t pos);

// The pooling of one group alone (exposed for kernel tests): e[ch] over the slots of `st` after the
// group's R rows were written.
void compressor_pool(const CompressorWeights& w, const CompressorState& st, float* e);

}  // namespace dsv4
