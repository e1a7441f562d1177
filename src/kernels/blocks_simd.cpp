// SIMD decoders and fused products of the ggml block formats, dispatched at run time (Highway).
// A decoder emits a block's weights as fp32 vectors in natural k order, through a sink: DequantRow
// stores them, the decode kernels feed them straight into FMAs, the prefill kernels decode a chunk
// once into L1 and reuse it for many tokens. Every path accumulates each output in one lane-wise
// vector over k in natural order and folds it once, so results do not depend on the path taken.
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/blocks.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/blocks_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace dsv4::blocks::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using namespace dsv4::blocks::detail;

// At most 16 lanes: every format's groups (16 or 32 weights) then hold whole vectors.
using DF = hn::CappedTag<float, 16>;
using VF = hn::Vec<DF>;
using DI = hn::RebindToSigned<DF>;
using DU = hn::RebindToUnsigned<DF>;
using D8 = hn::Rebind<uint8_t, DF>;
using DS8 = hn::Rebind<int8_t, DF>;
using VU = hn::Vec<DU>;

// fp16 block scales: one F16C instruction where the target has it (an out-of-line call per block
// would cost more than the block's vector work), the exact scalar codec elsewhere.
HWY_INLINE float HalfAt(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
  return _cvtsh_ss(h);
#else
  return f16_to_f32(h);
#endif
}
HWY_INLINE VU Bytes(const uint8_t* p) { return hn::PromoteTo(DU(), hn::LoadU(D8(), p)); }
HWY_INLINE VF IntToF(VU v) { return hn::ConvertTo(DF(), hn::BitCast(DI(), v)); }
HWY_INLINE VU Low4(VU c) { return hn::And(c, hn::Set(DU(), 15u)); }
template <int kShift>
HWY_INLINE VU Bits2(VU c) { return hn::And(hn::ShiftRight<kShift>(c), hn::Set(DU(), 3u)); }
template <int kShift>
HWY_INLINE VU Bit1(VU c) { return hn::And(hn::ShiftRight<kShift>(c), hn::Set(DU(), 1u)); }
constexpr int64_t kN = int64_t(hn::MaxLanes(DF()));
HWY_INLINE int64_t Lanes() { return kN; }

// n (a multiple of 8) small integers as floats times m, into out: the per-block scale tables, built
// with vector code (scalar conversions per sub-block would cost as much as the block's weights).
template <typename T>
HWY_INLINE void ScaleTable(const T* v, int n, float m, float* out) {
  const hn::CappedTag<float, 8> d8f;
  const hn::Rebind<T, decltype(d8f)> dt;
  const auto mv = hn::Set(d8f, m);
  constexpr int64_t M = int64_t(hn::MaxLanes(d8f));
  for (int64_t i = 0; i < n; i += M)
    hn::StoreU(hn::Mul(hn::ConvertTo(d8f, hn::PromoteTo(hn::RebindToSigned<decltype(d8f)>(), hn::LoadU(dt, v + i))), mv),
               d8f, out + i);
}

// Keeps a just-written scale table in memory: GCC would otherwise hold it in registers and extract
// every lane with shuffles, which compete with the decode for the vector ports; broadcasts from
// memory use the load ports instead.
HWY_INLINE void InMemory(const float* p) { asm volatile("" : : "r"(p) : "memory"); }

// The helpers below are templates on compile-time shifts: with every loop unrolled, each vector
// costs one widening load, one or two bit operations, a convert and one or two FMAs/multiplies.

template <class Sink>
HWY_INLINE void DecQ8_0(const uint8_t* b, const Sink& sink) {
  const VF d = hn::Set(DF(), HalfAt(b));
#pragma GCC unroll 8
  for (int64_t i = 0; i < 32; i += kN) {
    const auto q = hn::PromoteTo(DI(), hn::LoadU(DS8(), reinterpret_cast<const int8_t*>(b + 2 + i)));
    sink(i, hn::Mul(hn::ConvertTo(DF(), q), d));
  }
}

