#pragma once
// The V4 model: embedding → hyper-connection expansion → blocks → hc_head → norm → head, plus the preview
// MTP block (architecture.md §4.1, §4.19). Sequences carry their own state; any chunking of the same
// tokens gives the same result as one prefill.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "io/config.h"
#include "io/safetensors.h"
#include "kernels/hyper_connection.h"
#include "kernels/rope.h"
#include "model/attention.h"
#include "model/dspark.h"
#include "model/expert_store.h"
#include "model/moe.h"
#include "model/forward_context.h"
#include "model/options.h"
#include "model/weights.h"

namespace dsv4 {

class ThreadPool;

// The kernel parameters of one hyper-connection (architecture.md §4.4, §4.18).
HcParams hc_params(const HcWeights& w, const ModelConfig& c);

struct BlockState {
  AttentionState attn;
};

// Everything a sequence owns is held by value (vectors and scalars, journals included), so the copy
// constructor is a full, independent snapshot: a prefix-cache entry or a fork. It costs kv_bytes()
// plus the compressor states.
struct SequenceState {
  int64_t pos = 0;                  // tokens consumed by the main model
  std::vector<BlockState> layers;
  int64_t mtp_pos = 0;
  std::vector<BlockState> mtp;      // the MTP block's own window
  int64_t dspark_pos = 0;           // positions committed to the DSpark stage rings
  std::vector<BlockState> dspark;   // one window ring per DSpark stage
  size_t kv_bytes() const;

  // Cheap rollback (speculative decoding, prefix reuse). mark() makes the current state the rollback
  // point, replacing any earlier mark, and copies nothing. While marked, forwards journal what they
  // overwrite: per layer the old bytes of each window-ring slot written (≤ min(N, window) rows for N
  // tokens) and of each compressor slot row (≤ min(N, R) rows of kv and score, indexer compressor
  // alike), plus the previous group once when an overlapping group completes. Compressed rows and
  // index keys are append-only: rollback truncates them. rollback(m) restores the state at m bit for
  // bit (main model, MTP block, DSpark rings, pos, mtp_pos and dspark_pos) and stays marked at m, so a
  // speculative step is mark, forward the draft, rollback, forward the accepted tokens; release() stops
  // journaling.
  struct Mark {
    int64_t pos = 0, mtp_pos = 0, dspark_pos = 0;
    uint64_t id = 0;        // which mark() this is; a stale one is refused
    bool main_only = false; // made inside a forward (SeqInput::mark_after): MTP and DSpark not covered
  };
  Mark mark();
  void rollback(const Mark& m);
  void release();
  bool marked() const { return mark_id != 0; }
  size_t journal_bytes() const;  // bytes the journals copied since the mark
  uint64_t mark_id = 0;          // the active mark, 0 when none
};

struct ForwardResult {
  std::vector<float> logits;        // [rows, V]: the last logit_rows positions, or every one with all_logits
  std::vector<float> final_streams; // [S, n, D] before hc_head, when keep_streams
  std::vector<float> layer_streams; // [n_layers, n, D] at the last position, when keep_layer_streams
  std::vector<std::vector<int32_t>> last_topk;  // per layer: indexer picks of the last token (CSA)
  SequenceState::Mark mark;         // with SeqInput::mark_after: the mark made inside the forward
  std::vector<float> taps;          // [S, T·D] DSpark main hidden of every row, when keep_taps
};

struct ForwardOptions {
  bool all_logits = false;
  bool keep_streams = false;
  bool keep_layer_streams = false;
  bool keep_taps = false;  // DSpark checkpoints: the stream means after the target layers (architecture.md §4.20)
};

class Model {
 public:
  Model(const std::string& dir, const NumericsOptions& opt = {});
  Model(const Model&) = delete;  // views and the expert store point into it
  Model& operator=(const Model&) = delete;
  const ModelConfig& config() const { return cfg_; }
  const ModelWeights& weights() const { return w_; }
  const Checkpoint& checkpoint() const { return *ckpt_; }
  const NumericsOptions& numerics() const { return opt_; }
  bool has_mtp() const { return w_.mtp != nullptr; }
  bool has_dspark() const { return w_.dspark != nullptr; }
  // Where routed experts come from (default: the memory map). Null restores the default.
  void set_expert_store(std::shared_ptr<ExpertStore> s);
  ExpertStore& expert_store() const { return *experts_; }
  // Other processes that compute the routed experts this one does not own (expert parallel); null:
  // every expert is local.
  void set_expert_peers(std::shared_ptr<ExpertPeers> p) { peers_ = std::move(p); }
  ExpertPeers* expert_peers() const { return peers_.get(); }
  // A peer's side: runs jobs of `layer`'s experts from this model's store, as moe_forward would.
  void run_experts(int layer, const ExpertJobs& jobs, int64_t n_bound) const;

