#include "kernels/quant.h"

#include <algorithm>
#include <cmath>

#include "core/dtype.h"

namespace dsv4 {

// Whole blocks, vectorised and bit-identical (quant_simd.cpp), where the block is a multiple of the
// vector length.
bool roundtrip_blocks_vectorised(size_t block);
void fp8_roundtrip_blocks(float* x, size_t nblocks, size_t block);
void fp4_roundtrip_blocks(float* x, size_t nblocks, size_t block);

namespace {
constexpr float kInv448 = 1.0f / 448.0f;
constexpr float kInv6 = 1.0f / 6.0f;

float block_amax(const float* x, size_t n) {
  float a = 0;
  for (size_t i = 0; i < n; ++i) a = std::max(a, std::fabs(x[i]));
  return a;
}
}  // namespace

// round_e4m3 for |v| <= 448 without a code in between, branch-free so the loop vectorises: below 2^-6
// the grid is 2^-9, where adding and removing 2^14 (ulp 2^-9) rounds half to even; above, the f32
// mantissa is rounded to 3 bits half to even on its bit pattern (a carry bumps the exponent).
float round_e4m3_small(float v) {
  const float a = std::fabs(v);
  const float sub = (a + 16384.0f) - 16384.0f;
  const uint32_t u = f32_to_bits(a);
  const float nor = bits_to_f32((u + 0x7FFFFu + ((u >> 20) & 1u)) & ~0xFFFFFu);
  return std::copysign(a < 0.015625f ? sub : nor, v);
}

void fp8_roundtrip(float* x, size_t n, size_t block) {
  size_t b = 0;
  if (roundtrip_blocks_vectorised(block)) {
    fp8_roundtrip_blocks(x, n / block, block);
    b = n / block * block;
  }
  for (; b < n; b += block) {
    size_t m = std::min(block, n - b);
    float s = ceil_pow2_scale(std::max(block_amax(x + b, m), 1e-4f), kInv448);
    for (size_t i = 0; i < m; ++i) x[b + i] = round_e4m3_small(std::clamp(x[b + i] / s, -448.0f, 448.0f)) * s;
  }
}

void fp4_roundtrip(float* x, size_t n, size_t block) {
  const float floor = 6.0f * std::ldexp(1.0f, -126);
  size_t b = 0;
  if (roundtrip_blocks_vectorised(block)) {
    fp4_roundtrip_blocks(x, n / block, block);
    b = n / block * block;
  }
  for (; b < n; b += block) {
    size_t m = std::min(block, n - b);
    float s = ceil_pow2_scale(std::max(block_amax(x + b, m), floor), kInv6);
    for (size_t i = 0; i < m; ++i) x[b + i] = round_e2m1(std::clamp(x[b + i] / s, -6.0f, 6.0f)) * s;
  }
}

uint8_t fp8_encode_block(const float* x, size_t n, uint8_t* codes) {
  float s = ceil_pow2_scale(std::max(block_amax(x, n), 1e-4f), kInv448);
  for (size_t i = 0; i < n; ++i) codes[i] = f32_to_e4m3(std::clamp(x[i] / s, -448.0f, 448.0f));
  int e;
  std::frexp(s, &e);  // s = 2^(e-1)
  return uint8_t(e - 1 + 127);
}

void fp8_decode_block(const uint8_t* codes, uint8_t scale, size_t n, float* out) {
  float s = e8m0_to_f32(scale);
  for (size_t i = 0; i < n; ++i) out[i] = e4m3_to_f32(codes[i]) * s;
}

}  // namespace dsv4