template <class Sink>
HWY_INLINE void DecQ4_0(const uint8_t* b, const Sink& sink) {
  const VF d = hn::Set(DF(), HalfAt(b));
  const auto off = hn::Set(DI(), 8);
  VU c[16 / kN + 1];
#pragma GCC unroll 8
  for (int64_t i = 0; i < 16; i += kN) c[i / kN] = Bytes(b + 2 + i);
#pragma GCC unroll 8
  for (int64_t i = 0; i < 16; i += kN)
    sink(i, hn::Mul(hn::ConvertTo(DF(), hn::Sub(hn::BitCast(DI(), Low4(c[i / kN])), off)), d));
#pragma GCC unroll 8
  for (int64_t i = 0; i < 16; i += kN)
    sink(16 + i, hn::Mul(hn::ConvertTo(DF(), hn::Sub(hn::BitCast(DI(), hn::ShiftRight<4>(c[i / kN])), off)), d));
}

template <class Sink>
HWY_INLINE void DecMxfp4(const uint8_t* b, const Sink& sink) {
  const float ds = e8m0_half(b[0]);
#if HWY_TARGET == HWY_SCALAR
  const VF d = hn::Set(DF(), ds);
  for (int half = 0; half < 2; ++half)
    for (int i = 0; i < 16; ++i)
      sink(16 * half + i, hn::Mul(hn::Set(DF(), float(kMxfp4Values[(b[1 + i] >> (4 * half)) & 15])), d));
#elif HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
  // vpermps reads the low 4 bits of each index: the 16 values times the scale, one permute a vector
  // (value × 2^e is exact, so the table product equals the scalar one).
  alignas(64) static constexpr float kTab[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
  const VF t = hn::Mul(hn::Load(DF(), kTab), hn::Set(DF(), ds));
  const VU c = Bytes(b + 1);
  sink(0, VF{_mm512_permutexvar_ps(c.raw, t.raw)});
  sink(16, VF{_mm512_permutexvar_ps(hn::ShiftRight<4>(c).raw, t.raw)});
#else
  // One byte shuffle looks up the 16-entry value table for N nibbles.
  const VF d = hn::Set(DF(), ds);
  const hn::Full128<int8_t> d16;
  const auto table = hn::LoadU(d16, kMxfp4Values);
  hn::Vec<D8> c[16 / kN];
#pragma GCC unroll 8
  for (int64_t i = 0; i < 16; i += kN) c[i / kN] = hn::LoadU(D8(), b + 1 + i);
#pragma GCC unroll 2
  for (int half = 0; half < 2; ++half)
#pragma GCC unroll 8
    for (int64_t i = 0; i < 16; i += kN) {
      const auto idx = half ? hn::ShiftRight<4>(c[i / kN]) : hn::And(c[i / kN], hn::Set(D8(), uint8_t(15)));
      const auto v = hn::TableLookupBytes(table, hn::BitCast(DS8(), idx));
      sink(16 * half + i, hn::Mul(hn::ConvertTo(DF(), hn::PromoteTo(DI(), v)), d));
    }
#endif
}

// Q2_K / Q3_K: the 2-bit plane at shift 2j of the 32 bytes of half h holds elements 128h + 32j + l.
template <int kJ, class Sink>
HWY_INLINE void Q2Plane(const uint8_t* qs, int h, const float* dl, const float* ml, const Sink& sink) {
#pragma GCC unroll 8
  for (int64_t l = 0; l < 32; l += kN) {
    const int64_t e = 128 * h + 32 * kJ + l;
    const VU q = Bits2<2 * kJ>(Bytes(qs + 32 * h + l));
    sink(e, hn::MulSub(hn::Set(DF(), dl[e / 16]), IntToF(q), hn::Set(DF(), ml[e / 16])));
  }
}

// Products d·sc·q of the K formats are exact in fp32 (at most 24 significant bits), so a fused
// multiply-subtract rounds once, exactly as the scalar multiply then subtract does.
template <class Sink>
HWY_INLINE void DecQ2K(const uint8_t* b, const Sink& sink) {
  alignas(64) float dl[16], ml[16];
  uint8_t lo[16], hi[16];
  for (int j = 0; j < 16; ++j) lo[j] = b[j] & 15, hi[j] = b[j] >> 4;
  ScaleTable(lo, 16, HalfAt(b + 80), dl);
  ScaleTable(hi, 16, HalfAt(b + 82), ml);
  InMemory(dl);
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    Q2Plane<0>(b + 16, h, dl, ml, sink);
    Q2Plane<1>(b + 16, h, dl, ml, sink);
    Q2Plane<2>(b + 16, h, dl, ml, sink);
    Q2Plane<3>(b + 16, h, dl, ml, sink);
  }
}

