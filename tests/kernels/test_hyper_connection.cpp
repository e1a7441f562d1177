// Rung 2: manifold-constrained hyper-connections, architecture.md §4.4 (hc_pre + Sinkhorn), §4.5 (hc_post),
// §4.18 (hc_head), against a double-precision reference written from that text.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "core/ref_numerics.h"
#include "io/safetensors.h"
#include "kernels/hyper_connection.h"

using namespace dsv4;
namespace ref = dsv4_ref;

namespace {

using Mat = std::vector<double>;  // row-major n×n

double sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }

// architecture.md §4.4: 1. row softmax then + eps; 2. column normalisation;
// 3. (iters−1) × (row, column) normalisations.
Mat ref_sinkhorn(Mat C, int n, int iters, double eps) {
  auto at = [&](int i, int j) -> double& { return C[size_t(i * n + j)]; };
  for (int i = 0; i < n; ++i) {
    double m = -INFINITY, s = 0;
    for (int j = 0; j < n; ++j) m = std::max(m, at(i, j));
    for (int j = 0; j < n; ++j) s += std::exp(at(i, j) - m);
    for (int j = 0; j < n; ++j) at(i, j) = std::exp(at(i, j) - m) / s + eps;
  }
  auto cols = [&] {
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int i = 0; i < n; ++i) s += at(i, j);
      for (int i = 0; i < n; ++i) at(i, j) /= (s + eps);
    }
  };
  auto rows = [&] {
    for (int i = 0; i < n; ++i) {
      double s = 0;
      for (int j = 0; j < n; ++j) s += at(i, j);
      for (int j = 0; j < n; ++j) at(i, j) /= (s + eps);
    }
  };
  cols();
  for (int t = 1; t < iters; ++t) {
    rows();
    cols();
  }
  return C;
}

// m = (fn · v) · ρ with ρ = 1/sqrt(mean(v²) + norm_eps) over all n·D values of the un-normalised v.
std::vector<double> ref_mix(const float* fn, int rows, const float* X, int nD, double norm_eps) {
  double ss = 0;
  for (int i = 0; i < nD; ++i) ss += double(X[i]) * X[i];
  const double rho = 1.0 / std::sqrt(ss / nD + norm_eps);
  std::vector<double> m(static_cast<size_t>(rows));
  for (int r = 0; r < rows; ++r) {
    double d = 0;
    for (int i = 0; i < nD; ++i) d += double(fn[size_t(r) * size_t(nD) + size_t(i)]) * X[i];
    m[size_t(r)] = d * rho;
  }
  return m;
}

struct RefPre {
  std::vector<double> x, pre, post, xmag;
  Mat C;
};
RefPre ref_hc_pre(const HcParams& p, const float* X) {
  const int n = p.n, D = p.D;
  auto m = ref_mix(p.fn, (2 + n) * n, X, n * D, p.norm_eps);
  RefPre r;
  r.pre.resize(size_t(n));
  r.post.resize(size_t(n));
  r.C.resize(size_t(n * n));
  for (int k = 0; k < n; ++k) {
    r.pre[size_t(k)] = sigmoid(m[size_t(k)] * p.scale[0] + p.base[k]) + p.hc_eps;
    r.post[size_t(k)] = 2 * sigmoid(m[size_t(n + k)] * p.scale[1] + p.base[n + k]);
  }
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      const int idx = 2 * n + n * i + j;
      r.C[size_t(i * n + j)] = m[size_t(idx)] * p.scale[2] + p.base[idx];
    }
  r.C = ref_sinkhorn(r.C, n, p.sinkhorn_iters, p.hc_eps);
  r.x.assign(size_t(D), 0.0);
  r.xmag.assign(size_t(D), 0.0);
  for (int k = 0; k < n; ++k)
    for (int d = 0; d < D; ++d) {
      r.x[size_t(d)] += r.pre[size_t(k)] * X[size_t(k * D + d)];
      r.xmag[size_t(d)] += std::fabs(r.pre[size_t(k)] * X[size_t(k * D + d)]);
    }
  return r;
}

struct Params {
  std::vector<float> fn, base, scale;
  HcParams hp;
};
Params random_params(int n, int D, int rows, int nscale, uint32_t seed) {
  Params P;
  P.fn = ref::randn(size_t(rows) * size_t(n * D), seed, 0.05);
  P.base = ref::randn(size_t(rows), seed + 1, 1.0);
  P.scale = ref::randu(size_t(nscale), seed + 2, 0.5, 2.0);
  P.hp.fn = P.fn.data();
  P.hp.base = P.base.data();
  P.hp.scale = P.scale.data();
  P.hp.n = n;
  P.hp.D = D;
  return P;
}

