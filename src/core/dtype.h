#pragma once
// Storage dtypes of V4 checkpoints and the scalar codecs of the numerics contract (architecture.md §3).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace dsv4 {

enum class DType { BF16, F16, F32, F64, I64, I32, I16, I8, U8, BOOL, F8_E4M3, F8_E8M0 };

size_t dtype_size(DType t);
std::string_view dtype_name(DType t);
// Parses a safetensors dtype string; returns false for unknown names.
bool parse_dtype(std::string_view s, DType& out);

inline float bits_to_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t f32_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float bf16_to_f32(uint16_t h) { return bits_to_f32(uint32_t(h) << 16); }
inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);                                          // round to nearest even
  return uint16_t(u >> 16);
}
inline float round_bf16(float f) { return bf16_to_f32(f32_to_bf16(f)); }

float f16_to_f32(uint16_t h);

// E8M0: 2^(b-127); b = 255 is NaN.
inline float e8m0_to_f32(uint8_t b) {
  if (b == 255) return NAN;
  if (b == 0) return bits_to_f32(0x00400000u);  // 2^-127, a subnormal
  return bits_to_f32(uint32_t(b) << 23);
}

// FP8 e4m3fn decode through a 256-entry table.
extern const float kE4M3Table[256];
inline float e4m3_to_f32(uint8_t c) { return kE4M3Table[c]; }
// Round to nearest even into e4m3fn, saturating at ±448 (NaN stays NaN).
uint8_t f32_to_e4m3(float x);
inline float round_e4m3(float x) { return e4m3_to_f32(f32_to_e4m3(x)); }

// FP4 e2m1: code c, bit 3 = sign; magnitudes {0, .5, 1, 1.5, 2, 3, 4, 6}.
extern const float kE2M1Table[16];
inline float e2m1_to_f32(uint8_t c) { return kE2M1Table[c & 15]; }
// Round to nearest, ties to the even code, saturating at ±6.
uint8_t f32_to_e2m1(float x);
inline float round_e2m1(float x) { return e2m1_to_f32(f32_to_e2m1(x)); }

// Ceil-pow2 scale rule (architecture.md §3.1): a = amax * fp32(1/qmax), s = 2^ceil(log2 a) from a's bit fields.
inline float ceil_pow2_scale(float amax, float inv_qmax) {
  float a = amax * inv_qmax;
  uint32_t u = f32_to_bits(a);
  int e = int((u >> 23) & 0xff);
  uint32_t m = u & 0x7fffffu;
  int exp = e - 127 + (m != 0 ? 1 : 0);
  return std::ldexp(1.0f, exp);
}

}  // namespace dsv4
