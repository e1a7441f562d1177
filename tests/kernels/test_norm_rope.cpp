// Rung 2: RMSNorm (architecture.md §4.6) and RoPE/YaRN (§4.7) against double-precision references.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/ref_numerics.h"
#include "kernels/norm.h"
#include "kernels/rope.h"

using namespace dsv4;
namespace ref = dsv4_ref;

// ------------------------------------------------------------------------------------------- RMSNorm

namespace {
// y = w ⊙ (x / sqrt(mean(x²) + eps)), normalise first, then weight; w == nullptr → no weight.
std::vector<double> ref_rmsnorm(const float* x, const float* w, size_t n, double eps) {
  double ss = 0;
  for (size_t i = 0; i < n; ++i) ss += double(x[i]) * double(x[i]);
  const double r = 1.0 / std::sqrt(ss / double(n) + eps);
  std::vector<double> y(n);
  for (size_t i = 0; i < n; ++i) y[i] = (w ? double(w[i]) : 1.0) * (double(x[i]) * r);
  return y;
}
}  // namespace

TEST(RmsNorm, WithAndWithoutWeightVsDouble) {
  for (size_t n : {size_t(7), size_t(128), size_t(256), size_t(512), size_t(4096)}) {
    for (double sigma : {1e-4, 1e-3, 1.0, 300.0}) {  // 1e-4..1e-3: eps (1e-6) is not negligible
      auto x = ref::randn(n, uint32_t(n) + uint32_t(sigma * 1000), sigma, 0.1 * sigma);
      auto w = ref::randn(n, 7 + uint32_t(n), 0.2, 1.0);
      std::vector<float> y(n);
      for (bool weighted : {false, true}) {
        const float* wp = weighted ? w.data() : nullptr;
        rmsnorm(x.data(), wp, n, 1e-6f, y.data());
        auto r = ref_rmsnorm(x.data(), wp, n, 1e-6f);
        for (size_t i = 0; i < n; ++i)
          ASSERT_NEAR(double(y[i]), r[i], 2e-6 * std::fabs(r[i]) + 1e-7)
              << "n=" << n << " sigma=" << sigma << " w=" << weighted << " i=" << i;
      }
    }
  }
}

TEST(RmsNorm, EpsIsInsideTheSqrt) {
  // mean(x²) = 1e-6 = eps → every output is x / sqrt(2e-6).
  const size_t n = 64;
  auto x = ref::randn(n, 3);
  double ss = 0;
  for (float v : x) ss += double(v) * v;
  const double k = std::sqrt(1e-6 / (ss / n));
  for (auto& v : x) v = float(v * k);
  std::vector<float> y(n);
  rmsnorm(x.data(), nullptr, n, 1e-6f, y.data());
  auto r = ref_rmsnorm(x.data(), nullptr, n, double(1e-6f));
  for (size_t i = 0; i < n; ++i) {
    EXPECT_NEAR(y[i], r[i], 1e-5 * std::fabs(r[i]) + 1e-9);
    EXPECT_NEAR(y[i], x[i] / std::sqrt(2e-6), 1e-4 * std::fabs(r[i]) + 1e-9);
  }
}

TEST(RmsNorm, RowsAreIndependent) {
  const size_t S = 5, n = 300;
  auto x = ref::randn(S * n, 11, 2.0);
  for (size_t i = 0; i < n; ++i) x[2 * n + i] *= 1000.0f;  // one row far larger than the others
  auto w = ref::randn(n, 12, 0.3, 1.0);
  std::vector<float> y(S * n);
  rmsnorm_rows(x.data(), w.data(), S, n, 1e-6f, y.data());
  for (size_t s = 0; s < S; ++s) {
    auto r = ref_rmsnorm(x.data() + s * n, w.data(), n, 1e-6f);
    for (size_t i = 0; i < n; ++i) ASSERT_NEAR(y[s * n + i], r[i], 2e-6 * std::fabs(r[i]) + 1e-7) << s << "," << i;
  }
  rmsnorm_rows(x.data(), nullptr, S, n, 1e-6f, y.data());
  for (size_t s = 0; s < S; ++s) {
    auto r = ref_rmsnorm(x.data() + s * n, nullptr, n, 1e-6f);
    for (size_t i = 0; i < n; ++i) ASSERT_NEAR(y[s * n + i], r[i], 2e-6 * std::fabs(r[i]) + 1e-7) << s << "," << i;
  }
}

// ------------------------------------------------------------------------------------------- RoPE / YaRN

