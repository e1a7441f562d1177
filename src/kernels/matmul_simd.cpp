#include "kernels/matmul_simd.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/dtype.h"
#include "kernels/linear.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/matmul_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace dsv4::simd::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

size_t Lanes() { return hn::Lanes(hn::ScalableTag<float>()); }

void Dot(const float* const* w, int R, const float* x, int64_t xs, int64_t S, int64_t kp, float* y, int64_t yr,
         int64_t ys);

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;
constexpr int64_t kMaxLanes = HWY_LANES(float);  // park slots are sized for the widest target

// n floats of `v`, 64-byte aligned: vector loads that straddle cache lines cost two.
float* AlignedScratch(std::vector<float>& v, size_t n) {
  v.resize(n + 16);
  const auto p = reinterpret_cast<uintptr_t>(v.data());
  return reinterpret_cast<float*>((p + 63) & ~uintptr_t(63));
}

// Per-format decoders of one weight vector (exact).
HWY_INLINE VF DecBF16(const uint16_t* p) {
  const DF df;
  const hn::Rebind<uint16_t, DF> d16;
  return hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(hn::RebindToUnsigned<DF>(), hn::LoadU(d16, p))));
}
// FP8 e4m3 → f16 bits (s.0eeee.mmm0000000) is exact, subnormals included; the f16 is the e4m3 value
// times 2^-8, so the scale to apply is the block scale times 2^8. Scales above 2^119 would overflow
// that product: Fp8ScaleFits says when the caller must scale in two steps.
HWY_INLINE VF DecFP8Raw(const uint8_t* p) {
  const DF df;
  const hn::Rebind<int8_t, DF> d8;
  const hn::Rebind<int16_t, DF> d16;
  const hn::Rebind<hwy::float16_t, DF> dh;
  // Sign-extended, shifted left by 7: s.s.eeee.mmm.0000000; clearing bit 14 leaves s.0eeee.mmm0000000.
  const auto h = hn::And(hn::ShiftLeft<7>(hn::PromoteTo(d16, hn::LoadU(d8, reinterpret_cast<const int8_t*>(p)))),
                         hn::Set(d16, int16_t(0xBFFF)));
  return hn::PromoteTo(df, hn::BitCast(dh, h));
}
constexpr float kFp8Bias = 256.0f;  // 2^8
HWY_INLINE bool Fp8ScaleFits(float scale) { return scale <= 6.64613997892458e35f; }  // 2^119
// The multiplies that put block scale s on a DecFP8Raw vector: ·(s·2^8) in one step, or ·2^8 then ·s
// where s·2^8 would overflow (exact either way). DequantRow and FusedRows apply the same steps.
struct Fp8Steps {
  float m1, m2;
  bool one_step;
};
HWY_INLINE Fp8Steps Fp8WeightSteps(float s) {
  const bool f = Fp8ScaleFits(s);
  return {f ? s * kFp8Bias : kFp8Bias, f ? 1.0f : s, f};
}
// FP4: N packed bytes → low nibbles (even elements) and high nibbles (odd elements). With 16 lanes
// one permute of the signed 16-entry table (times the block scale) decodes a nibble; with 8 lanes
// the magnitude table is looked up and the sign bit ORed in.
HWY_INLINE VF Fp4Table(float scale) {
  alignas(64) static constexpr float tab[16] = {0.f,  .5f,  1.f,  1.5f,  2.f,  3.f,  4.f,  6.f,
                                                -0.f, -.5f, -1.f, -1.5f, -2.f, -3.f, -4.f, -6.f};
  const DF df;
  return hn::Mul(hn::LoadU(df, tab), hn::Set(df, scale));
}
HWY_INLINE void DecFP4(const uint8_t* p, VF t, VF& lo, VF& hi) {
  const DF df;
  const hn::RebindToUnsigned<DF> du;
  const hn::RebindToSigned<DF> di;
  const hn::Rebind<uint8_t, DF> d8;
  const auto c = hn::PromoteTo(du, hn::LoadU(d8, p));
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
  // vpermps reads the low 4 bits of each index: the low nibble needs no mask (decode is
  // compute-bound, one operation in eight counts).
  lo = VF{_mm512_permutexvar_ps(c.raw, t.raw)};
  hi = VF{_mm512_permutexvar_ps(hn::ShiftRight<4>(c).raw, t.raw)};
  (void)di;
#else
  if (hn::Lanes(df) == 16) {  // Vectorizable admits 8 or 16 lanes
    lo = hn::TableLookupLanes(t, hn::IndicesFromVec(df, hn::BitCast(di, hn::And(c, hn::Set(du, 15)))));
    hi = hn::TableLookupLanes(t, hn::IndicesFromVec(df, hn::BitCast(di, hn::ShiftRight<4>(c))));
  } else {
    const auto m7 = hn::Set(du, 7);
    lo = hn::Or(hn::TableLookupLanes(t, hn::IndicesFromVec(df, hn::BitCast(di, hn::And(c, m7)))),
                hn::BitCast(df, hn::ShiftLeft<28>(hn::And(c, hn::Set(du, 8)))));
    hi = hn::Or(hn::TableLookupLanes(t, hn::IndicesFromVec(df, hn::BitCast(di, hn::And(hn::ShiftRight<4>(c), m7)))),
                hn::BitCast(df, hn::ShiftLeft<24>(hn::And(c, hn::Set(du, 0x80)))));
  }
#endif
}
// The n E8M0 (or F32) block scales of FP4 row o as floats, exactly: 2^(b-127), 2^-127 for b = 0
// (subnormal), NaN for b = 255.
void Fp4RowScales(const Linear& W, int64_t o, int64_t n, float* dst) {
  const uint8_t* p = W.scale + (W.scale_f32 ? 4 : 1) * o * W.scale_cols;
  if (W.scale_f32) return (void)std::memcpy(dst, p, size_t(n) * 4);
  const DF df;
  const hn::RebindToUnsigned<DF> du;
  const hn::Rebind<uint8_t, DF> d8;
  const int64_t N = int64_t(hn::Lanes(df));
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const auto b = hn::PromoteTo(du, hn::LoadU(d8, p + i));
    auto bits = hn::IfThenElse(hn::Eq(b, hn::Zero(du)), hn::Set(du, 0x00400000u), hn::ShiftLeft<23>(b));
    bits = hn::IfThenElse(hn::Eq(b, hn::Set(du, 255u)), hn::Set(du, 0x7fc00000u), bits);
    hn::StoreU(hn::BitCast(df, bits), df, dst + i);
  }
  for (; i < n; ++i) dst[i] = e8m0_to_f32(p[i]);
}

