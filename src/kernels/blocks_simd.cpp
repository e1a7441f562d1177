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

HWY_INLINE float HalfAt(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}
HWY_INLINE VU Bytes(const uint8_t* p) { return hn::PromoteTo(DU(), hn::LoadU(D8(), p)); }
HWY_INLINE VF IntToF(VU v) { return hn::ConvertTo(DF(), hn::BitCast(DI(), v)); }
HWY_INLINE VU Low4(VU c) { return hn::And(c, hn::Set(DU(), 15u)); }
HWY_INLINE VU Bit(VU c, int shift, uint32_t mask) { return hn::And(hn::ShiftRightSame(c, shift), hn::Set(DU(), mask)); }
HWY_INLINE int64_t Lanes() { return int64_t(hn::Lanes(DF())); }

// ---- decoders: sink(i, v) receives weights [i, i + N) of the block, i increasing ----

template <class Sink>
HWY_INLINE void DecQ8_0(const uint8_t* b, const Sink& sink) {
  const VF d = hn::Set(DF(), HalfAt(b));
  const int64_t N = Lanes();
  for (int64_t i = 0; i < 32; i += N) {
    const auto q = hn::PromoteTo(DI(), hn::LoadU(DS8(), reinterpret_cast<const int8_t*>(b + 2 + i)));
    sink(i, hn::Mul(hn::ConvertTo(DF(), q), d));
  }
}

template <class Sink>
HWY_INLINE void DecQ4_0(const uint8_t* b, const Sink& sink) {
  const VF d = hn::Set(DF(), HalfAt(b));
  const auto off = hn::Set(DI(), 8);
  const int64_t N = Lanes();
  for (int half = 0; half < 2; ++half)
    for (int64_t i = 0; i < 16; i += N) {
      const VU c = Bytes(b + 2 + i);
      const VU q = half ? hn::ShiftRight<4>(c) : Low4(c);
      sink(16 * half + i, hn::Mul(hn::ConvertTo(DF(), hn::Sub(hn::BitCast(DI(), q), off)), d));
    }
}

template <class Sink>
HWY_INLINE void DecMxfp4(const uint8_t* b, const Sink& sink) {
  const float ds = e8m0_half(b[0]);
  const VF d = hn::Set(DF(), ds);
#if HWY_TARGET == HWY_SCALAR
  for (int half = 0; half < 2; ++half)
    for (int i = 0; i < 16; ++i)
      sink(16 * half + i, hn::Mul(hn::Set(DF(), float(kMxfp4Values[(b[1 + i] >> (4 * half)) & 15])), d));
#else
  // One byte shuffle looks up the 16-entry value table for N nibbles.
  const hn::Full128<int8_t> d16;
  const auto table = hn::LoadU(d16, kMxfp4Values);
  const int64_t N = Lanes();
  for (int half = 0; half < 2; ++half)
    for (int64_t i = 0; i < 16; i += N) {
      const auto c = hn::LoadU(D8(), b + 1 + i);
      const auto idx = half ? hn::ShiftRight<4>(c) : hn::And(c, hn::Set(D8(), uint8_t(15)));
      const auto v = hn::TableLookupBytes(table, hn::BitCast(DS8(), idx));
      sink(16 * half + i, hn::Mul(hn::ConvertTo(DF(), hn::PromoteTo(DI(), v)), d));
    }
#endif
}

template <class Sink>
HWY_INLINE void DecQ2K(const uint8_t* b, const Sink& sink) {
  const uint8_t* qs = b + 16;
  const float d = HalfAt(b + 80), dmin = HalfAt(b + 82);
  const int64_t N = Lanes();
  for (int h = 0; h < 2; ++h)
    for (int j = 0; j < 4; ++j)
      for (int64_t l = 0; l < 32; l += N) {
        const int e = 128 * h + 32 * j + int(l);
        const uint8_t sc = b[e / 16];
        const VF dl = hn::Set(DF(), d * float(sc & 15)), ml = hn::Set(DF(), dmin * float(sc >> 4));
        const VU q = Bit(Bytes(qs + 32 * h + l), 2 * j, 3u);
        sink(e, hn::Sub(hn::Mul(dl, IntToF(q)), ml));
      }
}

