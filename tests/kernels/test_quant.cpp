// Rung 1: the three quantisation round-trips of architecture.md §3.2 / fixtures README §6 rules 1–3 against the
// scalar reference in tests/core/ref_numerics.h (ceil-pow2 scales, amax floors, RNE ties, partial blocks).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/dtype.h"
#include "core/ref_numerics.h"
#include "kernels/quant.h"

using namespace dsv4;
namespace ref = dsv4_ref;

namespace {

// Random data whose magnitude changes from block to block (so the per-block scales differ), with a few
// outliers and exact zeros mixed in.
std::vector<float> varied(size_t n, size_t block, uint32_t seed) {
  auto x = ref::randn(n, seed);
  auto e = ref::randu(n / block + 1, seed + 1, -12, 12);
  for (size_t i = 0; i < n; ++i) x[i] *= std::exp2(std::round(e[i / block]));
  for (size_t i = 3; i < n; i += 97) x[i] = 0.0f;
  for (size_t i = 11; i < n; i += 301) x[i] *= 40.0f;
  return x;
}

void expect_bitwise(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_EQ(got[i], want[i]) << what << " at " << i << " (block " << i << ")";
}

// Every value of a format's grid, the midpoints between neighbours (ties) and one f32 ulp either side.
std::vector<float> grid_probes(const std::vector<float>& grid) {
  std::vector<float> probes;
  for (size_t i = 0; i < grid.size(); ++i) {
    probes.push_back(grid[i]);
    if (i + 1 < grid.size()) {
      const float mid = (grid[i] + grid[i + 1]) / 2;
      probes.insert(probes.end(), {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f)});
    }
  }
  return probes;
}

}  // namespace

TEST(Fp8Roundtrip, FastRoundingEqualsTheCodecOnEveryGridPointAndMidpoint) {
  // Every e4m3 value, the midpoints between neighbours (ties), one f32 ulp either side of each, and
  // random values across the whole range including the subnormal grid.
  std::vector<float> grid;
  for (int c = 0; c < 0x7f; ++c) grid.push_back(e4m3_to_f32(uint8_t(c)));
  std::vector<float> probes = grid_probes(grid);
  for (float u : ref::randu(200000, 7, -30, 8.8)) probes.push_back(std::exp2(u));
  for (float v : probes)
    for (float sv : {v, -v})
      ASSERT_EQ(f32_to_bits(round_e4m3_small(sv)), f32_to_bits(round_e4m3(sv))) << sv;
}

TEST(Fp8Roundtrip, Blocks128WithPartialLastBlock) {
  for (size_t n : {size_t(128), size_t(384), size_t(128 * 3 + 50), size_t(7), size_t(300)}) {
    auto x = varied(n, 128, uint32_t(n));
    auto want = ref::fp8_roundtrip(x, 128);
    auto got = x;
    fp8_roundtrip(got.data(), n, 128);
    expect_bitwise(got, want, "fp8/128");
  }
}

TEST(Fp8Roundtrip, Blocks64LikeKvNopeDims) {
  for (size_t n : {size_t(448), size_t(64), size_t(64 * 2 + 1)}) {
    auto x = varied(n, 64, 1000 + uint32_t(n));
    auto want = ref::fp8_roundtrip(x, 64);
    auto got = x;
    fp8_roundtrip(got.data(), n, 64);
    expect_bitwise(got, want, "fp8/64");
  }
  // The block boundaries matter: the same data with 128-wide blocks gives a different result here.
  auto x = varied(448, 64, 4242);
  auto a = x, b = x;
  fp8_roundtrip(a.data(), a.size(), 64);
  fp8_roundtrip(b.data(), b.size(), 128);
  EXPECT_NE(a, b);
}

TEST(Fp8Roundtrip, AmaxFloorOnTinyBlock) {
  // Block 0: tiny values (amax ≈ 3e-6 < 1e-4) → s = ceil-pow2(1e-4/448) = 2^-22 rather than the much smaller
  // scale the block's own amax would give. Block 1: ordinary values.
  auto x = ref::randn(256, 31, 1e-6);
  auto y = ref::randn(128, 32);
  std::copy(y.begin(), y.end(), x.begin() + 128);
  x[5] = 1e-6f;
  auto want = ref::fp8_roundtrip(x, 128);
  auto got = x;
  fp8_roundtrip(got.data(), got.size(), 128);
  expect_bitwise(got, want, "fp8 floor");
  // 1e-6 / 2^-22 = 4.19 → e4m3 4.0 → 4·2^-22 (with the block's own scale it would be far more precise).
  EXPECT_EQ(got[5], std::ldexp(4.0f, -22));
  for (int i = 0; i < 128; ++i) {
    const double q = double(got[i]) / std::ldexp(1.0, -22);
    EXPECT_EQ(q, double(round_e4m3(float(q)))) << "not on the 2^-22·e4m3 grid at " << i;
  }
  // A block of exact zeros stays zero.
  std::vector<float> z(128, 0.0f);
  fp8_roundtrip(z.data(), z.size(), 128);
  for (float v : z) EXPECT_EQ(v, 0.0f);
}