// Q3_K's sixteen 6-bit scales, unpacked four at a time in 32-bit words (s: the 12 packed bytes).
HWY_INLINE void Q3Scales(const uint8_t* s, int8_t* out) {
  uint32_t a0, a1, t;
  std::memcpy(&a0, s, 4);
  std::memcpy(&a1, s + 4, 4);
  std::memcpy(&t, s + 8, 4);
  const uint32_t m4 = 0x0f0f0f0fu, m2 = 0x03030303u;
  // Bytewise x − 32 without borrows: set each byte's top bit, subtract, flip it back.
  auto minus32 = [](uint32_t x) { return ((x | 0x80808080u) - 0x20202020u) ^ 0x80808080u; };
  const uint32_t w[4] = {minus32((a0 & m4) | ((t & m2) << 4)), minus32((a1 & m4) | (((t >> 2) & m2) << 4)),
                         minus32(((a0 >> 4) & m4) | (((t >> 4) & m2) << 4)),
                         minus32(((a1 >> 4) & m4) | (((t >> 6) & m2) << 4))};
  std::memcpy(out, w, 16);
}

template <int kJ, class Sink>
HWY_INLINE void Q3Plane(const uint8_t* b, int h, const float* dl, const Sink& sink) {
  const auto four = hn::Set(DI(), 4);
#pragma GCC unroll 8
  for (int64_t l = 0; l < 32; l += kN) {
    const int64_t e = 128 * h + 32 * kJ + l;
    const VU q = Bits2<2 * kJ>(Bytes(b + 32 + 32 * h + l));
    const VU hm = Bytes(b + l);
    const VU hb = h ? Bit1<4 + kJ>(hm) : Bit1<kJ>(hm);
    const auto qi = hn::Sub(hn::BitCast(DI(), hn::Or(q, hn::ShiftLeft<2>(hb))), four);
    sink(e, hn::Mul(hn::Set(DF(), dl[e / 16]), hn::ConvertTo(DF(), qi)));
  }
}

template <class Sink>
HWY_INLINE void DecQ3K(const uint8_t* b, const Sink& sink) {
  alignas(64) float dl[16];
  int8_t sc[16];
  Q3Scales(b + 96, sc);
  ScaleTable(sc, 16, HalfAt(b + 108), dl);
  InMemory(dl);
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    Q3Plane<0>(b, h, dl, sink);
    Q3Plane<1>(b, h, dl, sink);
    Q3Plane<2>(b, h, dl, sink);
    Q3Plane<3>(b, h, dl, sink);
  }
}

// Q4_K / Q5_K: the eight 6-bit scales and mins from the 12 packed bytes, four at a time.
HWY_INLINE void K4Scales(const uint8_t* s, uint8_t* sc, uint8_t* mn) {
  uint32_t w0, w1, w2;
  std::memcpy(&w0, s, 4);
  std::memcpy(&w1, s + 4, 4);
  std::memcpy(&w2, s + 8, 4);
  const uint32_t m6 = 0x3f3f3f3fu, m4 = 0x0f0f0f0fu, m2 = 0x03030303u;
  const uint32_t a[2] = {w0 & m6, (w2 & m4) | (((w0 >> 6) & m2) << 4)};
  const uint32_t m[2] = {w1 & m6, ((w2 >> 4) & m4) | (((w1 >> 6) & m2) << 4)};
  std::memcpy(sc, a, 8);
  std::memcpy(mn, m, 8);
}

template <bool kFive, int kJ, class Sink>
HWY_INLINE void K4Sub(const uint8_t* b, const float* d1, const float* m1, const Sink& sink) {
  const uint8_t* qs = b + (kFive ? 48 : 16);
#pragma GCC unroll 8
  for (int64_t l = 0; l < 32; l += kN) {
    const VU c = Bytes(qs + 32 * (kJ / 2) + l);
    VU q = kJ % 2 ? hn::ShiftRight<4>(c) : Low4(c);
    if (kFive) q = hn::Or(q, hn::ShiftLeft<4>(Bit1<kJ>(Bytes(b + 16 + l))));
    sink(32 * kJ + l, hn::MulSub(hn::Set(DF(), d1[kJ]), IntToF(q), hn::Set(DF(), m1[kJ])));
  }
}

