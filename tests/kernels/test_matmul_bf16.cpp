// The BF16 dot-product path against its scalar reference, bit for bit, on random FP8 and FP4
// weights: every batch size (decode tiles, prefill tiles, token-group tails), any split of the
// rows, and each token alone equal to the same token in a batch. The reference itself is checked
// against a double-precision dot of the dequantised weights.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "kernels/linear.h"
#include "kernels/matmul_bf16.h"
#include "kernels/quant.h"

using namespace dsv4;

namespace {

struct Matrix {
  std::vector<uint8_t> w, sc;
  Linear view;
};

// Random non-NaN e4m3 codes; E8M0 block scales around 2^-10, one block at 2^120 (the two-multiply
// case of the decoder). 300 rows cross two 128-row blocks; K ends in a partial 128-column block.
Matrix fp8_matrix(int64_t out, int64_t in, std::mt19937& rng) {
  Matrix m;
  m.w.resize(size_t(out * in));
  for (auto& c : m.w) {
    c = uint8_t(rng());
    if ((c & 0x7F) == 0x7F) c ^= 1;
  }
  const int64_t rb = (out + 127) / 128, cb = (in + 127) / 128;
  m.sc.resize(size_t(rb * cb));
  for (auto& s : m.sc) s = uint8_t(110 + rng() % 12);
  // The last block at 2^120, where s·2^8 would overflow: codes below 2^8 keep its weights finite.
  m.sc.back() = 247;
  for (int64_t o = (rb - 1) * 128; o < out; ++o)
    for (int64_t k = (cb - 1) * 128; k < in; ++k) m.w[size_t(o * in + k)] &= 0xB7;
  m.view.fmt = Linear::Format::FP8;
  m.view.out = out;
  m.view.in = in;
  m.view.scale_cols = cb;
  m.view.w = m.w.data();
  m.view.scale = m.sc.data();
  return m;
}

Matrix fp4_matrix(int64_t out, int64_t in, std::mt19937& rng) {
  Matrix m;
  m.w.resize(size_t(out * in / 2));
  for (auto& c : m.w) c = uint8_t(rng());
  m.sc.resize(size_t(out * in / 32));
  for (auto& s : m.sc) s = uint8_t(112 + rng() % 16);
  m.view.fmt = Linear::Format::FP4;
  m.view.out = out;
  m.view.in = in;
  m.view.scale_cols = in / 32;
  m.view.w = m.w.data();
  m.view.scale = m.sc.data();
  return m;
}

// S activation rows through the FP8 round trip (so exact in BF16). The last 128-column block is
// small, which keeps products with the 2^120 scale finite.
std::vector<float> activations(int64_t S, int64_t K, std::mt19937& rng) {
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<float> x(size_t(S * K));
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = n(rng) * (rng() % 8 == 0 ? 30.0f : 1.0f) * (int64_t(i) % K >= (K - 1) / 128 * 128 ? 0x1p-16f : 1.0f);
  for (int64_t s = 0; s < S; ++s) fp8_roundtrip(x.data() + s * K, size_t(K), 128);
  return x;
}

std::vector<uint16_t> ordered(const Linear& W, const std::vector<float>& x, int64_t S, int64_t xs) {
  std::vector<uint16_t> xb(size_t(S * xs), 0);
  for (int64_t s = 0; s < S; ++s) bf16dot::order_activation(W, x.data() + s * W.in, xb.data() + s * xs);
  return xb;
}

void expect_bits(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_EQ(f32_to_bits(got[i]), f32_to_bits(want[i])) << what << " at " << i << ": " << got[i] << " vs " << want[i];
}

void check_matrix(const Linear& W, std::mt19937& rng) {
  const int64_t xs = W.in + 32;
  for (int64_t S : {1, 2, 3, 4, 5, 8, 9, 17, 40}) {
    SCOPED_TRACE("S = " + std::to_string(S));
    const auto x = activations(S, W.in, rng);
    const auto xb = ordered(W, x, S, xs);
    std::vector<float> got(size_t(S * W.out)), want(got.size()), split(got.size());
    bf16dot::rows(W, 0, W.out, xb.data(), xs, S, got.data(), W.out);
    bf16dot::reference_rows(W, 0, W.out, xb.data(), xs, S, want.data(), W.out);
    expect_bits(got, want, "kernel vs reference");
    // Any split of the rows (threads), including splits inside a 3-row or 8-row tile.
    for (int64_t a = 0; a < W.out;) {
      const int64_t b = std::min(W.out, a + 1 + (a * 7) % 19);
      bf16dot::rows(W, a, b, xb.data(), xs, S, split.data(), W.out);
      a = b;
    }
    expect_bits(split, want, "split rows");
    // Each token alone gives the bits it gets inside the batch.
    if (S > 1)
      for (int64_t s = 0; s < S; s += 3) {
        std::vector<float> one(size_t(W.out));
        bf16dot::rows(W, 0, W.out, xb.data() + s * xs, xs, 1, one.data(), W.out);
        for (int64_t o = 0; o < W.out; ++o)
          ASSERT_EQ(f32_to_bits(one[size_t(o)]), f32_to_bits(want[size_t(s * W.out + o)])) << "token " << s << " row " << o;
      }
    // The reference is the dot product: within the fp32 rounding of K additions.
    std::vector<float> row(size_t(W.in));
    for (int64_t o = 0; o < W.out; o += 37) {
      W.dequant_row(o, row.data());
      for (int64_t s = 0; s < S; ++s) {
        double exact = 0, mag = 0;
        for (int64_t k = 0; k < W.in; ++k) {
          exact += double(row[size_t(k)]) * double(x[size_t(s * W.in + k)]);
          mag += std::fabs(double(row[size_t(k)]) * double(x[size_t(s * W.in + k)]));
        }
        EXPECT_LE(std::fabs(want[size_t(s * W.out + o)] - exact), mag * double(W.in) * 0x1p-24 + 1e-30)
            << "row " << o << " token " << s;
      }
    }
  }
}

class Bf16Dot : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!bf16dot::supported()) GTEST_SKIP() << "this CPU has no AVX512_BF16";
  }
};