void check_hc_pre(const HcParams& hp, const std::vector<float>& X, const std::string& what) {
  const int n = hp.n, D = hp.D;
  std::vector<float> x(size_t(D), NAN), post(size_t(n), NAN), C(size_t(n * n), NAN);
  hc_pre(hp, X.data(), x.data(), post.data(), C.data());
  auto r = ref_hc_pre(hp, X.data());
  for (int k = 0; k < n; ++k) {
    EXPECT_NEAR(post[size_t(k)], r.post[size_t(k)], 2e-6) << what << " post " << k;
    EXPECT_GT(post[size_t(k)], 0.0f) << what;
    EXPECT_LT(post[size_t(k)], 2.0f) << what;
    EXPECT_GT(r.pre[size_t(k)], hp.hc_eps);
    EXPECT_LT(r.pre[size_t(k)], 1 + hp.hc_eps);
  }
  for (int i = 0; i < n * n; ++i) EXPECT_NEAR(C[size_t(i)], r.C[size_t(i)], 2e-6) << what << " C[" << i / n << "][" << i % n << "]";
  for (int j = 0; j < n; ++j) {
    double cs = 0;
    for (int i = 0; i < n; ++i) cs += C[size_t(i * n + j)];
    EXPECT_NEAR(cs, 1.0, n * hp.hc_eps) << what << " column " << j;
  }
  for (int d = 0; d < D; ++d)
    ASSERT_NEAR(x[size_t(d)], r.x[size_t(d)], 2e-6 * r.xmag[size_t(d)] + 1e-7) << what << " x[" << d << "]";
}

}  // namespace

// ------------------------------------------------------------------------------------------- Sinkhorn

TEST(Sinkhorn, MatchesReferenceForSeveralIterationCounts) {
  for (int n : {4, 3}) {
    for (int iters : {1, 2, 3, 20}) {
      for (uint32_t seed : {1u, 2u, 3u}) {
        auto c0 = ref::randn(size_t(n * n), seed * 31 + uint32_t(iters), 2.5);
        std::vector<float> C = c0;
        sinkhorn(C.data(), n, iters, 1e-6f);
        auto r = ref_sinkhorn(Mat(c0.begin(), c0.end()), n, iters, 1e-6);
        for (int i = 0; i < n * n; ++i)
          ASSERT_NEAR(C[size_t(i)], r[size_t(i)], 2e-6) << "n=" << n << " iters=" << iters << " seed=" << seed << " i=" << i;
        // It ends with a column normalisation; once converged (the shipped 20 iterations) the columns sum to 1
        // within n·eps. (After a single iteration a column whose softmax mass S is small sums to S/(S+eps).)
        for (int j = 0; iters == 20 && j < n; ++j) {
          double cs = 0;
          for (int i = 0; i < n; ++i) cs += C[size_t(i * n + j)];
          EXPECT_NEAR(cs, 1.0, n * 1e-6) << "iters=" << iters;
        }
      }
    }
  }
}

TEST(Sinkhorn, OrderIsSoftmaxPlusEpsThenColumns) {
  // One iteration = row softmax + eps, then one column normalisation. With a strongly non-uniform C the
  // rows do NOT sum to 1 afterwards, which tells a column-last order from a row-last one.
  const int n = 4;
  std::vector<float> c0 = {4, 0, 0, 0, 3, 1, 0, -2, 0, 0, 0, 5, 2, 2, -1, 0};
  auto C = c0;
  sinkhorn(C.data(), n, 1, 1e-6f);
  auto r = ref_sinkhorn(Mat(c0.begin(), c0.end()), n, 1, 1e-6);
  double worst_row = 0;
  for (int i = 0; i < n; ++i) {
    double rs = 0;
    for (int j = 0; j < n; ++j) {
      EXPECT_NEAR(C[size_t(i * n + j)], r[size_t(i * n + j)], 1e-6);
      rs += C[size_t(i * n + j)];
    }
    worst_row = std::max(worst_row, std::fabs(rs - 1));
  }
  EXPECT_GT(worst_row, 0.1);
  // Large logits: the row softmax must be max-subtracted (no inf/NaN).
  std::vector<float> big = {500, -500, 80, 0, 1000, 999, 0, 0, -1000, 0, 0, 0, 90, 89, 88, 87};
  auto b = big;
  sinkhorn(b.data(), n, 20, 1e-6f);
  auto rb = ref_sinkhorn(Mat(big.begin(), big.end()), n, 20, 1e-6);
  for (int i = 0; i < n * n; ++i) {
    ASSERT_TRUE(std::isfinite(b[size_t(i)]));
    EXPECT_NEAR(b[size_t(i)], rb[size_t(i)], 1e-5) << i;
  }
}

