// The FP8 and FP4 round-trips of kernels/quant.cpp over whole blocks, vectorised. Every step mirrors
// the scalar code (comparisons, selects and bit operations in the same order, NaN included), so
// results are bit-identical to it; quant.cpp keeps the scalar form for partial blocks.
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "kernels/quant.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/quant_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace dsv4::simd::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// std::max(a, |x|) over the block, which never picks a NaN.
float BlockAmax(const float* x, size_t n) {
  const DF df;
  const size_t N = hn::Lanes(df);
  VF a = hn::Zero(df);
  for (size_t i = 0; i < n; i += N) {
    const VF v = hn::Abs(hn::LoadU(df, x + i));
    a = hn::IfThenElse(hn::Lt(a, v), v, a);
  }
  float lanes[HWY_LANES(float)];
  hn::StoreU(a, df, lanes);
  float m = 0;
  for (size_t i = 0; i < N; ++i) m = lanes[i] > m ? lanes[i] : m;
  return m;
}

// std::clamp(v, -q, q): NaN passes through.
HWY_INLINE VF Clamp(VF v, float q) {
  const DF df;
  const VF lo = hn::Set(df, -q), hi = hn::Set(df, q);
  return hn::IfThenElse(hn::Lt(v, lo), lo, hn::IfThenElse(hn::Lt(hi, v), hi, v));
}

// Rounding to a small float format, half to even, as the scalar code does it: below `threshold` the
// grid is uniform, and adding and removing `magic` (whose ulp is that step) rounds onto it; above,
// the f32 mantissa keeps 23 - kDrop bits, rounded on the bit pattern (a carry bumps the exponent).
template <int kDrop>
HWY_INLINE VF RoundSmallFloat(VF v, float magic, float threshold) {
  const DF df;
  const hn::RebindToUnsigned<DF> du;
  const VF a = hn::Abs(v);
  const VF grid = hn::Sub(hn::Add(a, hn::Set(df, magic)), hn::Set(df, magic));
  const auto u = hn::BitCast(du, a);
  const auto odd = hn::And(hn::ShiftRight<kDrop>(u), hn::Set(du, 1u));
  const auto half = hn::Set(du, (1u << (kDrop - 1)) - 1u), low = hn::Set(du, (1u << kDrop) - 1u);
  const VF mant = hn::BitCast(df, hn::AndNot(low, hn::Add(hn::Add(u, half), odd)));
  return hn::CopySign(hn::IfThenElse(hn::Lt(a, hn::Set(df, threshold)), grid, mant), v);
}

// round_e4m3_small: the 2^-9 subnormal grid below 2^-6, then 3 mantissa bits.
HWY_INLINE VF RoundE4M3(VF v) { return RoundSmallFloat<20>(v, 16384.0f, 0.015625f); }

// round_e2m1 on |v| <= 6: steps of 0.5 below 2, then 1 mantissa bit; f32_to_e2m1 sends NaN to
// code 0 (+0 / -0).
HWY_INLINE VF RoundE2M1(VF v) {
  return hn::IfThenElse(hn::IsNaN(v), hn::CopySign(hn::Zero(DF()), v), RoundSmallFloat<22>(v, 4194304.0f, 2.0f));
}

// nblocks blocks of `block` floats (a multiple of the lane count), each
// x = round(clamp(x / s, ±qmax)) · s with s = ceil-pow2(max(amax, amax_floor) / qmax).
template <class Round>
HWY_INLINE void RoundtripBlocks(float* x, size_t nblocks, size_t block, float qmax, float amax_floor, Round round) {
  const DF df;
  const size_t N = hn::Lanes(df);
  for (size_t b = 0; b < nblocks; ++b, x += block) {
    const VF vs = hn::Set(df, ceil_pow2_scale(std::max(BlockAmax(x, block), amax_floor), 1.0f / qmax));
    for (size_t i = 0; i < block; i += N)
      hn::StoreU(hn::Mul(round(Clamp(hn::Div(hn::LoadU(df, x + i), vs), qmax)), vs), df, x + i);
  }
}

void Fp8RoundtripBlocks(float* x, size_t nblocks, size_t block) {
  RoundtripBlocks(x, nblocks, block, 448.0f, 1e-4f, [](VF v) HWY_ATTR { return RoundE4M3(v); });
}

void Fp4RoundtripBlocks(float* x, size_t nblocks, size_t block) {
  RoundtripBlocks(x, nblocks, block, 6.0f, 6.0f * 1.1754943508222875e-38f /* 6 * 2^-126 */,
                  [](VF v) HWY_ATTR { return RoundE2M1(v); });
}

size_t QuantLanes() { return hn::Lanes(DF()); }

}  // namespace dsv4::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dsv4 {
namespace simd {
HWY_EXPORT(Fp8RoundtripBlocks);
HWY_EXPORT(Fp4RoundtripBlocks);
HWY_EXPORT(QuantLanes);
}  // namespace simd

bool roundtrip_blocks_vectorised(size_t block) {
  static const size_t lanes = HWY_DYNAMIC_DISPATCH(simd::QuantLanes)();
  return block % lanes == 0;
}
void fp8_roundtrip_blocks(float* x, size_t nblocks, size_t block) {
  HWY_DYNAMIC_DISPATCH(simd::Fp8RoundtripBlocks)(x, nblocks, block);
}
void fp4_roundtrip_blocks(float* x, size_t nblocks, size_t block) {
  HWY_DYNAMIC_DISPATCH(simd::Fp4RoundtripBlocks)(x, nblocks, block);
}
}  // namespace dsv4
#endif
