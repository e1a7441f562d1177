// The ggml block formats (kernels/blocks.h): hand-built blocks pin each byte layout to the values
// ggml decodes; the SIMD decoder matches the scalar one bit for bit; the quantizers reach realistic
// errors (and honour importance weights); the fused products match a double reference and give the
// same bits for any row split and any token count.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/block_format.h"
#include "core/dtype.h"
#include "core/error.h"
#include "kernels/blocks.h"

#include <hwy/targets.h>

using namespace dsv4;
using dsv4::blocks::detail::f32_to_f16;

namespace {

const BlockFormat kAll[] = {BlockFormat::Q8_0, BlockFormat::MXFP4, BlockFormat::Q4_K, BlockFormat::Q6_K,
                            BlockFormat::Q2_K, BlockFormat::Q3_K,  BlockFormat::Q5_K, BlockFormat::Q4_0,
                            BlockFormat::IQ2_XXS};

void put16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }
uint16_t h(float v) { return f32_to_f16(v); }

std::vector<float> decode_ref(BlockFormat f, const std::vector<uint8_t>& b, int64_t k) {
  std::vector<float> y(static_cast<size_t>(k));
  blocks::dequant_row_ref(f, b.data(), k, y.data());
  return y;
}

void expect_both(BlockFormat f, const std::vector<uint8_t>& b, const std::vector<double>& want) {
  const int64_t k = int64_t(want.size());
  const auto ref = decode_ref(f, b, k);
  std::vector<float> simd(static_cast<size_t>(k));
  blocks::dequant_row(f, b.data(), k, simd.data());
  for (int64_t i = 0; i < k; ++i) {
    ASSERT_EQ(double(ref[size_t(i)]), want[size_t(i)]) << block_name(f) << " element " << i;
    ASSERT_EQ(simd[size_t(i)], ref[size_t(i)]) << block_name(f) << " simd element " << i;
  }
}

// The fp16 fields of a block (offsets), kept finite in random blocks.
std::vector<int> half_fields(BlockFormat f) {
  switch (f) {
    case BlockFormat::Q8_0:
    case BlockFormat::Q4_0:
    case BlockFormat::IQ2_XXS: return {0};
    case BlockFormat::Q2_K: return {80, 82};
    case BlockFormat::Q3_K: return {108};
    case BlockFormat::Q4_K:
    case BlockFormat::Q5_K: return {0, 2};
    case BlockFormat::Q6_K: return {208};
    default: return {};
  }
}

std::vector<uint8_t> random_blocks(BlockFormat f, int64_t nblocks, uint32_t seed, bool moderate) {
  std::mt19937 g(seed);
  const auto& info = block_info(f);
  std::vector<uint8_t> b(static_cast<size_t>(nblocks * info.bytes));
  for (auto& c : b) c = uint8_t(g());
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t i = 0; i < nblocks; ++i) {
    uint8_t* p = b.data() + i * info.bytes;
    for (int off : half_fields(f)) {
      uint16_t v;
      if (moderate) {
        v = h(std::ldexp(u(g), -6));
      } else {
        v = uint16_t(g());
        if (((v >> 10) & 31) == 31) v &= 0xbfff;  // any finite half, subnormals included
      }
      put16(p + off, v);
    }
    if (moderate && f == BlockFormat::MXFP4) p[0] = uint8_t(120 + g() % 8);
  }
  return b;
}

std::vector<float> gauss(size_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

}  // namespace

// ---- (a) hand-built blocks: the ggml layouts ----

TEST(BlockLayout, Q8_0) {
  std::vector<uint8_t> b(34);
  put16(&b[0], h(0.5f));
  for (int i = 0; i < 32; ++i) b[2 + i] = uint8_t(int8_t(i * 7 - 100));
  std::vector<double> want(32);
  for (int i = 0; i < 32; ++i) want[i] = 0.5 * (i * 7 - 100);
  expect_both(BlockFormat::Q8_0, b, want);
}