// ------------------------------------------------------------------------------------------- hc_pre

TEST(HcPre, RealisticSizesRandomParamsVsReference) {
  const int n = 4, D = 256;
  for (uint32_t seed : {10u, 20u, 30u}) {
    Params P = random_params(n, D, (2 + n) * n, 3, seed);
    auto X = ref::randn(size_t(n * D), seed + 7, 1.0);
    for (int d = 0; d < D; ++d) X[size_t(D + d)] *= 3.0f;  // streams of different magnitude
    check_hc_pre(P.hp, X, "seed " + std::to_string(seed));
    // The RMS factor cancels an overall scale of X in m, so pre/post/C are scale-invariant (up to eps).
    auto X2 = X;
    for (auto& v : X2) v *= 64.0f;
    std::vector<float> x1(D), p1(n), C1(n * n), x2(D), p2(n), C2(n * n);
    hc_pre(P.hp, X.data(), x1.data(), p1.data(), C1.data());
    hc_pre(P.hp, X2.data(), x2.data(), p2.data(), C2.data());
    for (int k = 0; k < n; ++k) EXPECT_NEAR(p1[size_t(k)], p2[size_t(k)], 1e-5);
    for (int i = 0; i < n * n; ++i) EXPECT_NEAR(C1[size_t(i)], C2[size_t(i)], 1e-5);
  }
}

TEST(HcPre, UsesNormEpsForRhoAndHcEpsForPreAndSinkhorn) {
  // Tiny X (mean(v²) ≈ 1e-8 ≪ norm_eps) makes ρ depend on norm_eps; distinct norm_eps / hc_eps values
  // pin which one goes where.
  const int n = 4, D = 64;
  Params P = random_params(n, D, (2 + n) * n, 3, 77);
  P.hp.norm_eps = 1e-6f;
  P.hp.hc_eps = 1e-3f;
  P.hp.sinkhorn_iters = 7;
  auto X = ref::randn(size_t(n * D), 78, 1e-4);
  check_hc_pre(P.hp, X, "eps");
}

TEST(HcPre, TinyFlashCheckpointParameters) {
  const std::string shard = std::string(DSV4_TEST_DATA) + "/fixtures/tiny-flash/model-00001-of-00002.safetensors";
  if (!std::filesystem::exists(shard)) GTEST_SKIP() << "fixture not present";
  SafetensorsFile f(shard);
  int checked = 0;
  for (const char* sub : {"attn", "ffn"}) {
    const std::string pfx = std::string("layers.0.hc_") + sub;
    auto& T = f.tensors();
    if (!T.count(pfx + "_fn")) continue;
    const TensorInfo &fn = T.at(pfx + "_fn"), &base = T.at(pfx + "_base"), &scale = T.at(pfx + "_scale");
    ASSERT_EQ(fn.dtype, DType::F32);
    ASSERT_EQ(fn.shape, (std::vector<int64_t>{24, 1024}));
    std::vector<float> vfn(24 * 1024), vb(24), vs(3);
    std::memcpy(vfn.data(), fn.data, fn.nbytes);
    std::memcpy(vb.data(), base.data, base.nbytes);
    std::memcpy(vs.data(), scale.data, scale.nbytes);
    HcParams hp;
    hp.fn = vfn.data();
    hp.base = vb.data();
    hp.scale = vs.data();
    hp.n = 4;
    hp.D = 256;
    auto X = ref::randn(1024, 5, 0.02);
    check_hc_pre(hp, X, pfx);
    ++checked;
  }
  EXPECT_GT(checked, 0) << "no layers.0.hc_* tensors found in " << shard;
}

// ------------------------------------------------------------------------------------------- hc_post