  // Window rings and compressor slots have fixed sizes; compressed entries and index keys grow with
  // the sequence. reserve_positions > 0 (the context limit, when the caller knows it) reserves their
  // room up front, so no append up to it allocates: address space only, pages are touched as they
  // fill. Without it they grow geometrically (std::vector), a reallocation every doubling. A copy
  // (snapshot) holds only what is used and grows geometrically again.
  SequenceState new_sequence(int64_t reserve_positions = 0) const;

  struct SeqInput {
    SequenceState* st;
    const int32_t* ids;
    int64_t S;
    // ≥ 0: mark the main model's state after the first mark_after tokens (replacing any mark), so
    // one forward can re-feed accepted tokens and verify new drafts, then roll back to the drafts'
    // start (ForwardResult::mark).
    int64_t mark_after = -1;
    int64_t logit_rows = 1;   // trailing rows whose logits are returned (without all_logits)
    bool keep_streams = false;  // this sequence's final streams (as ForwardOptions::keep_streams)
  };
  // Consumes each sequence's ids at positions st.pos .. st.pos+S-1 (a prefill, a chunk, or a decode
  // step); all sequences share every matrix product. Results follow the input order.
  std::vector<ForwardResult> forward_batch(const std::vector<SeqInput>& in, const ForwardOptions& fo = {}) const;
  // The same into `out`, whose vectors are reused: once a step of some shape has run, the next one
  // allocates nothing (tests/model/test_no_alloc.cpp).
  void forward_batch(const std::vector<SeqInput>& in, std::vector<ForwardResult>& out, const ForwardOptions& fo = {}) const;
  ForwardResult forward(SequenceState& st, const int32_t* ids, int64_t S, const ForwardOptions& fo = {}) const {
    return std::move(forward_batch({{&st, ids, S}}, fo)[0]);
  }

  struct MtpInput {
    SequenceState* st;
    const float* main_streams;  // [S, n, D]: the main model's final streams at t
    const int32_t* next_ids;    // tokens t+1
    int64_t S;
    std::vector<float>* last_streams = nullptr;  // receives the block's output streams of the last row [n, D]
  };
  // MTP at positions st.mtp_pos ..; returns each sequence's last-row logits [V].
  std::vector<std::vector<float>> mtp_forward_batch(const std::vector<MtpInput>& in) const;
  void mtp_forward_batch(const std::vector<MtpInput>& in, std::vector<std::vector<float>>& out) const;  // reuses out
  std::vector<float> mtp_forward(SequenceState& st, const float* main_streams, const int32_t* next_ids,
                                 int64_t S) const {
    return std::move(mtp_forward_batch({{&st, main_streams, next_ids, S}})[0]);
  }

  // DSpark draft head (model/dspark.h, architecture.md §4.20). commit writes the main KV of positions
  // st.dspark_pos .. +S-1 into every stage ring from their taps; draft reads the rings and changes nothing.
  void dspark_commit_batch(const std::vector<DSparkCommit>& in) const;
  void dspark_commit(SequenceState& st, const float* taps, int64_t S) const { dspark_commit_batch({{&st, taps, S}}); }
  std::vector<DSparkDraft> dspark_draft_batch(const std::vector<DSparkDraftInput>& in,
                                              const DSparkDraftOptions& o = {}) const;
  DSparkDraft dspark_draft(const SequenceState& st, int32_t token, const DSparkDraftOptions& o = {}) const {
    return std::move(dspark_draft_batch({{&st, token}}, o)[0]);
  }

 private:
  void block_forward(const BlockWeights& b, std::span<BlockState* const> states, Segments segs, float* X,
                     const int32_t* ids, const Picks* topk, const BlockWeights* next, const ForwardContext& fc) const;
  const DSparkWeights& dspark_weights() const;  // fails clearly without a draft head
  // Writes the stream means of every row into res[i].taps when block `layer` is a DSpark target.
  void keep_taps(int layer, const float* X, Segments segs, std::vector<ForwardResult>& res) const;
  void prefetch_hash_experts(const int32_t* ids, size_t n) const;
  // logits [rows, V] of the streams X [rows, n, D].
  void head_logits(const HcWeights& hc, const FloatVec& norm, const float* X, int64_t rows, const ForwardContext& fc,
                   float* logits) const;
  // The global pool is looked up per call: its size may change (--threads, tests).
  ThreadPool& pool() const;
  ForwardContext context() const;

  std::unique_ptr<Checkpoint> ckpt_;
  ModelConfig cfg_;
  ModelWeights w_;
  NumericsOptions opt_;
  Rope rope_window_, rope_compressed_;
  std::shared_ptr<ExpertStore> experts_;
  std::shared_ptr<ExpertPeers> peers_;
};

}  // namespace dsv4
