#pragma once
#include <cstddef>
#include <cstdint>

namespace dsv4 {

// Sparse attention with a sink for one head (architecture.md §4.14): z_k = scale·⟨q, kv_k⟩ over n rows
// (each `dim` wide, used as both K and V), m = max z (sink excluded), den = Σ exp(z−m) + exp(sink−m),
// out = Σ exp(z−m) kv_k / den. n == 0 gives out = 0.
void sink_attention(const float* q, const float* const* rows, int32_t n, int dim, float scale, float sink,
                    float* out);
// The same with caller scratch z of n floats (no allocation).
void sink_attention(const float* q, const float* const* rows, int32_t n, int dim, float scale, float sink,
                    float* out, float* z);
// sink_attention for `heads` query heads (q and out: heads × dim) that read the same rows, with
// sinks[h]; bit-identical to one sink_attention call per head, but each row is read once per block
// of heads.
void sink_attention_heads(const float* q, int heads, const float* const* rows, int32_t n, int dim, float scale,
                          const float* sinks, float* out);
// The same with caller scratch of sink_attention_scratch(n) floats, so a decode step allocates nothing.
void sink_attention_heads(const float* q, int heads, const float* const* rows, int32_t n, int dim, float scale,
                          const float* sinks, float* out, float* scratch);
size_t sink_attention_scratch(int32_t n);

}  // namespace dsv4