TEST(HcPost, DestinationJUsesColumnJ) {
  // C[0][1] = 1, everything else 0, post = 0: stream 0 is copied into destination 1 only.
  const int n = 4, D = 8;
  auto X = ref::randn(size_t(n * D), 1);
  auto f = ref::randn(size_t(D), 2);
  std::vector<float> C(size_t(n * n), 0.0f), post(size_t(n), 0.0f), out(size_t(n * D), NAN);
  C[0 * n + 1] = 1.0f;
  hc_post(n, D, f.data(), X.data(), post.data(), C.data(), out.data());
  for (int d = 0; d < D; ++d) {
    EXPECT_EQ(out[size_t(1 * D + d)], X[size_t(0 * D + d)]);
    EXPECT_EQ(out[size_t(0 * D + d)], 0.0f);
    EXPECT_EQ(out[size_t(2 * D + d)], 0.0f);
    EXPECT_EQ(out[size_t(3 * D + d)], 0.0f);
  }
}

TEST(HcPost, NonSymmetricCRandomVsReference) {
  const int n = 4, D = 256;
  for (uint32_t seed : {3u, 4u}) {
    auto X = ref::randn(size_t(n * D), seed);
    auto f = ref::randn(size_t(D), seed + 10, 2.0);
    auto post = ref::randu(size_t(n), seed + 20, 0.1, 1.9);
    auto C = ref::randu(size_t(n * n), seed + 30, 0.0, 1.0);
    C[0 * n + 3] = 0.9f;  // make sure C is far from symmetric
    C[3 * n + 0] = 0.01f;
    std::vector<float> out(size_t(n * D), NAN);
    hc_post(n, D, f.data(), X.data(), post.data(), C.data(), out.data());
    for (int j = 0; j < n; ++j)
      for (int d = 0; d < D; ++d) {
        double want = double(post[size_t(j)]) * f[size_t(d)], mag = std::fabs(want);
        for (int i = 0; i < n; ++i) {
          const double t = double(C[size_t(i * n + j)]) * X[size_t(i * D + d)];
          want += t;
          mag += std::fabs(t);
        }
        ASSERT_NEAR(out[size_t(j * D + d)], want, 2e-6 * mag + 1e-7) << "j=" << j << " d=" << d;
      }
  }
}

TEST(HcPreThenPost, ComposesLikeABlock) {
  // hc_pre output feeds hc_post: compare the whole chain with the double reference.
  const int n = 4, D = 256;
  Params P = random_params(n, D, (2 + n) * n, 3, 555);
  auto X = ref::randn(size_t(n * D), 556);
  std::vector<float> x(D), post(n), C(n * n), out(n * D);
  hc_pre(P.hp, X.data(), x.data(), post.data(), C.data());
  auto f = x;  // stand-in for the sublayer: identity
  hc_post(n, D, f.data(), X.data(), post.data(), C.data(), out.data());
  auto r = ref_hc_pre(P.hp, X.data());
  for (int j = 0; j < n; ++j)
    for (int d = 0; d < D; ++d) {
      double want = r.post[size_t(j)] * r.x[size_t(d)];
      for (int i = 0; i < n; ++i) want += r.C[size_t(i * n + j)] * X[size_t(i * D + d)];
      ASSERT_NEAR(out[size_t(j * D + d)], want, 1e-5) << j << " " << d;
    }
}

// ------------------------------------------------------------------------------------------- hc_head

TEST(HcHead, RandomParamsVsReference) {
  const int n = 4, D = 256;
  for (uint32_t seed : {40u, 50u}) {
    Params P = random_params(n, D, n, 1, seed);
    auto X = ref::randn(size_t(n * D), seed + 3, 0.5);
    for (int d = 0; d < D; ++d) X[size_t(3 * D + d)] *= 4.0f;
    std::vector<float> z(size_t(D), NAN);
    hc_head(P.hp, X.data(), z.data());
    auto m = ref_mix(P.fn.data(), n, X.data(), n * D, P.hp.norm_eps);
    std::vector<double> pre(static_cast<size_t>(n));
    for (int k = 0; k < n; ++k) {
      pre[size_t(k)] = sigmoid(m[size_t(k)] * P.scale[0] + P.base[size_t(k)]) + P.hp.hc_eps;  // no ×2, no Sinkhorn
      EXPECT_GT(pre[size_t(k)], P.hp.hc_eps);
      EXPECT_LT(pre[size_t(k)], 1 + P.hp.hc_eps);
    }
    for (int d = 0; d < D; ++d) {
      double want = 0, mag = 0;
      for (int k = 0; k < n; ++k) {
        want += pre[size_t(k)] * X[size_t(k * D + d)];
        mag += std::fabs(pre[size_t(k)] * X[size_t(k * D + d)]);
      }
      ASSERT_NEAR(z[size_t(d)], want, 2e-6 * mag + 1e-7) << "seed " << seed << " d=" << d;
    }
  }
}
