#pragma once
#include <cstdint>

namespace dsv4 {

// Sparse attention with a sink for one head (spec §4.14): z_k = scale·⟨q, kv_k⟩ over n rows
// (each `dim` wide, used as both K and V), m = max z (sink excluded), den = Σ exp(z−m) + exp(sink−m),
// out = Σ exp(z−m) kv_k / den. n == 0 gives out = 0.
void sink_attention(const float* q, const float* const* rows, int32_t n, int dim, float scale, float sink,
                    float* out);

}  // namespace dsv4
