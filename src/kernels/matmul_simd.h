#pragma once
// SIMD building blocks of the quantised linears, dispatched at run time (Highway). Every weight format
// is dequantised into fp32 in a fixed "kernel order" of K (natural order, except FP4 whose 2N-weight
// steps hold the N even elements, then the N odd ones), so one accumulation kernel serves all formats
// and every output element is summed in the same order for any batch size or thread count.
#include <cstddef>
#include <cstdint>

namespace dsv4 {

struct Linear;

namespace simd {

size_t lanes();                                   // N: f32 lanes of the selected target
size_t padded(int64_t k);                         // K rounded up to a multiple of N
// Writes row o of W, dequantised exactly, in kernel order, padded with zeros to padded(W.in).
void dequant_row(const Linear& W, int64_t o, float* dst);
// The same products for weight rows [o0, o1) and S tokens, dequantising in registers (decode and
// prefill); bit-identical to dequant_row followed by dot. y[o * 1 + s * ystride].
void dot_rows_fused(const Linear& W, int64_t o0, int64_t o1, const float* x, int64_t xstride, int64_t S, int64_t kp,
                    float* y, int64_t ystride);
// Copies an activation row into kernel order for W's format, zero-padded.
void order_activation(const Linear& W, const float* x, float* dst);
// y[r][s] = Σ_k w_r[k] x_s[k] over kp (a multiple of N) elements, for R dequantised rows and S
// tokens: the reference accumulation order, and the path of formats the fused kernels do not cover.
// x rows are xstride apart, results go to y[r * ystride_r + s * ystride_s].
void dot(const float* const* w, int R, const float* x, int64_t xstride, int64_t S, int64_t kp, float* y,
         int64_t ystride_r, int64_t ystride_s);
// Σ a[i] b[i] in the target's fixed lane order (deterministic for a given n and target).
float dot_f32(const float* a, const float* b, size_t n);
// y[i] += a · x[i].
void axpy(float a, const float* x, float* y, size_t n);
// Streaming read of n floats (for the bandwidth probe); returns their sum so it is not optimised away.
double stream_sum(const float* p, size_t n);
// A register-resident FMA loop seeded from sink[0] (written back); returns the flops performed
// (2 per lane per FMA).
double fma_burn(int64_t iters, float* sink);

}  // namespace simd
}  // namespace dsv4