TEST(BlockLayout, Q4_0) {
  std::vector<uint8_t> b(18);
  put16(&b[0], h(2.0f));
  for (int i = 0; i < 16; ++i) b[2 + i] = uint8_t(i | ((15 - i) << 4));  // low nibble j, high nibble j + 16
  std::vector<double> want(32);
  for (int i = 0; i < 16; ++i) want[i] = 2.0 * (i - 8), want[i + 16] = 2.0 * (7 - i);
  expect_both(BlockFormat::Q4_0, b, want);
}

TEST(BlockLayout, Mxfp4IsE2m1TimesE8m0) {
  for (int e : {1, 2, 100, 127, 130, 200}) {
    std::vector<uint8_t> b(17);
    b[0] = uint8_t(e);
    for (int i = 0; i < 16; ++i) b[1 + i] = uint8_t(i | (((i * 5 + 3) & 15) << 4));
    std::vector<double> want(32);
    for (int i = 0; i < 16; ++i) {
      want[i] = double(e2m1_to_f32(uint8_t(i))) * std::ldexp(1.0, e - 127);
      want[i + 16] = double(e2m1_to_f32(uint8_t((i * 5 + 3) & 15))) * std::ldexp(1.0, e - 127);
    }
    expect_both(BlockFormat::MXFP4, b, want);
  }
}

// Q4_K / Q5_K: sub-block j has 6-bit scale sc[j] and min m[j]; j < 4 in the low 6 bits of bytes j and
// j + 4, j ≥ 4 as low nibbles in byte j + 4 with their top 2 bits in bits 6–7 of bytes j − 4 and j.
static void pack_scale_min(uint8_t* s, const int* sc, const int* m) {
  std::memset(s, 0, 12);
  for (int j = 0; j < 4; ++j) s[j] = uint8_t(sc[j]), s[j + 4] = uint8_t(m[j]);
  for (int j = 4; j < 8; ++j) {
    s[j + 4] = uint8_t((sc[j] & 15) | ((m[j] & 15) << 4));
    s[j - 4] |= uint8_t((sc[j] >> 4) << 6);
    s[j] |= uint8_t((m[j] >> 4) << 6);
  }
}

TEST(BlockLayout, Q4_K) {
  std::vector<uint8_t> b(144);
  put16(&b[0], h(0.25f));
  put16(&b[2], h(0.125f));
  const int sc[8] = {1, 7, 33, 63, 2, 17, 48, 60}, m[8] = {0, 5, 63, 9, 31, 40, 1, 22};
  pack_scale_min(&b[4], sc, m);
  auto q = [](int e) { return (e * 7 + e / 32) & 15; };
  for (int e = 0; e < 256; ++e) {  // pairs of sub-blocks share 32 bytes: low nibbles, then high
    const int p = e / 64, hi = (e % 64) / 32, l = e % 32;
    b[16 + 32 * p + l] |= uint8_t(q(e) << (4 * hi));
  }
  std::vector<double> want(256);
  for (int e = 0; e < 256; ++e) want[e] = 0.25 * sc[e / 32] * q(e) - 0.125 * m[e / 32];
  expect_both(BlockFormat::Q4_K, b, want);
}

TEST(BlockLayout, Q5_K) {
  std::vector<uint8_t> b(176);
  put16(&b[0], h(0.5f));
  put16(&b[2], h(0.25f));
  const int sc[8] = {3, 63, 12, 40, 1, 50, 19, 33}, m[8] = {7, 0, 61, 13, 44, 2, 27, 63};
  pack_scale_min(&b[4], sc, m);
  auto q = [](int e) { return (e * 11 + 3) & 31; };
  for (int e = 0; e < 256; ++e) {
    const int p = e / 64, hi = (e % 64) / 32, l = e % 32;
    b[48 + 32 * p + l] |= uint8_t((q(e) & 15) << (4 * hi));
    b[16 + l] |= uint8_t((q(e) >> 4) << (e / 32));  // fifth bit: bit (e/32) of qh[e % 32]
  }
  std::vector<double> want(256);
  for (int e = 0; e < 256; ++e) want[e] = 0.5 * sc[e / 32] * q(e) - 0.25 * m[e / 32];
  expect_both(BlockFormat::Q5_K, b, want);
}