TEST(Fp8Roundtrip, OutlierFlushesSmallValuesAndTiesToEven) {
  // amax = 448 → s = 1: the block is rounded on the raw e4m3 grid, including exact midpoints.
  std::vector<float> x = {448.0f, 1.0625f, 1.1875f, -17.0f, 0.0009765625f /*2^-10*/, 3 * std::ldexp(1.0f, -10),
                          432.0f, -0.3f};
  x.resize(128);
  auto r = ref::randn(120, 9, 10.0);
  std::copy(r.begin(), r.end(), x.begin() + 8);
  auto want = ref::fp8_roundtrip(x, 128);
  auto got = x;
  fp8_roundtrip(got.data(), got.size(), 128);
  expect_bitwise(got, want, "fp8 ties");
  EXPECT_EQ(got[0], 448.0f);
  EXPECT_EQ(got[1], 1.0f);
  EXPECT_EQ(got[2], 1.25f);
  EXPECT_EQ(got[3], -16.0f);  // 17 is halfway between 16 (even code) and 18
  EXPECT_EQ(got[4], 0.0f);
  EXPECT_EQ(got[5], std::ldexp(1.0f, -8));
  EXPECT_EQ(got[6], 448.0f);
}

TEST(Fp8Roundtrip, Idempotent) {
  for (size_t block : {size_t(64), size_t(128)}) {
    auto x = varied(1000, block, 77 + uint32_t(block));
    fp8_roundtrip(x.data(), x.size(), block);
    auto y = x;
    fp8_roundtrip(y.data(), y.size(), block);
    expect_bitwise(y, x, "fp8 idempotence");
  }
}

TEST(Fp8EncodeDecode, EqualsRoundtrip) {
  for (size_t n : {size_t(128), size_t(64), size_t(50), size_t(1)}) {
    for (uint32_t seed : {1u, 2u, 3u}) {
      auto x = ref::randn(n, seed * 100 + uint32_t(n), std::exp2(double(seed) * 5 - 10));
      std::vector<uint8_t> codes(n);
      const uint8_t sb = fp8_encode_block(x.data(), n, codes.data());
      // The scale byte is the E8M0 encoding of the reference ceil-pow2 scale.
      float amax = 0;
      for (float v : x) amax = std::max(amax, std::fabs(v));
      const float s = ref::ceil_pow2(std::max(amax, 1e-4f), 1.0f / 448.0f);
      EXPECT_EQ(double(s), ref::e8m0_decode(sb)) << "n=" << n << " seed=" << seed;
      for (size_t i = 0; i < n; ++i) {
        ASSERT_NE(codes[i] & 0x7f, 0x7f) << "NaN code produced";
        ASSERT_EQ(codes[i], ref::e4m3_encode(double(x[i]) / double(s))) << i;
      }
      std::vector<float> dec(n);
      fp8_decode_block(codes.data(), sb, n, dec.data());
      auto rt = x;
      fp8_roundtrip(rt.data(), n, n);
      expect_bitwise(dec, rt, "decode(encode) vs roundtrip");
      expect_bitwise(dec, ref::fp8_roundtrip(x, n), "decode(encode) vs reference");
    }
  }
}

TEST(Fp4Roundtrip, Blocks32WithPartialLastBlock) {
  for (size_t n : {size_t(32), size_t(128), size_t(32 * 5 + 7), size_t(5)}) {
    auto x = varied(n, 32, 500 + uint32_t(n));
    auto want = ref::fp4_roundtrip(x, 32);
    auto got = x;
    fp4_roundtrip(got.data(), n);  // default block 32
    expect_bitwise(got, want, "fp4/32");
  }
}

