// Rung 1 of the validation ladder (architecture.md §9): the scalar codecs of src/core/dtype.h, exhaustively
// where the code space is small, against the independent references in ref_numerics.h (§3.1, fixtures
// README §6).
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <random>
#include <string>

#include "core/dtype.h"
#include "core/ref_numerics.h"

using namespace dsv4;
namespace ref = dsv4_ref;

namespace {
float p2(int e) { return std::ldexp(1.0f, e); }
}  // namespace

// ---------------------------------------------------------------- e4m3

TEST(E4M3, DecodeAll256Codes) {
  for (int c = 0; c < 256; ++c) {
    const double r = ref::e4m3_decode(uint8_t(c));
    const float got = e4m3_to_f32(uint8_t(c));
    if (std::isnan(r)) {
      EXPECT_TRUE(std::isnan(got)) << "code " << c;
    } else {
      EXPECT_EQ(double(got), r) << "code 0x" << std::hex << c;
      EXPECT_EQ(std::signbit(got), std::signbit(r)) << "code 0x" << std::hex << c;
    }
  }
  // Landmarks from the format table.
  EXPECT_EQ(e4m3_to_f32(0x7e), 448.0f);
  EXPECT_EQ(e4m3_to_f32(0xfe), -448.0f);
  EXPECT_EQ(e4m3_to_f32(0x01), p2(-9));          // smallest subnormal
  EXPECT_EQ(e4m3_to_f32(0x07), 7 * p2(-9));      // largest subnormal
  EXPECT_EQ(e4m3_to_f32(0x08), p2(-6));          // smallest normal
  EXPECT_EQ(e4m3_to_f32(0x38), 1.0f);
  EXPECT_EQ(e4m3_to_f32(0x00), 0.0f);
  EXPECT_TRUE(std::signbit(e4m3_to_f32(0x80)));  // −0
  EXPECT_TRUE(std::isnan(e4m3_to_f32(0x7f)));
  EXPECT_TRUE(std::isnan(e4m3_to_f32(0xff)));
  EXPECT_FALSE(std::isnan(e4m3_to_f32(0x78)));   // exponent 15 with m != 7 is a normal number (no inf)
  EXPECT_EQ(e4m3_to_f32(0x78), 256.0f);
  EXPECT_EQ(e4m3_to_f32(0x77), 240.0f);
}

TEST(E4M3, EveryCodeReencodesToItself) {
  for (int c = 0; c < 256; ++c) {
    const float v = e4m3_to_f32(uint8_t(c));
    const uint8_t back = f32_to_e4m3(v);
    if (std::isnan(v)) {
      EXPECT_EQ(back & 0x7f, 0x7f) << "NaN code 0x" << std::hex << c << " re-encoded to 0x" << int(back);
      EXPECT_TRUE(std::isnan(e4m3_to_f32(back)));
    } else {
      EXPECT_EQ(int(back), c) << "value " << v;
    }
  }
}

TEST(E4M3, MidpointsTieToEvenCode) {
  // Every pair of neighbouring finite codes c, c+1 (both signs): the exact midpoint goes to the even code,
  // one fp32 ulp either side goes to the nearer code.
  for (int c = 0; c < 0x7e; ++c) {
    const double lo = ref::e4m3_decode(uint8_t(c)), hi = ref::e4m3_decode(uint8_t(c + 1));
    const float mid = float((lo + hi) / 2);
    ASSERT_EQ(double(mid), (lo + hi) / 2) << "midpoint not exact in fp32";
    const int even = (c & 1) ? c + 1 : c;
    for (int sign : {0, 0x80}) {
      const float s = sign ? -1.0f : 1.0f;
      EXPECT_EQ(int(f32_to_e4m3(s * mid)), sign | even) << "midpoint " << s * mid;
      EXPECT_EQ(int(f32_to_e4m3(s * std::nextafter(mid, 1e9f))), sign | (c + 1)) << s * mid << "+ulp";
      EXPECT_EQ(int(f32_to_e4m3(s * std::nextafter(mid, 0.0f))), sign | c) << s * mid << "-ulp";
    }
  }
  // Explicit examples: halfway between 1 and 1.125 → 1 (0x38 even); halfway 1.125..1.25 → 1.25 (0x3a).
  EXPECT_EQ(f32_to_e4m3(1.0625f), 0x38);
  EXPECT_EQ(f32_to_e4m3(1.1875f), 0x3a);
  // Halfway between 0 and the smallest subnormal 2^-9 → 0; halfway 2^-9..2^-8 (code 1|2) → code 2.
  EXPECT_EQ(f32_to_e4m3(p2(-10)), 0x00);
  EXPECT_EQ(f32_to_e4m3(3 * p2(-10)), 0x02);
  // Halfway between 416 (0x7d) and 448 (0x7e) → 448 (even code).
  EXPECT_EQ(f32_to_e4m3(432.0f), 0x7e);
}