TEST(BlockLayout, Q6_K) {
  std::vector<uint8_t> b(210);
  put16(&b[208], h(0.0625f));
  int8_t sc[16];
  for (int j = 0; j < 16; ++j) sc[j] = int8_t(j * 17 - 128), b[192 + j] = uint8_t(sc[j]);
  auto q = [](int e) { return (e * 13 + 5) & 63; };
  for (int e = 0; e < 256; ++e) {  // halves of 128; quarter qq: nibble of ql, 2 bits of qh
    const int hf = e / 128, qq = (e % 128) / 32, l = e % 32;
    b[64 * hf + 32 * (qq % 2) + l] |= uint8_t((q(e) & 15) << (qq < 2 ? 0 : 4));
    b[128 + 32 * hf + l] |= uint8_t((q(e) >> 4) << (2 * qq));
  }
  std::vector<double> want(256);
  for (int e = 0; e < 256; ++e) want[e] = 0.0625 * sc[e / 16] * (q(e) - 32);
  expect_both(BlockFormat::Q6_K, b, want);
}

TEST(BlockLayout, Q2_K) {
  std::vector<uint8_t> b(84);
  put16(&b[80], h(0.5f));
  put16(&b[82], h(0.25f));
  for (int j = 0; j < 16; ++j) b[j] = uint8_t((j & 15) | (((15 - j) & 15) << 4));  // scale | min << 4
  auto q = [](int e) { return (e * 3 + e / 64) & 3; };
  for (int e = 0; e < 256; ++e) b[16 + 32 * (e / 128) + e % 32] |= uint8_t(q(e) << (2 * ((e % 128) / 32)));
  std::vector<double> want(256);
  for (int e = 0; e < 256; ++e) want[e] = 0.5 * (e / 16) * q(e) - 0.25 * (15 - e / 16);
  expect_both(BlockFormat::Q2_K, b, want);
}

TEST(BlockLayout, Q3_K) {
  std::vector<uint8_t> b(110);
  put16(&b[108], h(0.5f));
  int sc[16];
  for (int j = 0; j < 16; ++j) {  // 6-bit scales, offset 32: low nibbles in bytes 0..7, top 2 bits in 8..11
    sc[j] = (j * 23 + 5) & 63;
    b[96 + j % 8] |= uint8_t((sc[j] & 15) << (j < 8 ? 0 : 4));
    b[96 + 8 + j % 4] |= uint8_t((sc[j] >> 4) << (2 * (j / 4)));
  }
  auto q = [](int e) { return (e * 5 + 1) & 7; };  // 3 bits: low 2 in qs, the high one in hmask
  for (int e = 0; e < 256; ++e) {
    b[32 + 32 * (e / 128) + e % 32] |= uint8_t((q(e) & 3) << (2 * ((e % 128) / 32)));
    if (q(e) & 4) b[e % 32] |= uint8_t(1 << (e / 32));
  }
  std::vector<double> want(256);
  for (int e = 0; e < 256; ++e) want[e] = 0.5 * (sc[e / 16] - 32) * (q(e) - 4);
  expect_both(BlockFormat::Q3_K, b, want);
}

