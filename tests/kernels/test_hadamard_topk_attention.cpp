// Rung 2 (architecture.md §9): Walsh–Hadamard (§4.13, fixtures README §6 rule 3), top-k with the fixed
// tie rule (§4.13) and sparse attention with a sink (§4.14).
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "core/ref_numerics.h"
#include "kernels/attention.h"
#include "kernels/hadamard.h"
#include "kernels/topk.h"

using namespace dsv4;
namespace ref = dsv4_ref;

// ------------------------------------------------------------------------------------------- Hadamard

TEST(Hadamard, MatchesExplicitSylvesterMatrix) {
  for (size_t n : {size_t(1), size_t(2), size_t(4), size_t(16), size_t(64), size_t(128), size_t(256)}) {
    for (uint32_t seed : {1u, 2u}) {
      auto x = ref::randn(n, seed * 1000 + uint32_t(n), 3.0);
      auto y = x;
      hadamard(y.data(), n);
      for (size_t i = 0; i < n; ++i) {
        double acc = 0, mag = 0;
        for (size_t j = 0; j < n; ++j) {
          const double h = (std::popcount(i & j) & 1) ? -1.0 : 1.0;
          acc += h * x[j];
          mag += std::fabs(x[j]);
        }
        acc /= std::sqrt(double(n));
        ASSERT_NEAR(y[i], acc, 1e-6 * mag / std::sqrt(double(n)) + 1e-7) << "n=" << n << " i=" << i;
      }
    }
  }
}

TEST(Hadamard, BasisVectorsGiveRowsOfH) {
  // H e_j = column j of H / sqrt(n): pins the natural (Sylvester) order and the absence of random signs.
  for (size_t n : {size_t(64), size_t(128)}) {
    for (size_t j : {size_t(0), size_t(1), size_t(5), n - 1}) {
      std::vector<float> e(n, 0.0f);
      e[j] = 1.0f;
      hadamard(e.data(), n);
      for (size_t i = 0; i < n; ++i)
        EXPECT_FLOAT_EQ(e[i], ((std::popcount(i & j) & 1) ? -1.0f : 1.0f) / std::sqrt(float(n))) << n << " " << i << " " << j;
    }
  }
}

TEST(Hadamard, AppliedTwiceIsIdentity) {
  // (H/√n)(H/√n) = H·H/n = I.
  for (size_t n : {size_t(64), size_t(128)}) {
    auto x = ref::randn(n, 17 + uint32_t(n), 5.0);
    auto y = x;
    hadamard(y.data(), n);
    hadamard(y.data(), n);
    for (size_t i = 0; i < n; ++i) EXPECT_NEAR(y[i], x[i], 1e-5 * std::max(1.0f, std::fabs(x[i]))) << n << " " << i;
    // Orthonormal: the norm is preserved.
    auto z = x;
    hadamard(z.data(), n);
    double a = 0, b = 0;
    for (size_t i = 0; i < n; ++i) {
      a += double(x[i]) * x[i];
      b += double(z[i]) * z[i];
    }
    EXPECT_NEAR(a, b, 1e-5 * a);
  }
}

// ------------------------------------------------------------------------------------------- top-k

namespace {
std::vector<int32_t> ref_topk(const std::vector<float>& s, int32_t k) {
  std::vector<int32_t> idx(s.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return s[size_t(a)] > s[size_t(b)]; });
  idx.resize(size_t(std::max(0, std::min<int32_t>(k, int32_t(s.size())))));
  return idx;
}
}  // namespace

TEST(TopK, DescendingWithLowerIndexFirstOnTies) {
  std::mt19937 g(123);
  for (int32_t n : {1, 2, 7, 64, 300, 2048}) {
    // Few distinct values (bf16-like scores) → many exact ties; some −inf (masked entries).
    std::vector<float> s(static_cast<size_t>(n));
    std::uniform_int_distribution<int> d(-8, 8);
    for (auto& v : s) v = float(d(g)) * 0.25f;
    for (int32_t i = 0; i < n; i += 5) s[size_t(i)] = -INFINITY;
    for (int32_t k : {0, 1, 3, n / 2, n - 1, n, n + 5}) {
      if (k < 0) continue;
      auto got = topk_desc(s.data(), n, k);
      auto want = ref_topk(s, k);
      ASSERT_EQ(got, want) << "n=" << n << " k=" << k;
    }
  }
}