TEST(E4M3, SaturatesAbove448) {
  for (float v : {448.0f, 448.5f, 449.0f, 463.99f, 464.0f, 480.0f, 500.0f, 1e4f, 1e30f, FLT_MAX}) {
    EXPECT_EQ(f32_to_e4m3(v), 0x7e) << v;
    EXPECT_EQ(f32_to_e4m3(-v), 0xfe) << -v;
  }
  EXPECT_EQ(f32_to_e4m3(INFINITY), 0x7e) << "saturating conversion (architecture.md §3.1: e4m3fn, saturating)";
  EXPECT_EQ(f32_to_e4m3(-INFINITY), 0xfe);
  EXPECT_TRUE(std::isnan(e4m3_to_f32(f32_to_e4m3(NAN))));
  EXPECT_EQ(round_e4m3(1000.0f), 448.0f);
}

TEST(E4M3, RandomValuesMatchReference) {
  std::mt19937 g(1234);
  std::uniform_real_distribution<double> le(-13, 10);
  for (int i = 0; i < 200000; ++i) {
    float v = float(std::exp2(le(g)));
    if (g() & 1) v = -v;
    ASSERT_EQ(int(f32_to_e4m3(v)), int(ref::e4m3_encode(v))) << "x = " << v;
    ASSERT_EQ(double(round_e4m3(v)), ref::e4m3_decode(ref::e4m3_encode(v))) << v;
  }
  // Signed zeros and values that round to zero keep their sign.
  EXPECT_EQ(f32_to_e4m3(0.0f), 0x00);
  EXPECT_EQ(f32_to_e4m3(-0.0f), 0x80);
  EXPECT_EQ(f32_to_e4m3(-p2(-11)), 0x80);
}

// ---------------------------------------------------------------- e2m1

TEST(E2M1, DecodeAll16Codes) {
  const float want[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};
  for (int c = 0; c < 16; ++c) {
    EXPECT_EQ(e2m1_to_f32(uint8_t(c)), want[c]) << c;
    EXPECT_EQ(double(e2m1_to_f32(uint8_t(c))), ref::e2m1_decode(uint8_t(c))) << c;
    EXPECT_EQ(std::signbit(e2m1_to_f32(uint8_t(c))), c >= 8) << c;
    EXPECT_EQ(int(f32_to_e2m1(e2m1_to_f32(uint8_t(c)))), c) << "re-encode code " << c;
  }
  // The decode only looks at the low nibble.
  EXPECT_EQ(e2m1_to_f32(0x37), 6.0f);
}

TEST(E2M1, TiesGoToEvenCode) {
  struct Case { float x, y; };
  const Case cases[] = {{0.25f, 0}, {0.75f, 1}, {1.25f, 1}, {1.75f, 2}, {2.5f, 2}, {3.5f, 4}, {5.0f, 4}};
  for (auto [x, y] : cases) {
    EXPECT_EQ(round_e2m1(x), y) << x;
    EXPECT_EQ(round_e2m1(-x), -y) << -x;
    EXPECT_EQ(double(round_e2m1(x)), ref::e2m1_decode(ref::e2m1_encode(x))) << x;
  }
  // Just off the ties.
  EXPECT_EQ(round_e2m1(std::nextafter(0.25f, 1.0f)), 0.5f);
  EXPECT_EQ(round_e2m1(std::nextafter(0.75f, 0.0f)), 0.5f);
  EXPECT_EQ(round_e2m1(std::nextafter(2.5f, 9.0f)), 3.0f);
  EXPECT_EQ(round_e2m1(std::nextafter(5.0f, 9.0f)), 6.0f);
  EXPECT_EQ(round_e2m1(std::nextafter(5.0f, 0.0f)), 4.0f);
  EXPECT_EQ(f32_to_e2m1(-0.25f), 8) << "-0.25 rounds to -0 (code 8)";
}