// Formats and sizes the vector decoders cover; the rest (odd K, FP4 on narrow targets) is scalar.
bool Vectorizable(const Linear& W) {
  const int64_t N = int64_t(hn::Lanes(DF()));
  if (W.fmt == Linear::Format::Block) return false;  // kernels/blocks.h has its own decoders
  if (W.fmt == Linear::Format::FP4) return N == 8 || N == 16;
  if (W.fmt == Linear::Format::FP8) return W.in % N == 0 && 128 % N == 0;
  return W.in % N == 0;
}

// Scalar weights of row o in kernel order, zero-padded to kp (the non-vectorizable cases).
void ScalarRow(const Linear& W, int64_t o, int64_t kp, float* dst) {
  const int64_t N = int64_t(Lanes()), K = W.in;
  std::fill(dst, dst + kp, 0.0f);
  if (W.fmt != Linear::Format::FP4) {
    W.dequant_row(o, dst);
    return;
  }
  const uint8_t* p = W.w + o * (K / 2);
  for (int64_t b = 0; b < K / 2; b += N)
    for (int64_t i = 0; i < N; ++i) {
      const float s = W.scale_at(o, (2 * (b + i)) / 32);
      dst[2 * b + i] = e2m1_to_f32(p[b + i] & 15) * s;
      dst[2 * b + N + i] = e2m1_to_f32(p[b + i] >> 4) * s;
    }
}

// The hardware prefetchers stop at 4 KiB pages and a Flash row is one page or less, so R rows read
// in lockstep are R short streams; prefetching the same line of the next R rows keeps DRAM busy.
HWY_INLINE void PrefetchNext(const uint8_t* p) { __builtin_prefetch(p); }

// What FusedRows needs besides W: FP8 kb-blocks flagged in `prescaled` carry their block scale
// (times 2^8) in x already; FP4 rows come with their block scales decoded, row r at r * fp4_stride.
struct RowAux {
  const uint8_t* prescaled = nullptr;
  const float* fp4_scales = nullptr;
  int64_t fp4_stride = 0;
  int64_t prefetch_rows = 4;  // how far ahead the prefetched rows start (prefill computes longer per row)
};