TEST(BlockLayout, Iq2xxs) {
  std::vector<uint8_t> b(66);
  put16(&b[0], h(1.0f));
  // Group 0: grid indices 0, 1, 255, 2; sign indices 0, 1, 3, 127; scale 3 → db = (3 + 0.5) / 4.
  const uint8_t idx[4] = {0, 1, 255, 2};
  const uint32_t signs[4] = {0, 1, 3, 127};
  for (int l = 0; l < 4; ++l) b[2 + l] = idx[l];
  uint32_t aux = 3u << 28;
  for (int l = 0; l < 4; ++l) aux |= signs[l] << (7 * l);
  std::memcpy(&b[6], &aux, 4);
  // ggml's iq2xxs_grid entries 0, 1, 255 and 2, low byte first.
  const int g[4][8] = {{8, 8, 8, 8, 8, 8, 8, 8},
                       {43, 8, 8, 8, 8, 8, 8, 8},
                       {8, 25, 8, 8, 25, 43, 43, 43},
                       {25, 25, 8, 8, 8, 8, 8, 8}};
  // Sign index s: bits 0..6 negate elements 0..6, element 7 is negative when s has odd parity.
  const int neg[4][8] = {{0, 0, 0, 0, 0, 0, 0, 0},
                         {1, 0, 0, 0, 0, 0, 0, 1},
                         {1, 1, 0, 0, 0, 0, 0, 0},
                         {1, 1, 1, 1, 1, 1, 1, 1}};
  std::vector<double> want(256, 0.0);
  for (int l = 0; l < 4; ++l)
    for (int j = 0; j < 8; ++j) want[8 * l + j] = 0.875 * g[l][j] * (neg[l][j] ? -1 : 1);
  // Groups 1..7: grid index 0, no signs, scale 0 → db = 1/8.
  for (int ib = 1; ib < 8; ++ib)
    for (int i = 0; i < 32; ++i) want[32 * ib + i] = 0.125 * 8;
  expect_both(BlockFormat::IQ2_XXS, b, want);
}

// ---- (b) SIMD decode == scalar decode on random blocks ----

// Every SIMD target this CPU runs (AVX-512, AVX2, SSE4, ...), each with its own lane count.
TEST(BlockDecode, SimdMatchesScalarBitwise) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    std::printf("decode on %s\n", hwy::TargetName(target));
    for (BlockFormat f : kAll) {
      const int64_t k = 4096;
      const auto b = random_blocks(f, k / block_info(f).elems, 7u + unsigned(f), false);
      const auto ref = decode_ref(f, b, k);
      std::vector<float> simd(static_cast<size_t>(k));
      blocks::dequant_row(f, b.data(), k, simd.data());
      for (int64_t i = 0; i < k; ++i)
        ASSERT_EQ(f32_to_bits(simd[size_t(i)]), f32_to_bits(ref[size_t(i)]))
            << block_name(f) << " element " << i << " on " << hwy::TargetName(target);
    }
  }
  hwy::SetSupportedTargetsForTest(0);
}

// ---- (c) quantizers ----

namespace {
double rel_rms(BlockFormat f, const std::vector<float>& x, int64_t k, const float* imp, const float* wimp) {
  std::vector<uint8_t> q(size_t(block_row_bytes(f, k)));
  std::vector<float> y(static_cast<size_t>(k));
  double num = 0, den = 0;
  for (size_t r = 0; r < x.size() / size_t(k); ++r) {
    const float* xr = x.data() + r * size_t(k);
    blocks::quantize_row(f, xr, k, imp, q.data());
    blocks::dequant_row(f, q.data(), k, y.data());
    for (int64_t i = 0; i < k; ++i) {
      const double w = wimp ? wimp[i] : 1.0, e = double(y[size_t(i)]) - xr[i];
      num += w * e * e;
      den += w * double(xr[i]) * xr[i];
    }
  }
  return std::sqrt(num / den);
}
}  // namespace

TEST(BlockQuantize, RelativeRmsError) {
  // Measured on this data (Gaussian rows): q8_0 0.50%, q6_k 1.71%, q5_k 3.54%, q4_k 7.08%, q4_0 8.09%,
  // mxfp4 11.1%, q3_k 14.4%, q2_k 26.8%; the bounds leave about 10% margin.
  const struct {
    BlockFormat f;
    double bound;
  } cases[] = {{BlockFormat::Q8_0, 0.0055}, {BlockFormat::MXFP4, 0.122}, {BlockFormat::Q4_K, 0.078},
               {BlockFormat::Q6_K, 0.019},  {BlockFormat::Q2_K, 0.295},  {BlockFormat::Q3_K, 0.158},
               {BlockFormat::Q5_K, 0.039},  {BlockFormat::Q4_0, 0.089}};
  const int64_t k = 4096;
  const auto x = gauss(size_t(8 * k), 42);
  for (const auto& c : cases) {
    const double e = rel_rms(c.f, x, k, nullptr, nullptr);
    EXPECT_LT(e, c.bound) << block_name(c.f);
    std::printf("%-8s rel rms %.4f\n", std::string(block_name(c.f)).c_str(), e);
  }
}

