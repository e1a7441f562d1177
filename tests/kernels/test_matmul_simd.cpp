// The SIMD weight decoders against the scalar format definitions, exactly: every e4m3 and e2m1 code
// under the extreme E8M0 scales (2^-127 subnormal, 2^7 and 2^8 around the single-multiply limit of
// the FP8 decoder, 2^127), and the fused decode path bit-identical to dequantise-then-dot.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "kernels/linear.h"
#include "kernels/matmul_simd.h"

using namespace dsv4;

namespace {

// W's rows in natural order through the scalar reference, then permuted to kernel order.
std::vector<float> kernel_order_row(const Linear& W, int64_t o) {
  const int64_t kp = int64_t(simd::padded(W.in));
  std::vector<float> nat(size_t(W.in)), out(size_t(kp), 0.0f);
  W.dequant_row(o, nat.data());
  simd::order_activation(W, nat.data(), out.data());  // the same permutation as the weights
  return out;
}

// Owns a weight matrix and its scales; `view` is the Linear over them.
struct Matrix {
  std::vector<uint8_t> w, sc;
  Linear view;
};

// One 128-row block; each row holds all 254 non-NaN e4m3 codes (shifted per row), one scale per
// 128-column block.
Matrix fp8_matrix(const std::vector<uint8_t>& scales) {
  const int64_t nb = int64_t(scales.size()), out = 128, in = 128 * nb;
  Matrix m;
  m.w.resize(static_cast<size_t>(out * in));
  m.sc = scales;
  int codes[254], n = 0;
  for (int c = 0; c < 256; ++c)
    if ((c & 0x7f) != 0x7f) codes[n++] = c;
  for (int64_t o = 0; o < out; ++o)
    for (int64_t k = 0; k < in; ++k) m.w[size_t(o * in + k)] = uint8_t(codes[(o * 131 + k) % 254]);
  m.view.fmt = Linear::Format::FP8;
  m.view.out = out;
  m.view.in = in;
  m.view.scale_cols = nb;
  m.view.w = m.w.data();
  m.view.scale = m.sc.data();
  return m;
}

// Every byte (so every nibble pair) in each row; the scales cycle over the list per 32-block.
Matrix fp4_matrix(const std::vector<uint8_t>& scales) {
  const int64_t out = 16, in = 64 * int64_t(scales.size());
  Matrix m;
  m.w.resize(static_cast<size_t>(out * in / 2));
  m.sc.resize(static_cast<size_t>(out * in / 32));
  for (size_t i = 0; i < m.w.size(); ++i) m.w[i] = uint8_t((i * 37 + i / 16) & 0xff);
  for (size_t i = 0; i < m.sc.size(); ++i) m.sc[i] = scales[i % scales.size()];
  m.view.fmt = Linear::Format::FP4;
  m.view.out = out;
  m.view.in = in;
  m.view.scale_cols = in / 32;
  m.view.w = m.w.data();
  m.view.scale = m.sc.data();
  return m;
}

void expect_dequant_exact(const Linear& W) {
  const int64_t kp = int64_t(simd::padded(W.in));
  std::vector<float> got(static_cast<size_t>(kp));
  for (int64_t o = 0; o < W.out; ++o) {
    simd::dequant_row(W, o, got.data());
    const auto want = kernel_order_row(W, o);
    for (int64_t k = 0; k < kp; ++k) {
      ASSERT_EQ(std::signbit(got[size_t(k)]), std::signbit(want[size_t(k)])) << "row " << o << " k " << k;
      ASSERT_EQ(got[size_t(k)], want[size_t(k)]) << "row " << o << " k " << k;
    }
  }
}

// Fused decode (S = 1..4) and prefill (S > 4, token groups of the sizes splits produce) equal
// dequant_row + dot for every row, bit for bit, also when a call covers rows from the middle of a
// 128-row FP8 scale block.
void expect_fused_equals_dequant_dot(const Linear& W) {
  const int64_t kp = int64_t(simd::padded(W.in));
  std::mt19937 g(5);
  std::normal_distribution<float> n(0.0f, 1.0f);
  for (int64_t S : {1, 2, 3, 4, 5, 7, 9, 10, 12, 13, 19, 25}) {
    std::vector<float> x(static_cast<size_t>(S * kp), 0.0f);
    for (int64_t s = 0; s < S; ++s)
      for (int64_t k = 0; k < W.in; ++k) x[size_t(s * kp + k)] = n(g);
    std::vector<float> fused(static_cast<size_t>(S * W.out)), ref(static_cast<size_t>(S * W.out));
    // Three calls: the row tiles' remainders of 1 and 2 rows occur too.
    const int64_t mid = W.out / 3 + 1, mid2 = mid + 5;
    simd::dot_rows_fused(W, 0, mid, x.data(), kp, S, kp, fused.data(), W.out);
    simd::dot_rows_fused(W, mid, mid2, x.data(), kp, S, kp, fused.data(), W.out);
    simd::dot_rows_fused(W, mid2, W.out, x.data(), kp, S, kp, fused.data(), W.out);
    std::vector<float> row(static_cast<size_t>(kp));
    for (int64_t o = 0; o < W.out; ++o) {
      simd::dequant_row(W, o, row.data());
      const float* rp = row.data();
      simd::dot(&rp, 1, x.data(), kp, S, kp, ref.data() + o, 1, W.out);
    }
    for (size_t i = 0; i < fused.size(); ++i) {
      ASSERT_TRUE(std::isfinite(fused[i]));
      ASSERT_EQ(fused[i], ref[i]) << "S=" << S << " i=" << i;
    }
  }
}

// 2^-127 (subnormal), 2^-126, small, 2^0, 2^7 / 2^8 / 2^9 around the FP8 single-multiply limit, huge.
const std::vector<uint8_t> kAllScales = {0, 1, 100, 127, 134, 135, 136, 200, 254};
const std::vector<uint8_t> kFiniteScales = {0, 1, 100, 127, 134, 135, 136};  // sums stay finite

TEST(SimdDecoders, Fp8EveryCodeUnderExtremeScales) {
  expect_dequant_exact(fp8_matrix(kAllScales).view);
  expect_fused_equals_dequant_dot(fp8_matrix(kFiniteScales).view);
}

TEST(SimdDecoders, Fp4EveryCodeUnderExtremeScales) {
  expect_dequant_exact(fp4_matrix(kAllScales).view);
  expect_fused_equals_dequant_dot(fp4_matrix(kFiniteScales).view);
}

}  // namespace