// acc[r][t] += w_{o+r} · x_t over kernel-order k in [k0, k1), x_t[k] at x[t·xs + k - xoff]: R rows in lockstep keep R·T
// independent accumulator chains, and each decoded weight vector serves T tokens. Between k-chunks
// the accumulators wait in `park` (first: start from zero; last: reduce into y). Whatever the
// chunking, R or T, every output sees the accumulation sequence of DequantRow followed by Dot.
template <int R, int T>
void FusedRows(const Linear& W, int64_t o, int64_t k0, int64_t k1, const float* x, int64_t xs, int64_t xoff,
               const RowAux& aux, float* park, bool first, bool last, float* y, int64_t yr, int64_t ys) {
  const DF df;
  const int64_t N = int64_t(hn::Lanes(df)), K = W.in;
  VF acc[R][T];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) acc[r][t] = first ? hn::Zero(df) : hn::LoadU(df, park + (r * T + t) * N);
  auto fma = [&](int64_t k, const VF* w) HWY_ATTR {
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
      VF xv = hn::LoadU(df, x + t * xs + k - xoff);
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
      // One load per token, not one per row: GCC would fold the load into every FMA using it.
      asm("" : "+v"(xv.raw));
#endif
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r][t] = hn::MulAdd(w[r], xv, acc[r][t]);
    }
  };
  VF w[R];
  switch (W.fmt) {
    case Linear::Format::F32:
      for (int64_t k = k0; k < k1; k += N) {
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) w[r] = hn::LoadU(df, reinterpret_cast<const float*>(W.w) + (o + r) * K + k);
        fma(k, w);
      }
      break;
    case Linear::Format::BF16:
      for (int64_t k = k0; k < k1; k += N) {
        if (k % 32 == 0)
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r) PrefetchNext(W.w + 2 * ((o + r + aux.prefetch_rows) * K + k));
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) w[r] = DecBF16(reinterpret_cast<const uint16_t*>(W.w) + (o + r) * K + k);
        fma(k, w);
      }
      break;
    case Linear::Format::FP8:
      for (int64_t kb = k0; kb < k1; kb += 128) {
        const int64_t ke = std::min(k1, kb + 128);
        if (aux.prescaled && aux.prescaled[kb / 128]) {
          for (int64_t k = kb; k < ke; k += N) {
            if (k % 64 == 0)
#pragma GCC unroll 8
              for (int r = 0; r < R; ++r) PrefetchNext(W.w + (o + r + aux.prefetch_rows) * K + k);
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) w[r] = DecFP8Raw(W.w + (o + r) * K + k);
            fma(k, w);
          }
          continue;
        }
        VF m1[R], m2[R];
        bool fits = true;
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          const Fp8Steps st = Fp8WeightSteps(W.scale_at((o + r) / 128, kb / 128));
          fits = fits && st.one_step;
          m1[r] = hn::Set(df, st.m1);
          m2[r] = hn::Set(df, st.m2);
        }
        for (int64_t k = kb; k < ke; k += N) {
          if (k % 64 == 0)
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) PrefetchNext(W.w + (o + r + aux.prefetch_rows) * K + k);
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r) w[r] = hn::Mul(DecFP8Raw(W.w + (o + r) * K + k), m1[r]);
          if (!fits)
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) w[r] = hn::Mul(w[r], m2[r]);
          fma(k, w);
        }
      }
      break;
    case Linear::Format::FP4:
      for (int64_t b = k0 / 2; b < k1 / 2; b += N) {
        if (b % 64 == 0)
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r) PrefetchNext(W.w + (o + r + aux.prefetch_rows) * (K / 2) + b);
        VF hi[R];
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r)
          DecFP4(W.w + (o + r) * (K / 2) + b, Fp4Table(aux.fp4_scales[r * aux.fp4_stride + (2 * b) / 32]), w[r], hi[r]);
        fma(2 * b, w);
        fma(2 * b + N, hi);
      }
      break;
    case Linear::Format::Block:  // not Vectorizable
      break;
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
      if (last)
        y[r * yr + t * ys] = hn::GetLane(hn::SumOfLanes(df, acc[r][t]));
      else
        hn::StoreU(acc[r][t], df, park + (r * T + t) * N);
    }
}

void DequantRow(const Linear& W, int64_t o, float* dst) {
  const DF df;
  const int64_t N = int64_t(hn::Lanes(df)), K = W.in, Kp = (K + N - 1) / N * N;
  if (!Vectorizable(W)) return ScalarRow(W, o, Kp, dst);
  switch (W.fmt) {
    case Linear::Format::F32:
      std::memcpy(dst, W.w + 4 * o * K, size_t(K) * 4);
      break;
    case Linear::Format::BF16:
      for (int64_t k = 0; k < K; k += N) hn::StoreU(DecBF16(reinterpret_cast<const uint16_t*>(W.w) + o * K + k), df, dst + k);
      break;
    case Linear::Format::FP8:
      for (int64_t kb = 0; kb < K; kb += 128) {
        const Fp8Steps st = Fp8WeightSteps(W.scale_at(o / 128, kb / 128));
        const VF m1 = hn::Set(df, st.m1), m2 = hn::Set(df, st.m2);
        for (int64_t k = kb; k < kb + 128 && k < K; k += N)
          hn::StoreU(hn::Mul(hn::Mul(DecFP8Raw(W.w + o * K + k), m1), m2), df, dst + k);
      }
      break;
    case Linear::Format::FP4: {
      for (int64_t b = 0; b < K / 2; b += N) {
        VF lo, hi;
        DecFP4(W.w + o * (K / 2) + b, Fp4Table(W.scale_at(o, (2 * b) / 32)), lo, hi);
        hn::StoreU(lo, df, dst + 2 * b);
        hn::StoreU(hi, df, dst + 2 * b + N);
      }
      break;
    }
    case Linear::Format::Block:  // not Vectorizable
      break;
  }
}

