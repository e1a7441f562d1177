#pragma once
// The V4 model: embedding → hyper-connection expansion → blocks → hc_head → norm → head (spec §4.1),
// plus the preview MTP block (§4.19). Sequences carry their own state; any chunking of the same tokens
// gives the same result as one prefill.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/config.h"
#include "io/safetensors.h"
#include "kernels/rope.h"
#include "model/attention.h"
#include "model/options.h"
#include "model/weights.h"

namespace dsv4 {

class ThreadPool;

struct BlockState {
  AttentionState attn;
};

struct SequenceState {
  int64_t pos = 0;                  // tokens consumed by the main model
  std::vector<BlockState> layers;
  int64_t mtp_pos = 0;
  std::vector<BlockState> mtp;      // the MTP block's own window
  size_t kv_bytes() const;
};

struct ForwardResult {
  std::vector<float> logits;        // [rows, V]: the last position, or every position with all_logits
  std::vector<float> final_streams; // [S, n, D] before hc_head, when keep_streams
  std::vector<float> layer_streams; // [n_layers, n, D] at the last position, when keep_layer_streams
  std::vector<std::vector<int32_t>> last_topk;  // per layer: indexer picks of the last token (CSA)
};

struct ForwardOptions {
  bool all_logits = false;
  bool keep_streams = false;
  bool keep_layer_streams = false;
};

class Model {
 public:
  Model(const std::string& dir, const NumericsOptions& opt = {});
  const ModelConfig& config() const { return cfg_; }
  const ModelWeights& weights() const { return w_; }
  const Checkpoint& checkpoint() const { return *ckpt_; }
  const NumericsOptions& numerics() const { return opt_; }
  bool has_mtp() const { return w_.mtp != nullptr; }

  SequenceState new_sequence() const;
  // Consumes ids at positions state.pos .. state.pos+S-1 (a prefill, a chunk of one, or a decode step).
  ForwardResult forward(SequenceState& st, const int32_t* ids, int64_t S, const ForwardOptions& fo = {}) const;
  // MTP at positions state.mtp_pos ..: main final streams [S, n, D] at t with ids of tokens t+1.
  std::vector<float> mtp_forward(SequenceState& st, const float* main_streams, const int32_t* next_ids,
                                 int64_t S) const;

 private:
  void block_forward(const BlockWeights& b, BlockState& st, float* X, const int32_t* ids, int64_t S, int64_t p0,
                     std::vector<int32_t>* last_topk) const;
  std::vector<float> head_logits(const HcWeights& hc, const FloatVec& norm, const float* X, int64_t rows) const;
  // The global pool is looked up per call: its size may change (--threads, tests).
  ThreadPool& pool() const;
  const Rope& rope_for(int ratio) const { return ratio > 0 ? rope_compressed_ : rope_window_; }

  std::unique_ptr<Checkpoint> ckpt_;
  ModelConfig cfg_;
  ModelWeights w_;
  NumericsOptions opt_;
  Rope rope_window_, rope_compressed_;
};

}  // namespace dsv4