template <class Sink>
HWY_INLINE void DecQ3K(const uint8_t* b, const Sink& sink) {
  const uint8_t* qs = b + 32;
  const float d = HalfAt(b + 108);
  const auto four = hn::Set(DI(), 4);
  const int64_t N = Lanes();
  for (int h = 0; h < 2; ++h)
    for (int j = 0; j < 4; ++j)
      for (int64_t l = 0; l < 32; l += N) {
        const int e = 128 * h + 32 * j + int(l);
        const VF dl = hn::Set(DF(), d * float(q3k_scale(e / 16, b + 96)));
        const VU q = Bit(Bytes(qs + 32 * h + l), 2 * j, 3u);
        const VU hb = Bit(Bytes(b + l), 4 * h + j, 1u);
        const auto qi = hn::Sub(hn::BitCast(DI(), hn::Or(q, hn::ShiftLeft<2>(hb))), four);
        sink(e, hn::Mul(dl, hn::ConvertTo(DF(), qi)));
      }
}

template <bool kFive, class Sink>
HWY_INLINE void DecQ45K(const uint8_t* b, const Sink& sink) {
  const float d = HalfAt(b), dmin = HalfAt(b + 2);
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + (kFive ? 48 : 16);
  const int64_t N = Lanes();
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    scale_min_k4(j, b + 4, sc, m);
    const VF d1 = hn::Set(DF(), d * float(sc)), m1 = hn::Set(DF(), dmin * float(m));
    for (int64_t l = 0; l < 32; l += N) {
      const VU c = Bytes(qs + 32 * (j / 2) + l);
      VU q = j % 2 ? hn::ShiftRight<4>(c) : Low4(c);
      if (kFive) q = hn::Or(q, hn::ShiftLeft<4>(Bit(Bytes(qh + l), j, 1u)));
      sink(32 * j + l, hn::Sub(hn::Mul(d1, IntToF(q)), m1));
    }
  }
}

template <class Sink>
HWY_INLINE void DecQ6K(const uint8_t* b, const Sink& sink) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = HalfAt(b + 208);
  const auto off = hn::Set(DI(), 32);
  const int64_t N = Lanes();
  for (int h = 0; h < 2; ++h)
    for (int qq = 0; qq < 4; ++qq)
      for (int64_t l = 0; l < 32; l += N) {
        const int e = 128 * h + 32 * qq + int(l);
        const VF dl = hn::Set(DF(), d * float(sc[e / 16]));
        const VU c = Bytes(ql + 64 * h + 32 * (qq % 2) + l);
        const VU lo = qq < 2 ? Low4(c) : hn::ShiftRight<4>(c);
        const VU hi = Bit(Bytes(qh + 32 * h + l), 2 * qq, 3u);
        const auto q = hn::Sub(hn::BitCast(DI(), hn::Or(lo, hn::ShiftLeft<4>(hi))), off);
        sink(e, hn::Mul(dl, hn::ConvertTo(DF(), q)));
      }
}

// The byte-wise sign masks of kIq2Signs: 0xFF in byte j where element j is negative.
struct Iq2Masks {
  uint64_t m[128];
  Iq2Masks() {
    for (int i = 0; i < 128; ++i) {
      m[i] = 0;
      for (int j = 0; j < 8; ++j)
        if ((kIq2Signs[i] >> j) & 1) m[i] |= uint64_t(0xff) << (8 * j);
    }
  }
};

template <class Sink>
HWY_INLINE void DecIq2xxs(const uint8_t* b, const Sink& sink) {
  static const Iq2Masks masks;
  const float d = HalfAt(b);
  const int64_t N = Lanes();
  alignas(32) int8_t q[32];
  for (int ib = 0; ib < 8; ++ib) {
    const uint8_t* p = b + 2 + 8 * ib;
    uint32_t aux;
    std::memcpy(&aux, p + 4, 4);
    const VF db = hn::Set(DF(), d * (0.5f + float(aux >> 28)) * 0.25f);
    for (int l = 0; l < 4; ++l) {
      // Negating a byte is (g ^ 0xFF) + 1; grid bytes are ≥ 8, so no carry crosses bytes.
      const uint64_t m = masks.m[(aux >> (7 * l)) & 127];
      const uint64_t v = (kIq2xxsGrid[p[l]] ^ m) + (m & 0x0101010101010101ull);
      std::memcpy(q + 8 * l, &v, 8);
    }
    for (int64_t i = 0; i < 32; i += N) {
      const auto qi = hn::PromoteTo(DI(), hn::LoadU(DS8(), q + i));
      sink(32 * ib + i, hn::Mul(db, hn::ConvertTo(DF(), qi)));
    }
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