void Fp8RowsPrescaled(const Linear& W, int64_t o0, int64_t o1, const float* x, int64_t xs, int64_t S, int64_t kp,
                      float* y, int64_t ys);
void RowsDecode(const Linear& W, int64_t o0, int64_t o1, const float* x, int64_t xs, int64_t S, float* y, int64_t ys,
                const uint8_t* prescaled);
void RowsGemm(const Linear& W, int64_t o0, int64_t o1, const float* x, int64_t xs, int64_t S, float* y, int64_t ys);
void RowsGemmPass(const Linear& W, int64_t o0, int64_t o1, const float* packed, int64_t group_floats,
                  const std::vector<int64_t>& t0s, float* y, int64_t ys);

// Rows [o0, o1) against S tokens, dequantising in registers.
void DotRowsFused(const Linear& W, int64_t o0, int64_t o1, const float* x, int64_t xs, int64_t S, int64_t kp,
                  float* y, int64_t ys) {
  if (!Vectorizable(W)) {
    std::vector<float> row(static_cast<size_t>(kp));
    const float* rp = row.data();
    for (int64_t o = o0; o < o1; ++o) {
      ScalarRow(W, o, kp, row.data());
      Dot(&rp, 1, x, xs, S, kp, y + o, 1, ys);
    }
    return;
  }
  if (S > 4) return RowsGemm(W, o0, o1, x, xs, S, y, ys);
  if (W.fmt == Linear::Format::FP8) return Fp8RowsPrescaled(W, o0, o1, x, xs, S, kp, y, ys);
  RowsDecode(W, o0, o1, x, xs, S, y, ys, nullptr);
}

// FP8 rows share one scale per 128×128 block, so in decode it moves onto the activations once per
// row block: x'_k = x_k·s·2^8 is exact while it stays normal, and then w16·x'_k is exactly
// (w16·s·2^8)·x_k, the product DequantRow + Dot feed to the same FMA. Blocks where x' would leave
// the normal range keep the per-weight multiply.
void Fp8RowsPrescaled(const Linear& W, int64_t o0, int64_t o1, const float* x, int64_t xs, int64_t S, int64_t kp,
                      float* y, int64_t ys) {
  const int64_t K = W.in, nkb = (K + 127) / 128;
  thread_local std::vector<float> xsc_buf;
  thread_local std::vector<uint8_t> pre;
  float* xsc = AlignedScratch(xsc_buf, static_cast<size_t>(S * kp));
  pre.resize(static_cast<size_t>(nkb));
  const DF df;
  const int64_t N = int64_t(hn::Lanes(df));
  const VF lo = hn::Set(df, std::numeric_limits<float>::min()), hi = hn::Set(df, std::numeric_limits<float>::max());
  for (int64_t a = o0; a < o1;) {
    const int64_t rb = a / 128, b = std::min(o1, (rb + 1) * 128);
    for (int64_t kb = 0; kb < nkb; ++kb) {
      const float s = W.scale_at(rb, kb);
      const int64_t k0 = kb * 128, k1 = std::min(kp, k0 + 128);  // kp and 128 are multiples of N
      bool ok = Fp8ScaleFits(s);
      const VF m = hn::Set(df, ok ? s * kFp8Bias : 1.0f);
      for (int64_t t = 0; t < S; ++t)
        for (int64_t k = k0; k < k1; k += N) {
          const VF v = hn::LoadU(df, x + t * xs + k), a = hn::Abs(hn::Mul(v, m));
          // NaN fails both comparisons, so it keeps the block on the per-weight path too.
          const auto normal = hn::And(hn::Ge(a, lo), hn::Le(a, hi));
          ok = ok && hn::AllTrue(df, hn::Or(normal, hn::Eq(v, hn::Zero(df))));
          hn::StoreU(hn::Mul(v, m), df, xsc + t * kp + k);
        }
      pre[size_t(kb)] = ok;
      if (!ok)  // the activations unscaled
        for (int64_t t = 0; t < S; ++t) std::memcpy(xsc + t * kp + k0, x + t * xs + k0, size_t(k1 - k0) * 4);
    }
    RowsDecode(W, a, b, xsc, kp, S, y, ys, pre.data());
    a = b;
  }
}