TEST(E2M1, SaturatesAt6AndMatchesReference) {
  for (float v : {6.0f, 6.5f, 7.0f, 100.0f, 1e30f, INFINITY}) {
    EXPECT_EQ(f32_to_e2m1(v), 7) << v;
    EXPECT_EQ(f32_to_e2m1(-v), 15) << -v;
  }
  std::mt19937 g(77);
  std::uniform_real_distribution<double> d(-7.5, 7.5);
  for (int i = 0; i < 100000; ++i) {
    const float v = float(d(g));
    ASSERT_EQ(int(f32_to_e2m1(v)), int(ref::e2m1_encode(v))) << v;
  }
  // Exhaustive over a fine quarter-step grid, which contains every midpoint.
  for (int k = -32; k <= 32; ++k) {
    const float v = float(k) / 4.0f;
    EXPECT_EQ(int(f32_to_e2m1(v)), int(ref::e2m1_encode(v))) << v;
  }
}

// ---------------------------------------------------------------- E8M0

TEST(E8M0, AllCodes) {
  for (int b = 0; b < 256; ++b) {
    const float got = e8m0_to_f32(uint8_t(b));
    if (b == 255) {
      EXPECT_TRUE(std::isnan(got));
      continue;
    }
    EXPECT_EQ(double(got), ref::e8m0_decode(uint8_t(b))) << b;
    EXPECT_GT(got, 0.0f) << "E8M0 has no zero";
  }
  EXPECT_EQ(e8m0_to_f32(127), 1.0f);
  EXPECT_EQ(e8m0_to_f32(0), std::ldexp(1.0f, -127));
  EXPECT_EQ(e8m0_to_f32(254), std::ldexp(1.0f, 127));
}

// ---------------------------------------------------------------- bf16

TEST(BF16, DecodeAllPatterns) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float got = bf16_to_f32(uint16_t(h));
    uint32_t u;
    std::memcpy(&u, &got, 4);
    ASSERT_EQ(u, h << 16);
  }
}

TEST(BF16, RoundToNearestEven) {
  // Ties between neighbours: 1 + 2^-8 lies halfway between 1 (even) and 1 + 2^-7 (odd) → 1;
  // 1 + 3·2^-8 lies halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even) → 1 + 2^-6.
  EXPECT_EQ(round_bf16(1.0f + p2(-8)), 1.0f);
  EXPECT_EQ(round_bf16(1.0f + 3 * p2(-8)), 1.0f + p2(-6));
  EXPECT_EQ(round_bf16(-(1.0f + 3 * p2(-8))), -(1.0f + p2(-6)));
  EXPECT_EQ(round_bf16(std::nextafter(1.0f + p2(-8), 2.0f)), 1.0f + p2(-7));
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_bf16(FLT_MAX), 0x7f80) << "rounds up to +inf";
  EXPECT_EQ(f32_to_bf16(INFINITY), 0x7f80);
  EXPECT_EQ(f32_to_bf16(-INFINITY), 0xff80);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
  EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000);
  // Subnormal tie: 2^-133 + 2^-134... use a pattern with the low half exactly 0x8000.
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x00018000u)), 0x0002);  // odd 1 → even 2
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x00028000u)), 0x0002);  // even 2 stays
}

TEST(BF16, RandomPatternsMatchReference) {
  std::mt19937 g(99);
  for (int i = 0; i < 1000000; ++i) {
    uint32_t u = g();
    if (i % 4 == 0) u = (u & 0xffff0000u) | 0x8000u;  // force many exact ties
    const float f = bits_to_f32(u);
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_bf16(f), ref::bf16_encode(f)) << std::hex << "bits 0x" << u;
  }
}

// ---------------------------------------------------------------- f16 (used by npy/safetensors F16 tensors)

TEST(F16, DecodeAllPatterns) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double r;
    if (e == 31) r = m ? NAN : INFINITY;
    else if (e == 0) r = std::ldexp(m / 1024.0, -14);
    else r = std::ldexp(1 + m / 1024.0, e - 15);
    if (s) r = -r;
    const float got = f16_to_f32(uint16_t(h));
    if (std::isnan(r)) {
      EXPECT_TRUE(std::isnan(got)) << h;
    } else {
      ASSERT_EQ(double(got), r) << "half 0x" << std::hex << h;
      ASSERT_EQ(std::signbit(got), bool(s)) << h;
    }
  }
}