namespace {

// architecture.md §4.7 in double: f_i = base^(−2i/r); YaRN blends f_i/factor and f_i with a linear ramp between
// low = max(⌊c(β_fast)⌋, 0) and high = min(⌈c(β_slow)⌉, r−1), c(β) = r·ln(L0/(2πβ)) / (2 ln base).
struct RefTable {
  std::vector<double> f;
  int low = 0, high = 0;
};
RefTable ref_freqs(int r, double base, bool yarn, double factor, double beta_fast, double beta_slow, double L0) {
  RefTable t;
  t.f.resize(size_t(r / 2));
  for (int i = 0; i < r / 2; ++i) t.f[size_t(i)] = 1.0 / std::pow(base, 2.0 * i / r);
  if (!yarn) return t;
  auto c = [&](double beta) { return r * std::log(L0 / (2 * M_PI * beta)) / (2 * std::log(base)); };
  t.low = std::max(int(std::floor(c(beta_fast))), 0);
  t.high = std::min(int(std::ceil(c(beta_slow))), r - 1);
  double lo = t.low, hi = t.high;
  if (lo == hi) hi += 0.001;
  for (int i = 0; i < r / 2; ++i) {
    const double ramp = std::clamp((i - lo) / (hi - lo), 0.0, 1.0);
    const double smooth = 1 - ramp;
    t.f[size_t(i)] = t.f[size_t(i)] / factor * (1 - smooth) + t.f[size_t(i)] * smooth;
  }
  return t;
}

RopeParams yarn_params() {
  RopeParams p;
  p.rope_dim = 64;
  p.base = 160000;
  p.yarn = true;
  p.factor = 16;
  p.beta_fast = 32;
  p.beta_slow = 1;
  p.original_seq_len = 65536;
  return p;
}

// Forward/inverse rotation of the last 64 dims, interleaved pairs, θ = fp32(t)·f_i as an fp32 product,
// cos/sin rounded to fp32, rotation evaluated in double.
std::vector<double> ref_apply(const std::vector<float>& x, const std::vector<float>& freqs, int64_t t, bool inverse) {
  std::vector<double> y(x.begin(), x.end());
  const size_t r = freqs.size() * 2, off = x.size() - r;
  for (size_t i = 0; i < freqs.size(); ++i) {
    const float theta = float(t) * freqs[i];
    const double c = float(std::cos(double(theta))), s = float(std::sin(double(theta)));
    const double a = x[off + 2 * i], b = x[off + 2 * i + 1];
    if (!inverse) {
      y[off + 2 * i] = a * c - b * s;
      y[off + 2 * i + 1] = a * s + b * c;
    } else {
      y[off + 2 * i] = a * c + b * s;
      y[off + 2 * i + 1] = -a * s + b * c;
    }
  }
  return y;
}

}  // namespace

TEST(Rope, YarnLowHighAndFrequenciesForShippedValues) {
  Rope rope(yarn_params());
  EXPECT_EQ(rope.yarn_low(), 15);
  EXPECT_EQ(rope.yarn_high(), 25);
  auto t = ref_freqs(64, 160000, true, 16, 32, 1, 65536);
  EXPECT_EQ(t.low, 15);
  EXPECT_EQ(t.high, 25);
  ASSERT_EQ(rope.freqs().size(), 32u);
  for (int i = 0; i < 32; ++i)
    EXPECT_NEAR(rope.freqs()[size_t(i)], t.f[size_t(i)], 2e-6 * t.f[size_t(i)]) << "pair " << i;
  // Shape of the blend: pairs 0..15 keep base^(−2i/r), pairs 25..31 are divided by 16.
  for (int i = 0; i <= 15; ++i)
    EXPECT_NEAR(rope.freqs()[size_t(i)], std::pow(160000.0, -i / 32.0), 2e-6 * std::pow(160000.0, -i / 32.0));
  for (int i = 25; i < 32; ++i)
    EXPECT_NEAR(rope.freqs()[size_t(i)], std::pow(160000.0, -i / 32.0) / 16, 2e-6 * std::pow(160000.0, -i / 32.0));
  EXPECT_EQ(rope.freqs()[0], 1.0f);
}

TEST(Rope, PlainBaseWithoutYarn) {
  RopeParams p;
  p.rope_dim = 64;
  p.base = 10000;
  Rope rope(p);
  auto t = ref_freqs(64, 10000, false, 1, 32, 1, 0);
  ASSERT_EQ(rope.freqs().size(), 32u);
  for (int i = 0; i < 32; ++i) EXPECT_NEAR(rope.freqs()[size_t(i)], t.f[size_t(i)], 2e-6 * t.f[size_t(i)]) << i;
}

TEST(Rope, YarnClampsForOtherParameters) {
  // Short original length: c(β_fast) < 0 → low clamps to 0. Huge original length: high clamps to r−1.
  struct Case { double base; int64_t L0; double factor; };
  for (Case c : {Case{10000, 64, 4}, Case{10000, int64_t(1) << 40, 8}, Case{160000, 4096, 40}}) {
    RopeParams p = yarn_params();
    p.base = c.base;
    p.original_seq_len = c.L0;
    p.factor = c.factor;
    Rope rope(p);
    auto t = ref_freqs(64, c.base, true, c.factor, 32, 1, double(c.L0));
    EXPECT_EQ(rope.yarn_low(), t.low) << c.L0;
    EXPECT_EQ(rope.yarn_high(), t.high) << c.L0;
    for (int i = 0; i < 32; ++i)
      EXPECT_NEAR(rope.freqs()[size_t(i)], t.f[size_t(i)], 2e-6 * t.f[size_t(i)]) << "L0=" << c.L0 << " pair " << i;
  }
}