template <bool kFive, class Sink>
HWY_INLINE void DecQ45K(const uint8_t* b, const Sink& sink) {
  alignas(32) float d1[8], m1[8];
  uint8_t sc[8], mn[8];
  K4Scales(b + 4, sc, mn);
  ScaleTable(sc, 8, HalfAt(b), d1);
  ScaleTable(mn, 8, HalfAt(b + 2), m1);
  InMemory(d1);
  K4Sub<kFive, 0>(b, d1, m1, sink);
  K4Sub<kFive, 1>(b, d1, m1, sink);
  K4Sub<kFive, 2>(b, d1, m1, sink);
  K4Sub<kFive, 3>(b, d1, m1, sink);
  K4Sub<kFive, 4>(b, d1, m1, sink);
  K4Sub<kFive, 5>(b, d1, m1, sink);
  K4Sub<kFive, 6>(b, d1, m1, sink);
  K4Sub<kFive, 7>(b, d1, m1, sink);
}

template <int kQ, class Sink>
HWY_INLINE void Q6Quarter(const uint8_t* b, int h, const float* dl, const Sink& sink) {
  const auto off = hn::Set(DI(), 32);
#pragma GCC unroll 8
  for (int64_t l = 0; l < 32; l += kN) {
    const int64_t e = 128 * h + 32 * kQ + l;
    const VU c = Bytes(b + 64 * h + 32 * (kQ % 2) + l);
    const VU lo = kQ < 2 ? Low4(c) : hn::ShiftRight<4>(c);
    const VU hi = Bits2<2 * kQ>(Bytes(b + 128 + 32 * h + l));
    const auto q = hn::Sub(hn::BitCast(DI(), hn::Or(lo, hn::ShiftLeft<4>(hi))), off);
    sink(e, hn::Mul(hn::Set(DF(), dl[e / 16]), hn::ConvertTo(DF(), q)));
  }
}

template <class Sink>
HWY_INLINE void DecQ6K(const uint8_t* b, const Sink& sink) {
  alignas(64) float dl[16];
  ScaleTable(reinterpret_cast<const int8_t*>(b + 192), 16, HalfAt(b + 208), dl);
  InMemory(dl);
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    Q6Quarter<0>(b, h, dl, sink);
    Q6Quarter<1>(b, h, dl, sink);
    Q6Quarter<2>(b, h, dl, sink);
    Q6Quarter<3>(b, h, dl, sink);
  }
}

template <class Sink>
HWY_INLINE void DecIq2xxs(const uint8_t* b, const Sink& sink) {
  const float d = HalfAt(b);
  alignas(32) int8_t q[32];
#pragma GCC unroll 8
  for (int ib = 0; ib < 8; ++ib) {
    const uint8_t* p = b + 2 + 8 * ib;
    uint32_t aux;
    std::memcpy(&aux, p + 4, 4);
    const VF db = hn::Set(DF(), d * (0.5f + float(aux >> 28)) * 0.25f);
    uint64_t v[4];
#pragma GCC unroll 4
    for (int l = 0; l < 4; ++l) {
      // Negating a byte is (g ^ 0xFF) + 1; grid bytes are ≥ 8, so no carry crosses bytes.
      const uint64_t m = kIq2SignMask[(aux >> (7 * l)) & 127];
      v[l] = (kIq2xxsGrid[p[l]] ^ m) + (m & 0x0101010101010101ull);
    }
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
    // Into registers directly: a 16-byte load of two 8-byte stores would miss store forwarding.
    const __m128i lo = _mm_set_epi64x(int64_t(v[1]), int64_t(v[0])), hi = _mm_set_epi64x(int64_t(v[3]), int64_t(v[2]));
    sink(32 * ib, hn::Mul(db, VF{_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo))}));
    sink(32 * ib + 16, hn::Mul(db, VF{_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi))}));
    (void)q;
#else
    std::memcpy(q, v, 32);
#pragma GCC unroll 8
    for (int64_t i = 0; i < 32; i += kN) {
      const auto qi = hn::PromoteTo(DI(), hn::LoadU(DS8(), q + i));
      sink(32 * ib + i, hn::Mul(db, hn::ConvertTo(DF(), qi)));
    }
#endif
  }
}

