#pragma once
// The three quantisation round-trips of the numerics contract (architecture.md §3.2, fixtures README §6).
#include <cstddef>
#include <cstdint>

namespace dsv4 {

// Rule 1/2: in-place FP8 e4m3 round-trip per block along a row: s = ceil-pow2(max(amax,1e-4)/448),
// x = e4m3(clamp(x/s, ±448)) * s. Activations use 128-wide blocks, KV nope dims 64-wide blocks.
void fp8_roundtrip(float* x, size_t n, size_t block);
// round_e4m3(v) for |v| <= 448 (the fast path of fp8_roundtrip).
float round_e4m3_small(float v);
// Rule 3: in-place FP4 e2m1 round-trip in 32-wide blocks, s = ceil-pow2(max(amax, 6*2^-126)/6).
void fp4_roundtrip(float* x, size_t n, size_t block = 32);

// FP8 encode of one block (codes + E8M0 scale byte) and decode; encode∘decode equals fp8_roundtrip.
uint8_t fp8_encode_block(const float* x, size_t n, uint8_t* codes);
void fp8_decode_block(const uint8_t* codes, uint8_t scale, size_t n, float* out);

}  // namespace dsv4