// Decode (S ≤ 4): each weight is read once, rows in groups of R over all of K.
void RowsDecode(const Linear& W, int64_t o0, int64_t o1, const float* x, int64_t xs, int64_t S, float* y, int64_t ys,
                const uint8_t* prescaled) {
  const int64_t K = W.in, nb = K / 32;
  thread_local std::vector<float> scales;
  RowAux aux;
  aux.prescaled = prescaled;
  aux.fp4_stride = nb;
  // Single tokens read 8 rows in lockstep and prefetch the next 8: more streams in flight reach
  // closer to the read bandwidth. FP4 decoding is compute-bound at 4 (8 tables would not fit), and
  // so is everything on 16-register targets.
#if HWY_ARCH_X86 && HWY_TARGET > HWY_AVX3
  const bool wide = false;
#else
  const bool wide = W.fmt != Linear::Format::FP4;
#endif
  // A few tokens (a verification step, a small batch) keep ≥ 8 accumulator chains too: 4 rows × 2
  // tokens, 3 × 3, 4 × 4 where the registers allow, instead of 2 rows, whose FMAs wait on latency.
  const int64_t R = S == 1 ? (wide ? 8 : 4) : S == 3 ? 3 : wide ? 4 : 2;
  aux.prefetch_rows = R;  // the next row group
  auto rows = [&](auto kernel, int R, int64_t& o) {
    for (; o + R <= o1; o += R) {
      if (W.fmt == Linear::Format::FP4) {
        scales.resize(static_cast<size_t>(R * nb));
        for (int r = 0; r < R; ++r) Fp4RowScales(W, o + r, nb, scales.data() + r * nb);
        aux.fp4_scales = scales.data();
      }
      kernel(W, o, 0, K, x, xs, 0, aux, nullptr, true, true, y + o, 1, ys);
    }
  };
  int64_t o = o0;
  switch (S) {
    case 1:
      if (wide) rows(FusedRows<8, 1>, 8, o);
      rows(FusedRows<4, 1>, 4, o);
      rows(FusedRows<1, 1>, 1, o);
      break;
    case 2:
      if (R == 4) rows(FusedRows<4, 2>, 4, o);
      rows(FusedRows<2, 2>, 2, o);
      rows(FusedRows<1, 2>, 1, o);
      break;
    case 3: rows(FusedRows<3, 3>, 3, o); rows(FusedRows<1, 3>, 1, o); break;
    default:
      if (R == 4) rows(FusedRows<4, 4>, 4, o);
      rows(FusedRows<2, 4>, 2, o);
      rows(FusedRows<1, 4>, 1, o);
  }
}

// Prefill tiles: kGemmR rows × kGemmT tokens of accumulators, plus the decoded weights and one
// activation vector, fill the register file (32 vectors on AVX-512 / SVE / NEON, 16 on AVX2). Three
// rows rather than two cut the activation loads per FMA, the limit of the AVX-512 loop.
#if HWY_ARCH_X86 && HWY_TARGET > HWY_AVX3
constexpr int kGemmR = 2, kGemmT = 5;
#else
constexpr int kGemmR = 3, kGemmT = 9;
#endif
static_assert(kGemmT <= 9, "RowsGemmPass dispatches token groups of 1..9");
constexpr int64_t kGemmUnit = 12 * kGemmR;  // rows whose weights stay in L2 while every token group passes
constexpr int64_t kGemmChunk = 512;        // K per step: a token group's activations stay in L1
constexpr int64_t kGemmPackedBytes = 384 << 10;  // packed token groups of one pass (L2 budget)

template <int T>
void GemmGroup(const Linear& W, int64_t o0, int64_t o1, int64_t k0, int64_t k1, const float* x, int64_t xs,
               RowAux aux, float* park, float* y, int64_t ys) {
  const int64_t xoff = k0;
  const bool first = k0 == 0, last = k1 == W.in;
  const float* scales = aux.fp4_scales;
  auto rows = [&](auto kernel, int R, int64_t& o) {
    for (; o + R <= o1; o += R) {
      if (scales) aux.fp4_scales = scales + (o - o0) * aux.fp4_stride;
      kernel(W, o, k0, k1, x, xs, xoff, aux, park + (o - o0) * T * kMaxLanes, first, last, y + o, 1, ys);
    }
  };
  int64_t o = o0;
  rows(FusedRows<kGemmR, T>, kGemmR, o);
  if (kGemmR > 2) rows(FusedRows<2, T>, 2, o);
  rows(FusedRows<1, T>, 1, o);
}