// Calls fn(decoder) with the decoder of format f (a generic lambda, so each format's code is inlined).
template <class Fn>
HWY_INLINE void WithDecoder(BlockFormat f, const Fn& fn) {
  switch (f) {
    case BlockFormat::Q8_0: return fn([](const uint8_t* b, const auto& s) HWY_ATTR { DecQ8_0(b, s); });
    case BlockFormat::Q4_0: return fn([](const uint8_t* b, const auto& s) HWY_ATTR { DecQ4_0(b, s); });
    case BlockFormat::MXFP4: return fn([](const uint8_t* b, const auto& s) HWY_ATTR { DecMxfp4(b, s); });
    case BlockFormat::Q2_K: return fn([](const uint8_t* b, const auto& s) HWY_ATTR { DecQ2K(b, s); });
    case BlockFormat::Q3_K: return fn([](const uint8_t* b, const auto& s) HWY_ATTR { DecQ3K(b, s); });
    case BlockFormat::Q4_K: return fn([](const uint8_t* b, const auto& s) HWY_ATTR { DecQ45K<false>(b, s); });
    case BlockFormat::Q5_K: return fn([](const uint8_t* b, const auto& s) HWY_ATTR { DecQ45K<true>(b, s); });
    case BlockFormat::Q6_K: return fn([](const uint8_t* b, const auto& s) HWY_ATTR { DecQ6K(b, s); });
    case BlockFormat::IQ2_XXS: return fn([](const uint8_t* b, const auto& s) HWY_ATTR { DecIq2xxs(b, s); });
    case BlockFormat::None: break;
  }
  fail("blocks: no block format");
}

// Decodes nb consecutive blocks of format f into dst.
void DecodeBlocks(BlockFormat f, const uint8_t* p, int64_t nb, float* dst) {
  const auto& info = block_info(f);
  WithDecoder(f, [&](const auto& dec) HWY_ATTR {
    for (int64_t b = 0; b < nb; ++b) {
      float* out = dst + b * info.elems;
      dec(p + b * info.bytes, [out](int64_t i, VF v) HWY_ATTR { hn::StoreU(v, DF(), out + i); });
    }
  });
}

void DequantRow(BlockFormat f, const uint8_t* row, int64_t k, float* dst) {
  DecodeBlocks(f, row, k / block_info(f).elems, dst);
}

HWY_INLINE float Fold(VF v) { return hn::GetLane(hn::SumOfLanes(DF(), v)); }

// Decode (S = 1): R rows in lockstep, each block decoded in registers straight into its row's FMA
// chain; R independent chains hide the FMA latency.
template <int R, class Dec>
HWY_INLINE void DecodeRows(const Dec& dec, const BlockFormatInfo& info, const uint8_t* w, int64_t rb, int64_t K,
                           int64_t o, const float* x, float* y) {
  VF acc[R];
  for (int r = 0; r < R; ++r) acc[r] = hn::Zero(DF());
  const uint8_t* row = w + o * rb;
  for (int64_t b = 0; b < K / info.elems; ++b) {
    const float* xb = x + b * info.elems;
    const uint8_t* blk = row + b * info.bytes;
    __builtin_prefetch(blk + R * rb + 256);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      VF a = acc[r];
      dec(blk + r * rb, [&a, xb](int64_t i, VF v) HWY_ATTR { a = hn::MulAdd(v, hn::LoadU(DF(), xb + i), a); });
      acc[r] = a;
    }
  }
  for (int r = 0; r < R; ++r) y[o + r] = Fold(acc[r]);
}

// Prefill tile: R decoded rows (wbuf, C weights each, wstride apart) × T tokens over C weights,
// accumulators parked in `park` between chunks.
template <int R, int T>
void TileChunk(const float* wbuf, int64_t wstride, int64_t C, const float* x, int64_t xs, float* park, bool first) {
  const DF df;
  const int64_t N = Lanes();
  VF acc[R][T];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[r][t] = first ? hn::Zero(df) : hn::LoadU(df, park + (r * T + t) * N);
  for (int64_t i = 0; i < C; i += N) {
    VF wv[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) wv[r] = hn::LoadU(df, wbuf + r * wstride + i);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const VF xv = hn::LoadU(df, x + t * xs + i);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r][t] = hn::MulAdd(wv[r], xv, acc[r][t]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) hn::StoreU(acc[r][t], df, park + (r * T + t) * N);
}

constexpr int kTileR = 4, kTileT = 4;

