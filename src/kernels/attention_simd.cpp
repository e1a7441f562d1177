// sink_attention_heads: all query heads of one position against the rows they share, heads in
// blocks so each row is read once per block instead of once per head. The arithmetic is that of
// sink_attention (kernels/attention.cpp) step for step, so results are bit-identical to it.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/attention.h"
#include "kernels/matmul_simd.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attention_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace dsv4::simd::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

constexpr int kHeadBlock = 8;

// HB heads from q (dim apart) into out; z is scratch of HB·n.
template <int HB>
void HeadBlock(const float* q, const float* const* rows, int32_t n, int dim, float scale, const float* sinks,
               float* out, float* z) {
  const hn::ScalableTag<float> df;
  using V = hn::Vec<decltype(df)>;
  const int N = int(hn::Lanes(df));
  // Scores: simd::dot_f32's two interleaved accumulators per head, then the same lane sum.
  for (int32_t k = 0; k < n; ++k) {
    V a0[HB], a1[HB];
    for (int h = 0; h < HB; ++h) a0[h] = a1[h] = hn::Zero(df);
    const float* r = rows[k];
    for (int i = 0; i < dim; i += 2 * N) {
      const V r0 = hn::LoadU(df, r + i), r1 = hn::LoadU(df, r + i + N);
#pragma GCC unroll 8
      for (int h = 0; h < HB; ++h) {
        a0[h] = hn::MulAdd(hn::LoadU(df, q + h * dim + i), r0, a0[h]);
        a1[h] = hn::MulAdd(hn::LoadU(df, q + h * dim + i + N), r1, a1[h]);
      }
    }
    for (int h = 0; h < HB; ++h) z[h * n + k] = hn::GetLane(hn::SumOfLanes(df, hn::Add(a0[h], a1[h]))) * scale;
  }
  // Softmax weights in place, denominators summed in row order.
  float den[HB];
  for (int h = 0; h < HB; ++h) {
    float* zh = z + h * n;
    const float m = *std::max_element(zh, zh + n);
    den[h] = 0;
    for (int32_t k = 0; k < n; ++k) {
      zh[k] = std::exp(zh[k] - m);
      den[h] += zh[k];
    }
    den[h] += std::exp(sinks[h] - m);
  }
  // Weighted sums: simd::axpy's per-element FMA chain over the rows, one vector column at a time.
  for (int i = 0; i < dim; i += N) {
    V acc[HB];
    for (int h = 0; h < HB; ++h) acc[h] = hn::Zero(df);
    for (int32_t k = 0; k < n; ++k) {
      const V r = hn::LoadU(df, rows[k] + i);
#pragma GCC unroll 8
      for (int h = 0; h < HB; ++h) acc[h] = hn::MulAdd(hn::Set(df, z[h * n + k]), r, acc[h]);
    }
    for (int h = 0; h < HB; ++h) hn::StoreU(acc[h], df, out + h * dim + i);
  }
  for (int h = 0; h < HB; ++h)
    for (int i = 0; i < dim; ++i) out[h * dim + i] /= den[h];
}

// z: scratch of kHeadBlock·n floats.
void SinkAttentionHeads(const float* q, int H, const float* const* rows, int32_t n, int dim, float scale,
                        const float* sinks, float* out, float* z) {
  const int N = int(hn::Lanes(hn::ScalableTag<float>()));
  int h = 0;
  if (n > 0 && dim % (2 * N) == 0)
    for (; h + kHeadBlock <= H; h += kHeadBlock)
      HeadBlock<kHeadBlock>(q + h * dim, rows, n, dim, scale, sinks + h, out + h * dim, z);
  for (; h < H; ++h) sink_attention(q + h * dim, rows, n, dim, scale, sinks[h], out + h * dim, z);
}

}  // namespace dsv4::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dsv4 {
namespace simd {
HWY_EXPORT(SinkAttentionHeads);
}  // namespace simd
size_t sink_attention_scratch(int32_t n) { return size_t(8) * size_t(std::max<int32_t>(n, 1)); }  // kHeadBlock·n

void sink_attention_heads(const float* q, int heads, const float* const* rows, int32_t n, int dim, float scale,
                          const float* sinks, float* out, float* scratch) {
  using namespace simd;
  HWY_DYNAMIC_DISPATCH(SinkAttentionHeads)(q, heads, rows, n, dim, scale, sinks, out, scratch);
}

void sink_attention_heads(const float* q, int heads, const float* const* rows, int32_t n, int dim, float scale,
                          const float* sinks, float* out) {
  thread_local std::vector<float> z;
  z.resize(sink_attention_scratch(n));
  sink_attention_heads(q, heads, rows, n, dim, scale, sinks, out, z.data());
}
}  // namespace dsv4
#endif