// Prefill (S > 4): token groups of at most kGemmT (split evenly), their activations packed chunk by
// chunk (rows a multiple of 4 KiB apart would share L1 sets with the weight rows); per group, units
// of kGemmUnit rows pass over K in chunks while the unit's rows stream by kGemmR at a time.
void RowsGemm(const Linear& W, int64_t o0, int64_t o1, const float* x, int64_t xs, int64_t S, float* y, int64_t ys) {
  const int64_t K = W.in, nchunks = (K + kGemmChunk - 1) / kGemmChunk, group_floats = nchunks * kGemmT * kGemmChunk;
  const int64_t groups = (S + kGemmT - 1) / kGemmT;
  // Token groups packed per pass: as many as fit beside a unit's weights in L2, so each unit is
  // fetched from memory once per pass rather than once per group.
  const int64_t per_pass = std::clamp<int64_t>(kGemmPackedBytes / (group_floats * 4), 1, groups);
  thread_local std::vector<float> buf;
  float* packed = AlignedScratch(buf, static_cast<size_t>(per_pass * group_floats));
  std::vector<int64_t> t0s;
  for (int64_t g0 = 0; g0 < groups; g0 += per_pass) {
    const int64_t ng = std::min(per_pass, groups - g0);
    t0s.clear();
    for (int64_t g = g0; g <= g0 + ng; ++g) t0s.push_back(S * g / groups);
    for (int64_t i = 0; i < ng; ++i)
      for (int64_t c = 0; c < nchunks; ++c) {
        const int64_t k0 = c * kGemmChunk, len = std::min(K, k0 + kGemmChunk) - k0;
        for (int64_t t = t0s[size_t(i)]; t < t0s[size_t(i) + 1]; ++t)
          std::memcpy(packed + i * group_floats + (c * kGemmT + t - t0s[size_t(i)]) * kGemmChunk, x + t * xs + k0,
                      size_t(len) * 4);
      }
    RowsGemmPass(W, o0, o1, packed, group_floats, t0s, y, ys);
  }
}

// Groups i of the pass (tokens t0s[i] .. t0s[i+1], packed group_floats apart), unit by unit.
void RowsGemmPass(const Linear& W, int64_t o0, int64_t o1, const float* packed, int64_t group_floats,
                  const std::vector<int64_t>& t0s, float* y, int64_t ys) {
  const int64_t K = W.in, nb = K / 32;
  thread_local std::vector<float> scales, park_buf;
  float* park = AlignedScratch(park_buf, static_cast<size_t>(kGemmUnit * kGemmT * kMaxLanes));
  for (int64_t u0 = o0; u0 < o1; u0 += kGemmUnit) {
    const int64_t u1 = std::min(o1, u0 + kGemmUnit);
    RowAux aux;
    aux.prefetch_rows = 8;
    if (W.fmt == Linear::Format::FP4) {
      scales.resize(static_cast<size_t>((u1 - u0) * nb));
      for (int64_t o = u0; o < u1; ++o) Fp4RowScales(W, o, nb, scales.data() + (o - u0) * nb);
      aux.fp4_scales = scales.data();
      aux.fp4_stride = nb;
    }
    for (size_t i = 0; i + 1 < t0s.size(); ++i) {
      const int64_t tn = t0s[i + 1] - t0s[i];
      float* yg = y + t0s[i] * ys;
      for (int64_t k0 = 0; k0 < K; k0 += kGemmChunk) {
        const int64_t k1 = std::min(K, k0 + kGemmChunk);
        const float* xc = packed + int64_t(i) * group_floats + (k0 / kGemmChunk) * kGemmT * kGemmChunk;
        switch (tn) {
#define DSV4_GEMM_CASE(n) \
  case n: GemmGroup<(n <= kGemmT ? n : 1)>(W, u0, u1, k0, k1, xc, kGemmChunk, aux, park, yg, ys); break;
          DSV4_GEMM_CASE(1) DSV4_GEMM_CASE(2) DSV4_GEMM_CASE(3) DSV4_GEMM_CASE(4) DSV4_GEMM_CASE(5)
          DSV4_GEMM_CASE(6) DSV4_GEMM_CASE(7) DSV4_GEMM_CASE(8) DSV4_GEMM_CASE(9)
#undef DSV4_GEMM_CASE
        }
      }
    }
  }
}

void OrderActivation(const Linear& W, const float* x, float* dst) {
  const size_t N = Lanes();
  const int64_t K = W.in, Kp = int64_t((size_t(K) + N - 1) / N * N);
  if (W.fmt != Linear::Format::FP4) {
    std::memcpy(dst, x, size_t(K) * 4);
    for (int64_t k = K; k < Kp; ++k) dst[k] = 0.0f;
    return;
  }
  for (int64_t b = 0; b < K / 2; b += int64_t(N))
    for (size_t i = 0; i < N; ++i) {
      dst[2 * b + int64_t(i)] = x[2 * (b + int64_t(i))];
      dst[2 * b + int64_t(N + i)] = x[2 * (b + int64_t(i)) + 1];
    }
}

