// index_scores against a double-precision scalar reference of the score of architecture.md §4.13, and independent of
// how the keys are batched (a prefill row scores all its keys at once, decode the same keys again).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/dtype.h"
#include "core/ref_numerics.h"
#include "kernels/index_score.h"

using namespace dsv4;
namespace ref = dsv4_ref;

namespace {

std::vector<double> scalar_scores(const std::vector<float>& q, const std::vector<float>& w, int nH, int dI,
                                  const std::vector<float>& keys, int nvis) {
  std::vector<double> s(static_cast<size_t>(nvis), 0.0);
  for (int j = 0; j < nvis; ++j)
    for (int h = 0; h < nH; ++h) {
      double d = 0;
      for (int i = 0; i < dI; ++i) d += double(q[size_t(h * dI + i)]) * double(keys[size_t(j * dI + i)]);
      s[size_t(j)] += double(w[size_t(h)]) * std::max(d, 0.0);
    }
  return s;
}

}  // namespace

TEST(IndexScores, MatchScalarReferenceForHeadCountsAndKeyTails) {
  // 64 heads × 128 dims as in V4; odd head counts and short dims exercise the padded lanes.
  for (auto [nH, dI] : {std::pair{64, 128}, std::pair{5, 128}, std::pair{17, 32}, std::pair{1, 8}}) {
    for (int nvis : {1, 3, 4, 9, 130}) {
      const auto q = ref::randn(size_t(nH * dI), 1 + uint32_t(nH));
      const auto w = ref::randn(size_t(nH), 2 + uint32_t(nH));
      const auto keys = ref::randn(size_t(nvis * dI), 3 + uint32_t(nvis));
      std::vector<float> got(static_cast<size_t>(nvis));
      index_scores(q.data(), w.data(), nH, dI, keys.data(), nvis, got.data());
      const auto want = scalar_scores(q, w, nH, dI, keys, nvis);
      double scale = 0;  // Σ_h |w_h|·|⟨q_h, K_j⟩|-sized errors are what fp32 sums can make
      for (int h = 0; h < nH; ++h) scale += std::fabs(w[size_t(h)]) * std::sqrt(double(dI)) * 4;
      for (int j = 0; j < nvis; ++j)
        ASSERT_NEAR(double(got[size_t(j)]), want[size_t(j)], 1e-5 * scale) << "nH=" << nH << " j=" << j;
    }
  }
}

TEST(IndexScores, ReluDropsNegativeDotsAndZeroKeysScoreZero) {
  const int nH = 3, dI = 16;
  std::vector<float> q(size_t(nH * dI), 0.0f), w = {1.0f, 2.0f, 4.0f}, keys(size_t(3 * dI), 0.0f);
  for (int i = 0; i < dI; ++i) {
    q[size_t(i)] = 1.0f;             // head 0: +sum(K)
    q[size_t(dI + i)] = -1.0f;       // head 1: -sum(K)
    q[size_t(2 * dI + i)] = 0.5f;    // head 2: +sum(K)/2
    keys[size_t(i)] = 1.0f;          // key 0: sum 16
    keys[size_t(dI + i)] = -1.0f;    // key 1: sum -16
  }
  std::vector<float> got(3);
  index_scores(q.data(), w.data(), nH, dI, keys.data(), 3, got.data());
  EXPECT_EQ(got[0], 1.0f * 16 + 4.0f * 8);  // head 1 is negative: dropped
  EXPECT_EQ(got[1], 2.0f * 16);             // only head 1 is positive
  EXPECT_EQ(got[2], 0.0f);
}

TEST(IndexScores, SameBitsWhateverTheKeyBatch) {
  const int nH = 64, dI = 128, nvis = 23;
  const auto q = ref::randn(size_t(nH * dI), 11), w = ref::randn(size_t(nH), 12),
             keys = ref::randn(size_t(nvis * dI), 13);
  std::vector<float> all(static_cast<size_t>(nvis)), one(1);
  index_scores(q.data(), w.data(), nH, dI, keys.data(), nvis, all.data());
  for (int j = 0; j < nvis; ++j) {
    index_scores(q.data(), w.data(), nH, dI, keys.data() + j * dI, 1, one.data());
    ASSERT_EQ(f32_to_bits(one[0]), f32_to_bits(all[size_t(j)])) << j;
  }
  // A prefix (an earlier position sees fewer keys) scores its keys identically.
  std::vector<float> part(9);
  index_scores(q.data(), w.data(), nH, dI, keys.data(), 9, part.data());
  for (int j = 0; j < 9; ++j) ASSERT_EQ(f32_to_bits(part[size_t(j)]), f32_to_bits(all[size_t(j)]));
}
