#pragma once
// Numeric kernels of the ggml block-quantised weight formats (core/block_format.h): decode, encode and
// fused dot products over rows stored in the GGUF byte layouts, so tensors of llama.cpp files map in
// place. Every kernel keeps k in natural order; the SIMD kernels give one fixed accumulation order per
// output (lane-wise accumulators over k, folded once), whatever the row split or the token count.
#include <cstdint>

#include "core/block_format.h"

namespace dsv4::blocks {

// Scalar reference decode of one row of k weights (k a multiple of the block size) in natural order.
void dequant_row_ref(BlockFormat f, const uint8_t* row, int64_t k, float* dst);
// SIMD decode: bit-identical values to dequant_row_ref.
void dequant_row(BlockFormat f, const uint8_t* row, int64_t k, float* dst);
// Encodes one row; imp (k floats, may be null) weights each column's squared error: the scales and
// mins are chosen to minimise Σ imp[k]·(w−ŵ)² (llama.cpp imatrix semantics; null means all ones).
// Throws for a format with no quantizer.
void quantize_row(BlockFormat f, const float* src, int64_t k, const float* imp, uint8_t* dst);
bool can_quantize(BlockFormat f);

// y[o + s * ystride] = Σ_k W[o,k]·x[s,k] for weight rows [o0, o1) of a matrix whose row r starts at
// w + r * block_row_bytes(f, k), and S activation rows x + s * xstride (fp32, natural order); fp32
// accumulation, dequantising in registers. Each output is bit-identical for any o0/o1 split and any S.
void dot_rows(BlockFormat f, const uint8_t* w, int64_t k, int64_t o0, int64_t o1, const float* x, int64_t xstride,
              int64_t S, float* y, int64_t ystride);
// The same sums in plain scalar double (from dequant_row_ref), for tests.
void dot_rows_ref(BlockFormat f, const uint8_t* w, int64_t k, int64_t o0, int64_t o1, const float* x,
                  int64_t xstride, int64_t S, float* y, int64_t ystride);

// Format facts shared by the scalar and SIMD code.
namespace detail {
uint16_t f32_to_f16(float f);  // round to nearest even, overflow to ±inf
// 2^(e-128): ggml's MXFP4 scale (its value table is doubled); inline, as the decoders call it per block.
inline float e8m0_half(uint8_t e) {
  const uint32_t u = e < 2 ? 0x00200000u << e : uint32_t(e - 1) << 23;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}
extern const int8_t kMxfp4Values[16];   // e2m1 × 2
extern const uint64_t kIq2xxsGrid[256];  // 8 magnitudes per entry, byte j = element j
extern const uint8_t kIq2Signs[128];     // 7 sign bits + the even-parity eighth
extern const uint64_t kIq2SignMask[128];  // kIq2Signs as byte masks: 0xFF where element j is negative
// Q4_K / Q5_K: the 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes.
inline void scale_min_k4(int j, const uint8_t* q, uint8_t& sc, uint8_t& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = uint8_t((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    m = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}
// Q3_K: the signed 6-bit scale of sub-block j (0..15), minus its offset 32.
inline int q3k_scale(int j, const uint8_t* s) {
  const int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
  const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
  return (lo | (hi << 4)) - 32;
}
}  // namespace detail

}  // namespace dsv4::blocks
