// index_scores (kernels/index_score.h): q transposed once so a vector holds one dim of N heads; per
// key dim, N heads × 4 keys take one FMA each against the broadcast key value.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/index_score.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/index_score_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace dsv4::simd::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

constexpr int kHeadVecs = 4;  // head vectors per pass: kHeadVecs × KB accumulators

// Keys [j0, j0+KB): tot[kk] += Σ over head vectors [v0, v1) of w·relu(q·K), per lane.
template <int KB>
HWY_INLINE void KeyBlock(const float* qt, const float* wp, int64_t hp, int dI, const float* keys, int32_t j0, int v0,
                         int v1, VF* tot) {
  const DF df;
  const int64_t N = int64_t(hn::Lanes(df));
  VF acc[kHeadVecs][KB];
  for (int v = 0; v < kHeadVecs; ++v)
    for (int kk = 0; kk < KB; ++kk) acc[v][kk] = hn::Zero(df);
  const float* kr[KB];
  for (int kk = 0; kk < KB; ++kk) kr[kk] = keys + int64_t(j0 + kk) * dI;
  const int nv = v1 - v0;
  for (int i = 0; i < dI; ++i) {
    VF kb[KB];
#pragma GCC unroll 4
    for (int kk = 0; kk < KB; ++kk) kb[kk] = hn::Set(df, kr[kk][i]);
#pragma GCC unroll 4
    for (int v = 0; v < kHeadVecs; ++v) {
      if (v >= nv) break;
      const VF qv = hn::LoadU(df, qt + int64_t(i) * hp + (v0 + v) * N);
#pragma GCC unroll 4
      for (int kk = 0; kk < KB; ++kk) acc[v][kk] = hn::MulAdd(qv, kb[kk], acc[v][kk]);
    }
  }
  for (int v = 0; v < nv; ++v) {
    const VF wv = hn::LoadU(df, wp + (v0 + v) * N);
    for (int kk = 0; kk < KB; ++kk) tot[kk] = hn::MulAdd(wv, hn::Max(acc[v][kk], hn::Zero(df)), tot[kk]);
  }
}

void IndexScores(const float* q, const float* w, int nH, int dI, const float* keys, int32_t nvis, float* score) {
  const DF df;
  const int64_t N = int64_t(hn::Lanes(df)), hp = (nH + N - 1) / N * N;  // heads padded with zero q and w
  const int nvec = int(hp / N);
  thread_local std::vector<float> qt, wp;
  qt.assign(size_t(hp * dI), 0.0f);
  wp.assign(size_t(hp), 0.0f);
  for (int h = 0; h < nH; ++h) {
    wp[size_t(h)] = w[h];
    for (int i = 0; i < dI; ++i) qt[size_t(i * hp + h)] = q[size_t(h) * size_t(dI) + size_t(i)];
  }
  auto run = [&](auto kb_tag, int32_t j0) {
    constexpr int KB = decltype(kb_tag)::value;
    VF tot[KB];
    for (int kk = 0; kk < KB; ++kk) tot[kk] = hn::Zero(df);
    for (int v0 = 0; v0 < nvec; v0 += kHeadVecs)
      KeyBlock<KB>(qt.data(), wp.data(), hp, dI, keys, j0, v0, std::min(nvec, v0 + kHeadVecs), tot);
    for (int kk = 0; kk < KB; ++kk) score[j0 + kk] = hn::GetLane(hn::SumOfLanes(df, tot[kk]));
  };
  int32_t j = 0;
  for (; j + 4 <= nvis; j += 4) run(std::integral_constant<int, 4>(), j);
  for (; j < nvis; ++j) run(std::integral_constant<int, 1>(), j);
}

}  // namespace dsv4::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dsv4 {
namespace simd {
HWY_EXPORT(IndexScores);
}  // namespace simd
void index_scores(const float* q, const float* w, int nH, int dI, const float* keys, int32_t nvis, float* score) {
  HWY_DYNAMIC_DISPATCH(simd::IndexScores)(q, w, nH, dI, keys, nvis, score);
}
}  // namespace dsv4
#endif
