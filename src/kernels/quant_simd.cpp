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

// round_e4m3_small: the 2^-9 subnormal grid by adding and removing 2^14, else the mantissa
// rounded to 3 bits half to even on the bit pattern.
HWY_INLINE VF RoundE4M3(VF v) {
  const DF df;
  const hn::RebindToUnsigned<DF> du;
  const VF a = hn::Abs(v);
  const VF sub = hn::Sub(hn::Add(a, hn::Set(df, 16384.0f)), hn::Set(df, 16384.0f));
  const auto u = hn::BitCast(du, a);
  const auto odd = hn::And(hn::ShiftRight<20>(u), hn::Set(du, 1u));
  const VF nor = hn::BitCast(df, hn::AndNot(hn::Set(du, 0xFFFFFu), hn::Add(hn::Add(u, hn::Set(du, 0x7FFFFu)), odd)));
  return hn::CopySign(hn::IfThenElse(hn::Lt(a, hn::Set(df, 0.015625f)), sub, nor), v);
}

// round_e2m1 on |v| <= 6: steps of 0.5 below 2 (adding and removing 2^22 rounds half to even),
// else the mantissa rounded to 1 bit half to even; f32_to_e2m1 sends NaN to code 0 (+0 / -0).
HWY_INLINE VF RoundE2M1(VF v) {
  const DF df;
  const hn::RebindToUnsigned<DF> du;
  const VF a = hn::Abs(v);
  const VF small = hn::Sub(hn::Add(a, hn::Set(df, 4194304.0f)), hn::Set(df, 4194304.0f));
  const auto u = hn::BitCast(du, a);
  const auto odd = hn::And(hn::ShiftRight<22>(u), hn::Set(du, 1u));
  const VF big = hn::BitCast(df, hn::AndNot(hn::Set(du, 0x3FFFFFu), hn::Add(hn::Add(u, hn::Set(du, 0x1FFFFFu)), odd)));
  const VF r = hn::IfThenElse(hn::Lt(a, hn::Set(df, 2.0f)), small, big);
  return hn::CopySign(hn::IfThenZeroElse(hn::IsNaN(a), r), v);
}

// nblocks blocks of `block` floats (a multiple of the lane count), each x = round(clamp(x/s)) * s.
void Fp8RoundtripBlocks(float* x, size_t nblocks, size_t block) {
  const DF df;
  const size_t N = hn::Lanes(df);
  for (size_t b = 0; b < nblocks; ++b, x += block) {
    const float s = ceil_pow2_scale(std::max(BlockAmax(x, block), 1e-4f), 1.0f / 448.0f);
    const VF vs = hn::Set(df, s);
    for (size_t i = 0; i < block; i += N)
      hn::StoreU(hn::Mul(RoundE4M3(Clamp(hn::Div(hn::LoadU(df, x + i), vs), 448.0f)), vs), df, x + i);
  }
}

void Fp4RoundtripBlocks(float* x, size_t nblocks, size_t block) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const float floor = 6.0f * 1.1754943508222875e-38f;  // 6 * 2^-126
  for (size_t b = 0; b < nblocks; ++b, x += block) {
    const float s = ceil_pow2_scale(std::max(BlockAmax(x, block), floor), 1.0f / 6.0f);
    const VF vs = hn::Set(df, s);
    for (size_t i = 0; i < block; i += N)
      hn::StoreU(hn::Mul(RoundE2M1(Clamp(hn::Div(hn::LoadU(df, x + i), vs), 6.0f)), vs), df, x + i);
  }
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
