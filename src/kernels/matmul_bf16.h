#pragma once
// Quantised linears on BF16 dot products (x86 AVX512_BF16: vdpbf16ps). Every FP8 and FP4 weight,
// and every activation that went through the FP8 round trip, is exact in BF16, and the product of
// two BF16 numbers is exact in fp32: only the order of the fp32 additions differs from the fp32 FMA
// path. That order is fixed here, the same for every batch size, row split and thread count:
//   kernel order: FP8 natural; FP4 in 64-element steps, the 32 even elements then the 32 odd ones;
//   per 32 kernel-order elements, lane i (of 16) adds x[2i+1]·w[2i+1], then x[2i]·w[2i];
//   at the end the 16 lanes fold in halves: l[i] + l[i+8], then +4, +2, +1.
// reference_rows is that order written in scalar code. The hardware flushes subnormal inputs and
// results to zero, which only products below 2^-126 reach (far outside real checkpoints' scales).
#include <cstdint>

namespace dsv4 {

struct Linear;

namespace bf16dot {

// The CPU executes AVX512_BF16 dot products.
bool supported();
// Whether matmul takes this path for every covered linear whose activations went through the round
// trip, decided once: DSV4_DOT=bf16 or fp32 forces it (where supported); otherwise (auto) on CPUs
// where the dot products outrun fp32 FMAs.
bool available();
// W's format and shape are covered: FP8 with K a multiple of 32, FP4 (E8M0 scales) with K a
// multiple of 64. Other linears stay on the fp32 path.
bool covers(const Linear& W);
// BF16 bits of activation row x (each value exact in BF16) in W's kernel order.
void order_activation(const Linear& W, const float* x, uint16_t* dst);
// y[o + s·ys] = W[o] · x_s for rows [o0, o1) and S tokens; x_s at x + s·xs in kernel order.
void rows(const Linear& W, int64_t o0, int64_t o1, const uint16_t* x, int64_t xs, int64_t S, float* y, int64_t ys);
// The same sums in scalar code (tests).
void reference_rows(const Linear& W, int64_t o0, int64_t o1, const uint16_t* x, int64_t xs, int64_t S, float* y,
                    int64_t ys);
// A register-resident vdpbf16ps loop (the roof of this path); returns the flops performed, 4 per
// fp32 lane per instruction. 0 where unsupported.
double burn(int64_t iters, float* sink);

}  // namespace bf16dot
}  // namespace dsv4