TEST(Fp4Roundtrip, TiesGoToEven) {
  // amax = 6 → s = 1: the tie list of architecture.md §3.2 verbatim, both signs.
  std::vector<float> x = {6.0f, 0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f,
                          -6.0f, -0.25f, -0.75f, -1.25f, -1.75f, -2.5f, -3.5f, -5.0f};
  const std::vector<float> want = {6, 0, 1, 1, 2, 2, 4, 4, -6, -0.0f, -1, -1, -2, -2, -4, -4};
  auto r = ref::randu(16, 3, -6, 6);
  x.insert(x.end(), r.begin(), r.end());
  auto got = x;
  fp4_roundtrip(got.data(), got.size(), 32);
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], want[i]) << "x = " << x[i];
  expect_bitwise(got, ref::fp4_roundtrip(x, 32), "fp4 ties");
  // amax = 12 → s = 2: ties on the doubled grid.
  std::vector<float> y = {12.0f, 0.5f, 1.5f, 2.5f, 3.5f, 5.0f, 7.0f, 10.0f};
  const std::vector<float> wy = {12, 0, 2, 2, 4, 4, 8, 8};
  auto gy = y;
  fp4_roundtrip(gy.data(), gy.size(), 32);
  for (size_t i = 0; i < wy.size(); ++i) EXPECT_EQ(gy[i], wy[i]) << "x = " << y[i];
}

TEST(Fp4Roundtrip, AmaxFloorOnTinyBlock) {
  // Block 0: subnormal-sized values (amax < 6·2^-126) → s = 2^-126. Block 1: ordinary values.
  std::vector<float> x(64);
  auto t = ref::randn(32, 8, 1.0);
  for (int i = 0; i < 32; ++i) x[i] = t[i] * std::ldexp(1.0f, -128);  // |x| ≲ 2^-126.5
  auto r = ref::randn(32, 9);
  std::copy(r.begin(), r.end(), x.begin() + 32);
  auto got = x;
  fp4_roundtrip(got.data(), got.size());
  expect_bitwise(got, ref::fp4_roundtrip(x, 32), "fp4 floor");
  for (int i = 0; i < 32; ++i) {
    const double q = double(got[i]) / std::ldexp(1.0, -126);
    EXPECT_EQ(q, double(round_e2m1(float(q)))) << "not on the 2^-126·e2m1 grid at " << i;
  }
}

TEST(Fp4Roundtrip, Idempotent) {
  auto x = varied(32 * 9 + 3, 32, 4711);
  fp4_roundtrip(x.data(), x.size());
  auto y = x;
  fp4_roundtrip(y.data(), y.size());
  expect_bitwise(y, x, "fp4 idempotence");
}

// Whole blocks take the vectorised path (quant_simd.cpp): on blocks whose amax fixes s = 1, every
// grid value, midpoint (tie), the floats either side of it and NaN must come out as the scalar
// rounding of each element.
template <typename Round>
void expect_vector_blocks_match_scalar(const std::vector<float>& grid, float qmax, size_t block, Round round,
                                       void (*roundtrip)(float*, size_t, size_t)) {
  std::vector<float> probes = grid_probes(grid);
  probes.insert(probes.end(), {NAN, -NAN});  // amax ignores NaN
  std::vector<float> x;
  for (float v : probes)
    for (float sv : {v, -v}) {
      if (x.size() % block == 0) x.push_back(qmax);  // amax = qmax: s = 1
      x.push_back(sv);
    }
  while (x.size() % block) x.push_back(0.0f);
  auto got = x;
  roundtrip(got.data(), got.size(), block);
  for (size_t i = 0; i < x.size(); ++i) {
    const float v = x[i], want = round(v < -qmax ? -qmax : (qmax < v ? qmax : v));
    ASSERT_EQ(f32_to_bits(got[i]), f32_to_bits(want)) << "x = " << v;
  }
}

TEST(Fp8Roundtrip, VectorBlocksEqualScalarRounding) {
  std::vector<float> grid;
  for (int c = 0; c < 0x7f; ++c) grid.push_back(e4m3_to_f32(uint8_t(c)));
  expect_vector_blocks_match_scalar(grid, 448.0f, 128, round_e4m3_small, fp8_roundtrip);
}

TEST(Fp4Roundtrip, VectorBlocksEqualScalarRounding) {
  std::vector<float> grid;
  for (int c = 0; c < 8; ++c) grid.push_back(e2m1_to_f32(uint8_t(c)));
  expect_vector_blocks_match_scalar(grid, 6.0f, 32, round_e2m1, fp4_roundtrip);
}