TEST(BlockQuantize, ImportanceWeightsLowerTheWeightedError) {
  const int64_t k = 2048;
  const auto x = gauss(size_t(8 * k), 5);
  auto g = gauss(size_t(k), 6);
  std::vector<float> imp(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) imp[size_t(i)] = std::exp(2.0f * g[size_t(i)]);  // a wide spread
  for (BlockFormat f : kAll) {
    if (!blocks::can_quantize(f)) continue;
    const double plain = rel_rms(f, x, k, nullptr, imp.data());
    const double weighted = rel_rms(f, x, k, imp.data(), imp.data());
    EXPECT_LE(weighted, plain) << block_name(f);
    std::printf("%-8s weighted rel rms: plain %.4f, with imp %.4f\n", std::string(block_name(f)).c_str(), plain,
                weighted);
  }
}

TEST(BlockQuantize, Iq2xxsHasNoQuantizer) {
  EXPECT_FALSE(blocks::can_quantize(BlockFormat::IQ2_XXS));
  std::vector<float> x(256, 1.0f);
  std::vector<uint8_t> q(66);
  EXPECT_THROW(blocks::quantize_row(BlockFormat::IQ2_XXS, x.data(), 256, nullptr, q.data()), Error);
}

TEST(BlockQuantize, ZeroRowsStayZero) {
  for (BlockFormat f : kAll) {
    if (!blocks::can_quantize(f)) continue;
    std::vector<float> x(256, 0.0f), y(256, 1.0f);
    std::vector<uint8_t> q(size_t(block_row_bytes(f, 256)));
    blocks::quantize_row(f, x.data(), 256, nullptr, q.data());
    blocks::dequant_row(f, q.data(), 256, y.data());
    for (float v : y) ASSERT_EQ(v, 0.0f) << block_name(f);
  }
}

// ---- (d) fused products against the double reference; (e) determinism ----

namespace {
// A rows × k matrix in format f: quantized Gaussian rows, or random blocks for IQ2_XXS.
std::vector<uint8_t> matrix(BlockFormat f, int64_t rows, int64_t k, uint32_t seed) {
  if (!blocks::can_quantize(f)) return random_blocks(f, rows * k / block_info(f).elems, seed, true);
  const int64_t rb = block_row_bytes(f, k);
  std::vector<uint8_t> w(static_cast<size_t>(rows * rb));
  const auto x = gauss(size_t(rows * k), seed, 0.05f);
  for (int64_t r = 0; r < rows; ++r) blocks::quantize_row(f, x.data() + r * k, k, nullptr, w.data() + r * rb);
  return w;
}
}  // namespace

TEST(BlockDot, MatchesDoubleReference) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    for (BlockFormat f : kAll) {
      const int64_t el = block_info(f).elems;
      for (int64_t k : {int64_t(256), int64_t(768), int64_t(4096), 3 * el}) {
        const int64_t rows = 23, rb = block_row_bytes(f, k);
        const auto w = matrix(f, rows, k, 11u + unsigned(k));
        for (int64_t S : {1, 2, 3, 7, 16}) {
          const int64_t xs = k + 5;  // a stride that is no multiple of the vector width
          const auto x = gauss(size_t(S * xs), 3u + unsigned(S));
          const int64_t o0 = 3, o1 = 22, ys = rows + 1;
          std::vector<float> y(size_t(S * ys), -1.0f), yref(size_t(S * ys), -1.0f);
          blocks::dot_rows(f, w.data(), k, o0, o1, x.data(), xs, S, y.data(), ys);
          blocks::dot_rows_ref(f, w.data(), k, o0, o1, x.data(), xs, S, yref.data(), ys);
          std::vector<float> row(static_cast<size_t>(k));
          for (int64_t o = 0; o < rows; ++o) {
            blocks::dequant_row_ref(f, w.data() + o * rb, k, row.data());
            for (int64_t s = 0; s < S; ++s) {
              const size_t at = size_t(o + s * ys);
              if (o < o0 || o >= o1) {
                ASSERT_EQ(y[at], -1.0f) << "wrote outside [o0, o1)";
                continue;
              }
              double mag = 0;
              for (int64_t i = 0; i < k; ++i) mag += std::fabs(double(row[size_t(i)]) * x[size_t(s * xs + i)]);
              ASSERT_LE(std::fabs(double(y[at]) - yref[at]), 1e-5 * mag + 1e-30)
                  << block_name(f) << " k=" << k << " S=" << S << " o=" << o << " s=" << s;
            }
          }
        }
      }
    }
  }
  hwy::SetSupportedTargetsForTest(0);
}