TEST_F(Bf16Dot, Fp8MatchesReferenceBitForBit) {
  std::mt19937 rng(11);
  auto m = fp8_matrix(300, 608, rng);
  ASSERT_TRUE(bf16dot::covers(m.view));
  check_matrix(m.view, rng);
}

TEST_F(Bf16Dot, Fp4MatchesReferenceBitForBit) {
  std::mt19937 rng(12);
  auto m = fp4_matrix(61, 1088, rng);  // K spans three 512-chunks; 61 rows leave tile tails
  ASSERT_TRUE(bf16dot::covers(m.view));
  check_matrix(m.view, rng);
}

TEST_F(Bf16Dot, CoversOnlyExactShapes) {
  std::mt19937 rng(13);
  auto a = fp8_matrix(8, 48, rng);
  EXPECT_FALSE(bf16dot::covers(a.view));  // K not a multiple of 32
  auto b = fp4_matrix(8, 96, rng);
  EXPECT_FALSE(bf16dot::covers(b.view));  // K not a multiple of 64
  b.view.scale_f32 = true;
  EXPECT_FALSE(bf16dot::covers(b.view));
  Linear bf;
  bf.fmt = Linear::Format::BF16;
  bf.in = 64;
  EXPECT_FALSE(bf16dot::covers(bf));
}

// matmul with the round trip takes this path; matmul_pair gives the two products' bits.
TEST_F(Bf16Dot, MatmulTakesThePathWithRoundTrip) {
  if (!bf16dot::available()) GTEST_SKIP() << "DSV4_DOT=fp32";
  std::mt19937 rng(14);
  auto a = fp4_matrix(70, 512, rng), b = fp4_matrix(70, 512, rng);
  const int64_t S = 6;
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<float> x(size_t(S * 512));
  for (auto& v : x) v = n(rng);
  ThreadPool pool(2);
  std::vector<float> ya(size_t(S * 70)), yb(ya.size()), pa(ya.size()), pb(ya.size()), want(ya.size());
  matmul(a.view, x.data(), S, ya.data(), true, pool);
  matmul(b.view, x.data(), S, yb.data(), true, pool);
  matmul_pair(a.view, b.view, x.data(), S, pa.data(), pb.data(), true, pool);
  expect_bits(pa, ya, "pair A");
  expect_bits(pb, yb, "pair B");
  auto xq = x;
  for (int64_t s = 0; s < S; ++s) fp8_roundtrip(xq.data() + s * 512, 512, 128);
  const auto xb = ordered(a.view, xq, S, 512);
  bf16dot::reference_rows(a.view, 0, 70, xb.data(), 512, S, want.data(), 70);
  expect_bits(ya, want, "matmul vs reference");
}

TEST_F(Bf16Dot, BurnCountsFlops) {
  float sink = 1.0f;
  EXPECT_EQ(bf16dot::burn(1000, &sink), 1000.0 * 12 * 16 * 4);
  EXPECT_TRUE(std::isfinite(sink));
}

}  // namespace