// Prefill (S > 1): per group of up to kTileR rows, each 256-weight chunk is decoded once into L1 and
// multiplied against every token, kTileT at a time.
void PrefillRows(BlockFormat f, const uint8_t* w, int64_t rb, int64_t K, int64_t o0, int64_t o1, const float* x,
                 int64_t xs, int64_t S, float* y, int64_t ys) {
  const auto& info = block_info(f);
  const int64_t N = Lanes();
  constexpr int64_t kChunk = 256;
  alignas(64) float wbuf[kTileR * kChunk];
  thread_local std::vector<float> park_buf;
  park_buf.resize(size_t(kTileR * S * N));
  float* park = park_buf.data();
  for (int64_t o = o0; o < o1; o += kTileR) {
    const int R = int(std::min<int64_t>(kTileR, o1 - o));
    for (int64_t k0 = 0; k0 < K; k0 += kChunk) {
      const int64_t C = std::min(kChunk, K - k0), nb = C / info.elems;
      const int64_t boff = k0 / info.elems * info.bytes;
      for (int r = 0; r < R; ++r) DecodeBlocks(f, w + (o + r) * rb + boff, nb, wbuf + r * kChunk);
      for (int64_t t = 0; t < S;) {
        const int64_t T = std::min<int64_t>(kTileT, S - t);
        float* pk = park + t * kTileR * N;
        const float* xt = x + t * xs + k0;
        const bool first = k0 == 0;
        if (R == kTileR) {
          switch (T) {
            case 4: TileChunk<kTileR, 4>(wbuf, kChunk, C, xt, xs, pk, first); break;
            case 3: TileChunk<kTileR, 3>(wbuf, kChunk, C, xt, xs, pk, first); break;
            case 2: TileChunk<kTileR, 2>(wbuf, kChunk, C, xt, xs, pk, first); break;
            default: TileChunk<kTileR, 1>(wbuf, kChunk, C, xt, xs, pk, first); break;
          }
        } else {
          for (int r = 0; r < R; ++r) {
            float* pr = pk + r * T * N;
            switch (T) {
              case 4: TileChunk<1, 4>(wbuf + r * kChunk, kChunk, C, xt, xs, pr, first); break;
              case 3: TileChunk<1, 3>(wbuf + r * kChunk, kChunk, C, xt, xs, pr, first); break;
              case 2: TileChunk<1, 2>(wbuf + r * kChunk, kChunk, C, xt, xs, pr, first); break;
              default: TileChunk<1, 1>(wbuf + r * kChunk, kChunk, C, xt, xs, pr, first); break;
            }
          }
        }
        t += T;
      }
    }
    // Parked accumulators: token tile at t·kTileR·N, then (row, token) within the tile.
    for (int64_t t = 0; t < S;) {
      const int64_t T = std::min<int64_t>(kTileT, S - t);
      for (int r = 0; r < R; ++r)
        for (int64_t u = 0; u < T; ++u)
          y[o + r + (t + u) * ys] = Fold(hn::LoadU(DF(), park + t * kTileR * N + (r * T + u) * N));
      t += T;
    }
  }
}

void DotRows(BlockFormat f, const uint8_t* w, int64_t K, int64_t o0, int64_t o1, const float* x, int64_t xs,
             int64_t S, float* y, int64_t ys) {
  const auto& info = block_info(f);
  DSV4_CHECK(K % info.elems == 0, "dot_rows: {} row of {} weights", info.name, K);
  const int64_t rb = block_row_bytes(f, K);
  if (S > 1) return PrefillRows(f, w, rb, K, o0, o1, x, xs, S, y, ys);
  WithDecoder(f, [&](const auto& dec) HWY_ATTR {
    int64_t o = o0;
    for (; o + 4 <= o1; o += 4) DecodeRows<4>(dec, info, w, rb, K, o, x, y);
    for (; o < o1; ++o) DecodeRows<1>(dec, info, w, rb, K, o, x, y);
  });
}

}  // namespace dsv4::blocks::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dsv4::blocks {
HWY_EXPORT(DequantRow);
HWY_EXPORT(DotRows);

void dequant_row(BlockFormat f, const uint8_t* row, int64_t k, float* dst) {
  DSV4_CHECK(f != BlockFormat::None && k % block_info(f).elems == 0, "dequant_row: {} row of {} weights",
             block_name(f), k);
  HWY_DYNAMIC_DISPATCH(DequantRow)(f, row, k, dst);
}
void dot_rows(BlockFormat f, const uint8_t* w, int64_t k, int64_t o0, int64_t o1, const float* x, int64_t xstride,
              int64_t S, float* y, int64_t ystride) {
  DSV4_CHECK(f != BlockFormat::None, "dot_rows: no block format");
  if (o1 <= o0 || S <= 0) return;
  HWY_DYNAMIC_DISPATCH(DotRows)(f, w, k, o0, o1, x, xstride, S, y, ystride);
}
}  // namespace dsv4::blocks
#endif