// ---------------------------------------------------------------- ceil-pow2 scale rule

TEST(CeilPow2Scale, ExactPowersAndJustAbove) {
  for (int k = -126; k <= 127; ++k) {
    const float v = p2(k);
    EXPECT_EQ(ceil_pow2_scale(v, 1.0f), v) << "2^" << k;
    if (k < 127) {
      EXPECT_EQ(ceil_pow2_scale(std::nextafter(v, INFINITY), 1.0f), p2(k + 1)) << "2^" << k << "+ulp";
    }
    if (k > -126) {
      EXPECT_EQ(ceil_pow2_scale(std::nextafter(v, 0.0f), 1.0f), v) << "2^" << k << "-ulp";
    }
  }
  // FP8 rule: a = amax · fp32(1/448).
  const float i448 = 1.0f / 448.0f, i6 = 1.0f / 6.0f;
  EXPECT_EQ(ceil_pow2_scale(448.0f, i448), 1.0f);
  EXPECT_EQ(ceil_pow2_scale(896.0f, i448), 2.0f);
  EXPECT_EQ(ceil_pow2_scale(224.0f, i448), 0.5f);
  EXPECT_EQ(ceil_pow2_scale(std::nextafter(448.0f, 1e9f), i448), 2.0f);
  EXPECT_EQ(ceil_pow2_scale(1e-4f, i448), p2(-22)) << "FP8 amax floor";
  // FP4 rule: a = amax · fp32(1/6).
  EXPECT_EQ(ceil_pow2_scale(6.0f, i6), 1.0f);
  EXPECT_EQ(ceil_pow2_scale(3.0f, i6), 0.5f);
  EXPECT_EQ(ceil_pow2_scale(3.0001f, i6), 1.0f);
  EXPECT_EQ(ceil_pow2_scale(std::ldexp(6.0f, -126), i6), p2(-126)) << "FP4 amax floor";
  // Random amax against the reference, both Q values.
  std::mt19937 g(5);
  std::uniform_real_distribution<double> le(-30, 30);
  for (int i = 0; i < 100000; ++i) {
    const float a = float(std::exp2(le(g)));
    ASSERT_EQ(ceil_pow2_scale(a, i448), ref::ceil_pow2(a, i448)) << a;
    ASSERT_EQ(ceil_pow2_scale(a, i6), ref::ceil_pow2(a, i6)) << a;
  }
  // Every multiple 448·2^k and 6·2^k gives exactly 2^k (fp32(1/Q) rounding must not bump it up).
  for (int k = -20; k <= 20; ++k) {
    EXPECT_EQ(ceil_pow2_scale(448.0f * p2(k), i448), p2(k)) << k;
    EXPECT_EQ(ceil_pow2_scale(6.0f * p2(k), i6), p2(k)) << k;
  }
}

// ---------------------------------------------------------------- dtype table

TEST(DTypeTable, NamesSizesAndParse) {
  struct Row { const char* name; DType t; size_t size; };
  const Row rows[] = {{"BF16", DType::BF16, 2}, {"F16", DType::F16, 2},     {"F32", DType::F32, 4},
                      {"F64", DType::F64, 8},   {"I64", DType::I64, 8},     {"I32", DType::I32, 4},
                      {"I16", DType::I16, 2},   {"I8", DType::I8, 1},       {"U8", DType::U8, 1},
                      {"BOOL", DType::BOOL, 1}, {"F8_E4M3", DType::F8_E4M3, 1}, {"F8_E8M0", DType::F8_E8M0, 1}};
  for (auto& r : rows) {
    DType t = DType::F64;
    EXPECT_TRUE(parse_dtype(r.name, t)) << r.name;
    EXPECT_EQ(t, r.t) << r.name;
    EXPECT_EQ(dtype_size(r.t), r.size) << r.name;
    EXPECT_EQ(std::string(dtype_name(r.t)), r.name);
  }
  DType t;
  EXPECT_FALSE(parse_dtype("F8_E5M2", t));
  EXPECT_FALSE(parse_dtype("float32", t));
  EXPECT_FALSE(parse_dtype("", t));
  EXPECT_FALSE(parse_dtype("bf16", t)) << "safetensors dtype names are upper case";
}