TEST(TopK, EdgeCases) {
  const std::vector<float> s = {0.5f, 2.0f, 2.0f, -1.0f, 2.0f, 0.5f};
  EXPECT_EQ(topk_desc(s.data(), 6, 3), (std::vector<int32_t>{1, 2, 4}));
  EXPECT_EQ(topk_desc(s.data(), 6, 4), (std::vector<int32_t>{1, 2, 4, 0}));
  EXPECT_EQ(topk_desc(s.data(), 6, 6), (std::vector<int32_t>{1, 2, 4, 0, 5, 3}));
  EXPECT_EQ(topk_desc(s.data(), 6, 100), (std::vector<int32_t>{1, 2, 4, 0, 5, 3})) << "k > n returns n";
  EXPECT_TRUE(topk_desc(s.data(), 6, 0).empty());
  EXPECT_TRUE(topk_desc(s.data(), 0, 5).empty());
  // Random distinct scores: exactly the sorted order.
  auto r = ref::randn(1000, 4);
  EXPECT_EQ(topk_desc(r.data(), 1000, 512), ref_topk(r, 512));
}

// ------------------------------------------------------------------------------------------- sink attention

namespace {
// Dense softmax over [z_0 … z_{n−1}, sink] (max over all n+1 entries, computed in double), the sink's value
// vector being zero: out = Σ_k p_k kv_k.
std::vector<double> ref_sink_attention(const std::vector<float>& q, const std::vector<const float*>& rows, int dim,
                                       double scale, double sink) {
  const size_t n = rows.size();
  std::vector<double> z(n + 1);
  for (size_t k = 0; k < n; ++k) {
    double d = 0;
    for (int i = 0; i < dim; ++i) d += double(q[size_t(i)]) * rows[k][i];
    z[k] = scale * d;
  }
  z[n] = sink;
  const double m = *std::max_element(z.begin(), z.end());
  double den = 0;
  for (double v : z) den += std::exp(v - m);
  std::vector<double> out(size_t(dim), 0.0);
  for (size_t k = 0; k < n; ++k) {
    const double p = std::exp(z[k] - m) / den;
    for (int i = 0; i < dim; ++i) out[size_t(i)] += p * rows[k][i];
  }
  return out;
}

void check_attention(int n, int dim, double qsigma, float sink, uint32_t seed, double tol) {
  auto q = ref::randn(size_t(dim), seed, qsigma);
  auto kv = ref::randn(size_t(n) * size_t(dim) + 1, seed + 1);
  // Rows are addressed through pointers in a shuffled order (as the index lists do).
  std::vector<const float*> rows(static_cast<size_t>(n));
  std::vector<int> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(seed + 2));
  for (int k = 0; k < n; ++k) rows[size_t(k)] = kv.data() + size_t(perm[size_t(k)]) * size_t(dim);
  const float scale = 1.0f / std::sqrt(float(dim));
  std::vector<float> out(size_t(dim), NAN);
  sink_attention(q.data(), rows.data(), n, dim, scale, sink, out.data());
  auto want = ref_sink_attention(q, rows, dim, scale, sink);
  for (int i = 0; i < dim; ++i) {
    ASSERT_TRUE(std::isfinite(out[size_t(i)])) << "n=" << n << " i=" << i;
    ASSERT_NEAR(out[size_t(i)], want[size_t(i)], tol) << "n=" << n << " qsigma=" << qsigma << " sink=" << sink << " i=" << i;
  }
}
}  // namespace

TEST(SinkAttention, MatchesDenseSoftmaxWithSinkColumn) {
  for (int n : {1, 2, 5, 64, 65, 200, 640}) {
    for (float sink : {-3.0f, 0.0f, 1.7f}) check_attention(n, 512, 1.0, sink, uint32_t(n) * 13 + 1, 1e-5);
    check_attention(n, 128, 1.0, 0.5f, uint32_t(n) * 17 + 5, 1e-5);
  }
}

