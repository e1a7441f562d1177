#pragma once
// Scalar reference numerics written straight from the format definitions (docs/architecture.md §3.1–§3.2,
// fixtures/README.md §6), independent of src/. Slow on purpose: encoders search the whole code grid
// for the nearest value and break ties by the even code, decoders evaluate the format formulas.
// Shared by tests/core and tests/kernels (header only, no dependency on the engine).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace dsv4_ref {

// ---- FP8 e4m3fn: sign, 4 exponent bits (bias 7), 3 mantissa bits; S.1111.111 = NaN; max 448. ----
inline double e4m3_decode(uint8_t c) {
  const int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
  if (e == 15 && m == 7) return std::numeric_limits<double>::quiet_NaN();
  double mag = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
  return s ? -mag : mag;
}

// Round to nearest, ties to the even code, saturating at ±448; NaN → NaN code; sign kept (−0 → 0x80).
inline uint8_t e4m3_encode(double x) {
  if (std::isnan(x)) return 0x7f;
  const uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  const double a = std::fabs(x);
  int best = 0;
  double bestd = std::numeric_limits<double>::infinity();
  for (int c = 0; c < 0x7f; ++c) {  // 0x00..0x7e are the non-negative finite codes, increasing
    const double d = std::fabs(e4m3_decode(uint8_t(c)) - a);
    if (d < bestd || (d == bestd && (c & 1) == 0)) {
      bestd = d;
      best = c;
    }
  }
  return uint8_t(sign | best);
}

// ---- FP4 e2m1: c & 7 → {0, .5, 1, 1.5, 2, 3, 4, 6}, bit 3 = sign. ----
inline double e2m1_decode(uint8_t c) {
  static const double mag[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  const double v = mag[c & 7];
  return (c & 8) ? -v : v;
}
inline uint8_t e2m1_encode(double x) {
  const uint8_t sign = std::signbit(x) ? 8 : 0;
  const double a = std::fabs(x);
  int best = 0;
  double bestd = std::numeric_limits<double>::infinity();
  for (int c = 0; c < 8; ++c) {
    const double d = std::fabs(e2m1_decode(uint8_t(c)) - a);
    if (d < bestd || (d == bestd && (c & 1) == 0)) {
      bestd = d;
      best = c;
    }
  }
  return uint8_t(sign | best);
}

// ---- E8M0: 2^(b−127); 255 = NaN. ----
inline double e8m0_decode(uint8_t b) {
  if (b == 255) return std::numeric_limits<double>::quiet_NaN();
  return std::ldexp(1.0, int(b) - 127);
}

// ---- bf16: keep the top 16 bits of the fp32 pattern, round to nearest even by value. ----
inline float bf16_bits_to_float(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint16_t bf16_encode(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if (std::isnan(f)) return uint16_t((u >> 16) | 0x40);
  const uint16_t lo = uint16_t(u >> 16);  // truncation (toward zero in magnitude)
  const uint16_t hi = uint16_t(lo + 1);   // next magnitude up (may become inf, which is fine)
  const double a = std::fabs(double(bf16_bits_to_float(lo)) - double(f));
  const double hv = std::isinf(bf16_bits_to_float(hi)) ? std::copysign(std::ldexp(1.0, 128), double(f))
                                                        : double(bf16_bits_to_float(hi));
  const double b = std::fabs(hv - double(f));  // past the largest finite value RNE goes to ±inf
  if ((u & 0xffffu) == 0) return lo;
  if (a < b) return lo;
  if (b < a) return hi;
  return (lo & 1) ? hi : lo;
}

// ---- Ceil-pow2 scale rule (architecture.md §3.1): a = fp32(amax · fp32(1/Q));
//      s = 2^(e−127+[m≠0]) from a's fields. ----
inline float ceil_pow2(float amax, float inv_q) {
  const float a = amax * inv_q;  // the fp32 multiply is part of the rule
  uint32_t u;
  std::memcpy(&u, &a, 4);
  const int e = int((u >> 23) & 0xff);
  const bool m = (u & 0x7fffffu) != 0;
  return float(std::ldexp(1.0, e - 127 + (m ? 1 : 0)));
}

// ---- architecture.md §3.2 round-trips on one vector, blocks along it (last block may be partial). ----
inline std::vector<float> fp8_roundtrip(const std::vector<float>& x, size_t block) {
  std::vector<float> y(x.size());
  for (size_t b0 = 0; b0 < x.size(); b0 += block) {
    const size_t b1 = std::min(x.size(), b0 + block);
    float amax = 0;
    for (size_t i = b0; i < b1; ++i) amax = std::max(amax, std::fabs(x[i]));
    amax = std::max(amax, 1e-4f);
    const float s = ceil_pow2(amax, 1.0f / 448.0f);
    for (size_t i = b0; i < b1; ++i) {
      double v = double(x[i]) / double(s);
      v = std::min(448.0, std::max(-448.0, v));
      y[i] = float(e4m3_decode(e4m3_encode(v)) * double(s));
    }
  }
  return y;
}
inline std::vector<float> fp4_roundtrip(const std::vector<float>& x, size_t block = 32) {
  std::vector<float> y(x.size());
  const float floor = std::ldexp(6.0f, -126);
  for (size_t b0 = 0; b0 < x.size(); b0 += block) {
    const size_t b1 = std::min(x.size(), b0 + block);
    float amax = 0;
    for (size_t i = b0; i < b1; ++i) amax = std::max(amax, std::fabs(x[i]));
    amax = std::max(amax, floor);
    const float s = ceil_pow2(amax, 1.0f / 6.0f);
    for (size_t i = b0; i < b1; ++i) {
      double v = double(x[i]) / double(s);
      v = std::min(6.0, std::max(-6.0, v));
      y[i] = float(e2m1_decode(e2m1_encode(v)) * double(s));
    }
  }
  return y;
}

// ---- Random data with fixed seeds. ----
inline std::vector<float> randn(size_t n, uint32_t seed, double sigma = 1.0, double mean = 0.0) {
  std::mt19937 g(seed);
  std::normal_distribution<double> d(mean, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = float(d(g));
  return v;
}
inline std::vector<float> randu(size_t n, uint32_t seed, double lo, double hi) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = float(d(g));
  return v;
}

}  // namespace dsv4_ref
