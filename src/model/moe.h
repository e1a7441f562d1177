#pragma once
// Mixture of experts (architecture.md §4.16–4.17): sqrtsoftplus gate, hash or bias-corrected top-k routing,
// SwiGLU experts with the clamp, routed sum in ascending expert id, then the shared expert.
#include <cstdint>
#include <vector>

#include "io/config.h"
#include "model/expert_peers.h"
#include "model/expert_store.h"
#include "model/forward_context.h"
#include "model/options.h"
#include "model/weights.h"

namespace dsv4 {

class ThreadPool;

struct Routing {  // in the caller's arena
  int32_t* experts;  // [S, k]
  float* weights;    // [S, k], normalised and scaled
};

// x: ffn_norm output [S, D]; ids: the tokens (hash routing reads the current token).
Routing moe_route(const MoeWeights& w, const float* x, const int32_t* ids, int64_t S, const ForwardContext& fc);
// The layer's place in the forward: where its experts come from, its id there, the next block's
// MoE, whose gate predicts what a streaming store should prefetch, and the processes that compute
// the experts this one does not own (null: all are local).
struct MoeContext {
  ExpertStore& store;
  int layer = 0;
  const MoeWeights* next = nullptr;
  int next_layer = -1;
  ExpertPeers* peers = nullptr;
};
void moe_forward(const MoeWeights& w, const MoeContext& mc, const float* x, const int32_t* ids, int64_t S,
                 const ForwardContext& fc, float* out);
// The ascending distinct expert ids of n routed picks.
std::vector<int32_t> distinct_experts(const int32_t* routed, size_t n, int n_experts);
inline std::vector<int32_t> distinct_experts(const std::vector<int32_t>& routed, int n_experts) {
  return distinct_experts(routed.data(), routed.size(), n_experts);
}

// Expert jobs of one layer: job j runs expert[j] over the count[expert[j]] rows of xs starting at
// start[j], with their routing weights scale, into the same rows of ys.
struct ExpertJobs {
  const int32_t* expert;
  const int64_t* start;
  const int64_t* count;  // indexed by expert id
  size_t n;
  const float* xs;
  const float* scale;
  float* ys;
};
// Runs the jobs with the experts of `store`, in waves of what it can pin at once. n_bound bounds the
// rows of any job (the scratch a thread reserves), so how tokens are routed never moves a later take.
void run_expert_jobs(const MoeWeights& w, ExpertStore& store, int layer, const ExpertJobs& jobs, int64_t n_bound,
                     const ForwardContext& fc);

// One SwiGLU expert over S rows: out = w2(bf16-free h) with h = silu(min(g, L)) · clamp(u, ±L) · scale_s.
// Its scratch comes from the calling thread's arena; expert_scratch_bytes(e, S) bounds it.
void expert_forward(const ExpertWeights& e, const float* x, int64_t S, const float* row_scale, float limit,
                    bool act_quant, ThreadPool& pool, float* out);
size_t expert_scratch_bytes(const ExpertWeights& e, int64_t S, bool act_quant);

}  // namespace dsv4