// R weight rows × 4 tokens in registers over k in [k0, k1); the accumulators are parked in `acc`
// between calls, which leaves each output's accumulation sequence unchanged.
template <int R>
void TileChunk(const float* const* w, const float* x, int64_t xs, int64_t k0, int64_t k1, float* acc) {
  const hn::ScalableTag<float> df;
  const int64_t N = int64_t(hn::Lanes(df));
  using V = decltype(hn::Zero(df));
  V a[R][4];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int t = 0; t < 4; ++t) a[r][t] = hn::Load(df, acc + (r * 4 + t) * N);
  const float *x0 = x, *x1 = x + xs, *x2 = x + 2 * xs, *x3 = x + 3 * xs;
  for (int64_t k = k0; k < k1; k += N) {
    const V v0 = hn::LoadU(df, x0 + k), v1 = hn::LoadU(df, x1 + k), v2 = hn::LoadU(df, x2 + k), v3 = hn::LoadU(df, x3 + k);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const V wr = hn::LoadU(df, w[r] + k);
      a[r][0] = hn::MulAdd(wr, v0, a[r][0]);
      a[r][1] = hn::MulAdd(wr, v1, a[r][1]);
      a[r][2] = hn::MulAdd(wr, v2, a[r][2]);
      a[r][3] = hn::MulAdd(wr, v3, a[r][3]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int t = 0; t < 4; ++t) hn::Store(a[r][t], df, acc + (r * 4 + t) * N);
}

void Dot(const float* const* w, int R, const float* x, int64_t xs, int64_t S, int64_t kp, float* y, int64_t yr,
         int64_t ys) {
  const hn::ScalableTag<float> df;
  const int64_t N = int64_t(hn::Lanes(df));
  // K in chunks so that the chunk of every row (≤ 16) and of 4 tokens stays in L1 across row quads.
  constexpr int64_t kChunk = 512;
  if (R > 16) {  // the accumulator tile holds 16 rows; split anything larger
    Dot(w, 16, x, xs, S, kp, y, yr, ys);
    return Dot(w + 16, R - 16, x, xs, S, kp, y + 16 * yr, yr, ys);
  }
  alignas(64) float acc[16 * 4 * HWY_LANES(float)];
  int64_t s = 0;
  for (; s + 4 <= S; s += 4) {
    std::fill(acc, acc + R * 4 * N, 0.0f);
    const float* xt = x + s * xs;
    for (int64_t k0 = 0; k0 < kp; k0 += kChunk) {
      const int64_t k1 = std::min(kp, k0 + kChunk);
      int r = 0;
      for (; r + 4 <= R; r += 4) TileChunk<4>(w + r, xt, xs, k0, k1, acc + r * 4 * N);
      for (; r + 2 <= R; r += 2) TileChunk<2>(w + r, xt, xs, k0, k1, acc + r * 4 * N);
      for (; r < R; ++r) TileChunk<1>(w + r, xt, xs, k0, k1, acc + r * 4 * N);
    }
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < 4; ++t)
        y[r * yr + (s + t) * ys] = hn::GetLane(hn::SumOfLanes(df, hn::Load(df, acc + (r * 4 + t) * N)));
  }
  for (int r = 0; r < R; ++r)
    for (int64_t t = s; t < S; ++t) {
      auto a = hn::Zero(df);
      const float* xr = x + t * xs;
      for (int64_t k = 0; k < kp; k += N) a = hn::MulAdd(hn::LoadU(df, w[r] + k), hn::LoadU(df, xr + k), a);
      y[r * yr + t * ys] = hn::GetLane(hn::SumOfLanes(df, a));
    }
}

float DotF32(const float* a, const float* b, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  auto a0 = hn::Zero(df), a1 = a0;
  size_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    a0 = hn::MulAdd(hn::LoadU(df, a + i), hn::LoadU(df, b + i), a0);
    a1 = hn::MulAdd(hn::LoadU(df, a + i + N), hn::LoadU(df, b + i + N), a1);
  }
  for (; i + N <= n; i += N) a0 = hn::MulAdd(hn::LoadU(df, a + i), hn::LoadU(df, b + i), a0);
  float s = hn::GetLane(hn::SumOfLanes(df, hn::Add(a0, a1)));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

void Axpy(float a, const float* x, float* y, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  const auto va = hn::Set(df, a);
  size_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::MulAdd(va, hn::LoadU(df, x + i), hn::LoadU(df, y + i)), df, y + i);
  for (; i < n; ++i) y[i] += a * x[i];
}

