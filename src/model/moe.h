#pragma once
// Mixture of experts (architecture.md §4.16–4.17): sqrtsoftplus gate, hash or bias-corrected top-k routing,
// SwiGLU experts with the clamp, routed sum in ascending expert id, then the shared expert.
#include <cstdint>
#include <vector>

#include "io/config.h"
#include "model/options.h"
#include "model/weights.h"

namespace dsv4 {

class ThreadPool;

struct Routing {
  std::vector<int32_t> experts;  // [S, k]
  std::vector<float> weights;    // [S, k], normalised and scaled
};

// x: ffn_norm output [S, D]; ids: the tokens (hash routing reads the current token).
Routing moe_route(const MoeWeights& w, const ModelConfig& cfg, const float* x, const int32_t* ids, int64_t S,
                  ThreadPool& pool);
void moe_forward(const MoeWeights& w, const ModelConfig& cfg, const float* x, const int32_t* ids, int64_t S,
                 const NumericsOptions& opt, ThreadPool& pool, float* out);

// One SwiGLU expert over S rows: out = w2(bf16-free h) with h = silu(min(g, L)) · clamp(u, ±L) · scale_s.
void expert_forward(const ExpertWeights& e, const float* x, int64_t S, const float* row_scale, float limit,
                    bool act_quant, ThreadPool& pool, float* out);

}  // namespace dsv4