TEST(Rope, ForwardRotationOnLast64DimsVsReference) {
  for (bool yarn : {true, false}) {
    RopeParams p = yarn_params();
    if (!yarn) {
      p.yarn = false;
      p.base = 10000;
    }
    Rope rope(p);
    for (int len : {64, 128, 192, 512}) {
      for (int64_t t : {int64_t(0), int64_t(1), int64_t(1000), int64_t(65535), int64_t(1000000), int64_t(1) << 20}) {
        auto x = ref::randn(size_t(len), uint32_t(len * 7 + t % 1000), 2.0);
        auto y = x;
        rope.apply(y.data(), len, t);
        auto want = ref_apply(x, rope.freqs(), t, false);
        for (int i = 0; i < len - 64; ++i) ASSERT_EQ(y[size_t(i)], x[size_t(i)]) << "first dims must be untouched";
        for (int i = len - 64; i < len; ++i)
          ASSERT_NEAR(y[size_t(i)], want[size_t(i)], 2e-6 * (std::fabs(x[size_t(i & ~1)]) + std::fabs(x[size_t(i | 1)])) + 1e-7)
              << "yarn=" << yarn << " len=" << len << " t=" << t << " dim=" << i;
        if (t == 0) {
          for (int i = 0; i < len; ++i) EXPECT_EQ(y[size_t(i)], x[size_t(i)]) << "t = 0 is the identity";
        }
      }
    }
  }
}

TEST(Rope, InterleavedPairsNotHalfSplit) {
  // A unit vector in dim off+0 at t = 1 must move only into dim off+1 (its interleaved partner), with the
  // partner getting sin(f_0·1) = sin(1).
  Rope rope(yarn_params());
  std::vector<float> x(128, 0.0f);
  x[64] = 1.0f;
  rope.apply(x.data(), 128, 1);
  EXPECT_NEAR(x[64], std::cos(1.0), 1e-6);
  EXPECT_NEAR(x[65], std::sin(1.0), 1e-6);
  for (int i = 0; i < 128; ++i) {
    if (i != 64 && i != 65) {
      EXPECT_EQ(x[size_t(i)], 0.0f) << i;
    }
  }
}

TEST(Rope, ThetaIsAnFp32Product) {
  // At t = 10^6 the fp32 rounding of θ moves high-frequency angles by up to ~0.03 rad (architecture.md §4.7): a
  // rotation with θ formed in double must not match, the fp32-θ reference must.
  Rope rope(yarn_params());
  const int64_t t = 1000003;
  auto x = ref::randn(64, 5);
  auto y = x;
  rope.apply(y.data(), 64, t);
  auto want = ref_apply(x, rope.freqs(), t, false);
  double worst_double_theta = 0;
  for (size_t i = 0; i < 32; ++i) {
    ASSERT_NEAR(y[2 * i], want[2 * i], 1e-5);
    ASSERT_NEAR(y[2 * i + 1], want[2 * i + 1], 1e-5);
    const double th = double(t) * double(rope.freqs()[i]);
    const double a = x[2 * i], b = x[2 * i + 1];
    worst_double_theta = std::max(worst_double_theta, std::fabs(a * std::cos(th) - b * std::sin(th) - y[2 * i]));
  }
  EXPECT_GT(worst_double_theta, 1e-3) << "test data too weak to tell fp32 θ from double θ";
}

TEST(Rope, InverseOfForwardIsIdentity) {
  for (bool yarn : {true, false}) {
    RopeParams p = yarn_params();
    p.yarn = yarn;
    Rope rope(p);
    for (int64_t t : {int64_t(0), int64_t(1), int64_t(1000), int64_t(1000000), int64_t(1048575)}) {
      auto x = ref::randn(512, uint32_t(t % 9973) + 3, 3.0);
      auto y = x;
      rope.apply(y.data(), 512, t, false);
      rope.apply(y.data(), 512, t, true);
      for (size_t i = 0; i < 512; ++i) ASSERT_NEAR(y[i], x[i], 1e-5 * std::max(1.0f, std::fabs(x[i]))) << t << " " << i;
      // And the inverse alone matches the reference rotation by −θ.
      auto z = x;
      rope.apply(z.data(), 512, t, true);
      auto want = ref_apply(x, rope.freqs(), t, true);
      for (size_t i = 448; i < 512; ++i) ASSERT_NEAR(z[i], want[i], 2e-5) << t << " " << i;
    }
  }
}