double StreamSum(const float* p, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  auto a0 = hn::Zero(df), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    a0 = hn::Add(a0, hn::LoadU(df, p + i));
    a1 = hn::Add(a1, hn::LoadU(df, p + i + N));
    a2 = hn::Add(a2, hn::LoadU(df, p + i + 2 * N));
    a3 = hn::Add(a3, hn::LoadU(df, p + i + 3 * N));
  }
  double s = hn::GetLane(hn::SumOfLanes(df, hn::Add(hn::Add(a0, a1), hn::Add(a2, a3))));
  for (; i < n; ++i) s += p[i];
  return s;
}

double FmaBurn(int64_t iters, float* sink) {
  const hn::ScalableTag<float> df;
  // 12 independent chains cover the FMA latency × throughput of current cores.
  auto m = hn::Set(df, 0.999999f), c = hn::Set(df, 1e-7f);
  // Distinct starting values: identical chains would be merged by the compiler into one.
  auto a0 = hn::Set(df, sink[0]), a1 = hn::Add(a0, c), a2 = hn::Add(a1, c), a3 = hn::Add(a2, c), a4 = hn::Add(a3, c),
       a5 = hn::Add(a4, c), a6 = hn::Add(a5, c), a7 = hn::Add(a6, c), a8 = hn::Add(a7, c), a9 = hn::Add(a8, c),
       a10 = hn::Add(a9, c), a11 = hn::Add(a10, c);
  for (int64_t i = 0; i < iters; ++i) {
    a0 = hn::MulAdd(a0, m, c); a1 = hn::MulAdd(a1, m, c); a2 = hn::MulAdd(a2, m, c); a3 = hn::MulAdd(a3, m, c);
    a4 = hn::MulAdd(a4, m, c); a5 = hn::MulAdd(a5, m, c); a6 = hn::MulAdd(a6, m, c); a7 = hn::MulAdd(a7, m, c);
    a8 = hn::MulAdd(a8, m, c); a9 = hn::MulAdd(a9, m, c); a10 = hn::MulAdd(a10, m, c); a11 = hn::MulAdd(a11, m, c);
  }
  auto s = hn::Add(hn::Add(hn::Add(a0, a1), hn::Add(a2, a3)), hn::Add(hn::Add(a4, a5), hn::Add(a6, a7)));
  s = hn::Add(s, hn::Add(hn::Add(a8, a9), hn::Add(a10, a11)));
  *sink = hn::GetLane(hn::SumOfLanes(df, s));
  return double(iters) * 12.0 * 2.0 * double(hn::Lanes(df));
}

}  // namespace dsv4::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dsv4::simd {
HWY_EXPORT(Lanes);
HWY_EXPORT(DequantRow);
HWY_EXPORT(DotRowsFused);
HWY_EXPORT(OrderActivation);
HWY_EXPORT(Dot);
HWY_EXPORT(StreamSum);
HWY_EXPORT(DotF32);
HWY_EXPORT(Axpy);
HWY_EXPORT(FmaBurn);

size_t lanes() {
  static const size_t n = HWY_DYNAMIC_DISPATCH(Lanes)();
  return n;
}
size_t padded(int64_t k) { return (size_t(k) + lanes() - 1) / lanes() * lanes(); }
void dequant_row(const Linear& W, int64_t o, float* dst) { HWY_DYNAMIC_DISPATCH(DequantRow)(W, o, dst); }
void dot_rows_fused(const Linear& W, int64_t o0, int64_t o1, const float* x, int64_t xs, int64_t S, int64_t kp,
                    float* y, int64_t ys) {
  HWY_DYNAMIC_DISPATCH(DotRowsFused)(W, o0, o1, x, xs, S, kp, y, ys);
}
void order_activation(const Linear& W, const float* x, float* dst) { HWY_DYNAMIC_DISPATCH(OrderActivation)(W, x, dst); }
void dot(const float* const* w, int R, const float* x, int64_t xs, int64_t S, int64_t kp, float* y, int64_t yr,
         int64_t ys) {
  HWY_DYNAMIC_DISPATCH(Dot)(w, R, x, xs, S, kp, y, yr, ys);
}
float dot_f32(const float* a, const float* b, size_t n) { return HWY_DYNAMIC_DISPATCH(DotF32)(a, b, n); }
void axpy(float a, const float* x, float* y, size_t n) { HWY_DYNAMIC_DISPATCH(Axpy)(a, x, y, n); }
double stream_sum(const float* p, size_t n) { return HWY_DYNAMIC_DISPATCH(StreamSum)(p, n); }
double fma_burn(int64_t iters, float* sink) { return HWY_DYNAMIC_DISPATCH(FmaBurn)(iters, sink); }
}  // namespace dsv4::simd
#endif