TEST(SinkAttention, SinkIsNotInTheMaxButIsInTheDenominator) {
  // Two identical rows with score z and a sink s: each row gets e^z / (2e^z + e^s); output = kv · 2p.
  const int dim = 4;
  const float kv[dim] = {1, -2, 3, 0.5f};
  const float* rows[2] = {kv, kv};
  const float q[dim] = {0.3f, 0.1f, -0.2f, 0.4f};
  const double z = (0.3 - 0.2 - 0.6 + 0.2) * 0.5;
  for (float s : {-50.0f, -1.0f, 0.0f, 2.0f, 30.0f}) {
    float out[dim];
    sink_attention(q, rows, 2, dim, 0.5f, s, out);
    const double w = 2.0 / (2.0 + std::exp(double(s) - z));
    for (int i = 0; i < dim; ++i) EXPECT_NEAR(out[i], kv[i] * w, 1e-6 * std::fabs(kv[i])) << s;
  }
}

TEST(SinkAttention, EmptyRowGivesZeros) {
  std::vector<float> q = ref::randn(512, 1), out(512, NAN);
  sink_attention(q.data(), nullptr, 0, 512, 0.044f, 3.0f, out.data());
  for (float v : out) EXPECT_EQ(v, 0.0f);
}

TEST(SinkAttention, LargeScoreRangesStayFinite) {
  // q with σ = 3000 gives scores spread over ±~10^4: a naive exp would overflow.
  for (int n : {3, 100, 300}) {
    check_attention(n, 512, 3000.0, 0.0f, 900 + uint32_t(n), 1e-5);
    check_attention(n, 512, 3000.0, 5000.0f, 950 + uint32_t(n), 1e-5);   // sink far above every score
    check_attention(n, 512, 3000.0, -5000.0f, 990 + uint32_t(n), 1e-5);  // sink far below
  }
  // Scores all far below the sink (−10^4 vs 0): output ≈ 0, not NaN.
  std::vector<float> kv(512, 1.0f), q(512, -1000.0f), out(512, NAN);
  const float* rows[1] = {kv.data()};
  sink_attention(q.data(), rows, 1, 512, 1.0f / std::sqrt(512.0f), 0.0f, out.data());
  for (float v : out) {
    EXPECT_TRUE(std::isfinite(v));
    EXPECT_NEAR(v, 0.0f, 1e-30);
  }
}

TEST(SinkAttention, HeadsTogetherEqualOneHeadAtATime) {
  // 19 heads: two blocks of 8 and 3 left over; dim 40 is no multiple of two vectors (per-head path).
  for (int dim : {512, 128, 40}) {
    for (int n : {0, 1, 37, 300}) {
      const int H = 19;
      auto q = ref::randn(size_t(H * dim), uint32_t(dim + n), 2.0);
      auto kv = ref::randn(size_t(n + 1) * size_t(dim), uint32_t(dim * 7 + n));
      auto sinks = ref::randn(size_t(H), uint32_t(n + 3));
      std::vector<const float*> rows(static_cast<size_t>(n));
      for (int k = 0; k < n; ++k) rows[size_t(k)] = kv.data() + size_t((k * 7) % (n + 1)) * size_t(dim);
      const float scale = 1.0f / std::sqrt(float(dim));
      std::vector<float> together(size_t(H * dim), NAN), alone(size_t(H * dim), NAN);
      sink_attention_heads(q.data(), H, rows.data(), n, dim, scale, sinks.data(), together.data());
      for (int h = 0; h < H; ++h)
        sink_attention(q.data() + h * dim, rows.data(), n, dim, scale, sinks[size_t(h)], alone.data() + h * dim);
      for (size_t i = 0; i < together.size(); ++i)
        ASSERT_EQ(together[i], alone[i]) << "dim=" << dim << " n=" << n << " i=" << i;
    }
  }
}