TEST(BlockDot, BitIdenticalForAnySplitAndTokenCount) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    for (BlockFormat f : kAll) {
      const int64_t k = 1024, rows = 37, S = 5;
      const auto w = matrix(f, rows, k, 99);
      const auto x = gauss(size_t(S * k), 100);
      std::vector<float> all(static_cast<size_t>(S * rows)), pieces(size_t(S * rows)), single(size_t(S * rows));
      blocks::dot_rows(f, w.data(), k, 0, rows, x.data(), k, S, all.data(), rows);
      const int64_t cuts[] = {0, 5, 6, 17, 18, 30, rows};
      for (size_t i = 0; i + 1 < std::size(cuts); ++i)
        blocks::dot_rows(f, w.data(), k, cuts[i], cuts[i + 1], x.data(), k, S, pieces.data(), rows);
      for (int64_t s = 0; s < S; ++s)  // one token at a time: the decode path
        for (size_t i = 0; i + 1 < std::size(cuts); ++i)
          blocks::dot_rows(f, w.data(), k, cuts[i], cuts[i + 1], x.data() + s * k, k, 1, single.data() + s * rows,
                           rows);
      for (size_t i = 0; i < all.size(); ++i) {
        ASSERT_EQ(f32_to_bits(pieces[i]), f32_to_bits(all[i])) << block_name(f) << " split, output " << i;
        ASSERT_EQ(f32_to_bits(single[i]), f32_to_bits(all[i])) << block_name(f) << " S=1 vs S=5, output " << i;
      }
      // And the same bits on a second run.
      std::vector<float> again(all.size());
      blocks::dot_rows(f, w.data(), k, 0, rows, x.data(), k, S, again.data(), rows);
      ASSERT_EQ(std::memcmp(again.data(), all.data(), all.size() * 4), 0) << block_name(f);
    }
  }
  hwy::SetSupportedTargetsForTest(0);
}

TEST(BlockFormatInfo, ByteCountsAreGgmls) {
  // sizeof(block_*) in ggml-common.h.
  EXPECT_EQ(block_info(BlockFormat::Q8_0).bytes, 2 + 32);
  EXPECT_EQ(block_info(BlockFormat::Q4_0).bytes, 2 + 16);
  EXPECT_EQ(block_info(BlockFormat::MXFP4).bytes, 1 + 16);
  EXPECT_EQ(block_info(BlockFormat::Q2_K).bytes, 16 + 64 + 4);
  EXPECT_EQ(block_info(BlockFormat::Q3_K).bytes, 32 + 64 + 12 + 2);
  EXPECT_EQ(block_info(BlockFormat::Q4_K).bytes, 4 + 12 + 128);
  EXPECT_EQ(block_info(BlockFormat::Q5_K).bytes, 4 + 12 + 32 + 128);
  EXPECT_EQ(block_info(BlockFormat::Q6_K).bytes, 128 + 64 + 16 + 2);
  EXPECT_EQ(block_info(BlockFormat::IQ2_XXS).bytes, 2 + 64);
}
