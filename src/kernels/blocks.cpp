// Scalar reference decoders of the ggml block formats (the layout facts of ggml-common.h) and the
// double-precision reference products. The SIMD decoders (blocks_simd.cpp) perform the same fp32
// operations in the same order, so their values are bit-identical; this file and those are compiled
// with -ffp-contract=off so that no multiply-subtract is fused on one side only.
#include "kernels/blocks.h"

#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"

namespace dsv4::blocks {
namespace detail {

uint16_t f32_to_f16(float f) {
  const uint32_t u = f32_to_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u);  // NaN
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to ≥ 65520: inf
  if (a < 0x38800000u) {                                  // below 2^-14: subnormal half
    // The value in units of 2^-24, rounded to nearest even by the fp32 adder.
    const float v = bits_to_f32(a) + 0.5f;  // 0.5 = 2^-1: its ulp is 2^-24
    return uint16_t(sign | (f32_to_bits(v) - 0x3f000000u));
  }
  const uint32_t mant_odd = (a >> 13) & 1u;
  const uint32_t r = a + 0xfffu + mant_odd;  // round to nearest even at bit 13
  return uint16_t(sign | ((r - 0x38000000u) >> 13));
}

}  // namespace detail

using namespace detail;

namespace {

inline float half_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

void block_q8_0(const uint8_t* b, float* y) {
  const float d = half_at(b);
  for (int i = 0; i < 32; ++i) y[i] = float(int8_t(b[2 + i])) * d;
}

void block_q4_0(const uint8_t* b, float* y) {
  const float d = half_at(b);
  for (int i = 0; i < 16; ++i) {
    y[i] = float((b[2 + i] & 15) - 8) * d;
    y[i + 16] = float((b[2 + i] >> 4) - 8) * d;
  }
}

void block_mxfp4(const uint8_t* b, float* y) {
  const float d = e8m0_half(b[0]);
  for (int i = 0; i < 16; ++i) {
    y[i] = float(kMxfp4Values[b[1 + i] & 15]) * d;
    y[i + 16] = float(kMxfp4Values[b[1 + i] >> 4]) * d;
  }
}

// Q2_K and Q3_K: element e reads 2 bits of qs[32·(e/128) + e%32] at shift 2·((e%128)/32).
void block_q2_k(const uint8_t* b, float* y) {
  const uint8_t* sc = b;
  const uint8_t* qs = b + 16;
  const float d = half_at(b + 80), dmin = half_at(b + 82);
  for (int e = 0; e < 256; ++e) {
    const int q = (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
    const float dl = d * float(sc[e / 16] & 15), ml = dmin * float(sc[e / 16] >> 4);
    y[e] = dl * float(q) - ml;
  }
}

void block_q3_k(const uint8_t* b, float* y) {
  const uint8_t* hm = b;
  const uint8_t* qs = b + 32;
  const float d = half_at(b + 108);
  for (int e = 0; e < 256; ++e) {
    const int h = e / 128, j = (e % 128) / 32, l = e % 32;
    const int q = ((qs[32 * h + l] >> (2 * j)) & 3) - (((hm[l] >> (4 * h + j)) & 1) ? 0 : 4);
    const float dl = d * float(q3k_scale(e / 16, b + 96));
    y[e] = dl * float(q);
  }
}

// Q4_K and Q5_K: 64-element pairs; element e is the low (e%64 < 32) or high nibble of
// qs[32·(e/64) + e%32]; Q5_K's fifth bit is bit 2·(e/64) + (e%64 ≥ 32) of qh[e%32].
void block_q4_k(const uint8_t* b, float* y) {
  const float d = half_at(b), dmin = half_at(b + 2);
  const uint8_t* qs = b + 16;
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    scale_min_k4(j, b + 4, sc, m);
    const float d1 = d * float(sc), m1 = dmin * float(m);
    for (int l = 0; l < 32; ++l) {
      const uint8_t c = qs[32 * (j / 2) + l];
      y[32 * j + l] = d1 * float(j % 2 ? c >> 4 : c & 15) - m1;
    }
  }
}

void block_q5_k(const uint8_t* b, float* y) {
  const float d = half_at(b), dmin = half_at(b + 2);
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    scale_min_k4(j, b + 4, sc, m);
    const float d1 = d * float(sc), m1 = dmin * float(m);
    for (int l = 0; l < 32; ++l) {
      const uint8_t c = qs[32 * (j / 2) + l];
      const int q = (j % 2 ? c >> 4 : c & 15) | (((qh[l] >> j) & 1) << 4);
      y[32 * j + l] = d1 * float(q) - m1;
    }
  }
}

// Q6_K: 128-element halves of four 32-element quarters; quarter qq takes the low (qq < 2) or high
// nibble of ql[64h + 32(qq%2) + l] and bits 2qq..2qq+1 of qh[32h + l]; signed scale per 16.
void block_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = half_at(b + 208);
  for (int e = 0; e < 256; ++e) {
    const int h = e / 128, qq = (e % 128) / 32, l = e % 32;
    const uint8_t c = ql[64 * h + 32 * (qq % 2) + l];
    const int q = ((qq < 2 ? c & 15 : c >> 4) | (((qh[32 * h + l] >> (2 * qq)) & 3) << 4)) - 32;
    const float dl = d * float(sc[e / 16]);
    y[e] = dl * float(q);
  }
}

// IQ2_XXS: per 32 elements, 8 bytes: four grid indices, then a u32 of four 7-bit sign indices and a
// 4-bit scale in the top bits.
void block_iq2_xxs(const uint8_t* b, float* y) {
  const float d = half_at(b);
  for (int ib = 0; ib < 8; ++ib) {
    const uint8_t* p = b + 2 + 8 * ib;
    uint32_t aux;
    std::memcpy(&aux, p + 4, 4);
    const float db = d * (0.5f + float(aux >> 28)) * 0.25f;
    for (int l = 0; l < 4; ++l) {
      const uint64_t g = kIq2xxsGrid[p[l]];
      const uint8_t s = kIq2Signs[(aux >> (7 * l)) & 127];
      for (int j = 0; j < 8; ++j) {
        const int v = int((g >> (8 * j)) & 0xff);
        y[32 * ib + 8 * l + j] = db * float((s >> j) & 1 ? -v : v);
      }
    }
  }
}

}  // namespace

void dequant_row_ref(BlockFormat f, const uint8_t* row, int64_t k, float* dst) {
  const auto& info = block_info(f);
  DSV4_CHECK(k % info.elems == 0, "dequant_row_ref: {} row of {} weights", info.name, k);
  void (*dec)(const uint8_t*, float*) = nullptr;
  switch (f) {
    case BlockFormat::Q8_0: dec = block_q8_0; break;
    case BlockFormat::Q4_0: dec = block_q4_0; break;
    case BlockFormat::MXFP4: dec = block_mxfp4; break;
    case BlockFormat::Q2_K: dec = block_q2_k; break;
    case BlockFormat::Q3_K: dec = block_q3_k; break;
    case BlockFormat::Q4_K: dec = block_q4_k; break;
    case BlockFormat::Q5_K: dec = block_q5_k; break;
    case BlockFormat::Q6_K: dec = block_q6_k; break;
    case BlockFormat::IQ2_XXS: dec = block_iq2_xxs; break;
    case BlockFormat::None: fail("dequant_row_ref: no block format");
  }
  for (int64_t b = 0; b < k / info.elems; ++b) dec(row + b * info.bytes, dst + b * info.elems);
}

void dot_rows_ref(BlockFormat f, const uint8_t* w, int64_t k, int64_t o0, int64_t o1, const float* x,
                  int64_t xstride, int64_t S, float* y, int64_t ystride) {
  std::vector<float> row(static_cast<size_t>(k));
  const int64_t rb = block_row_bytes(f, k);
  for (int64_t o = o0; o < o1; ++o) {
    dequant_row_ref(f, w + o * rb, k, row.data());
    for (int64_t s = 0; s < S; ++s) {
      double acc = 0;
      for (int64_t i = 0; i < k; ++i) acc += double(row[size_t(i)]) * double(x[s * xstride + i]);
      y[o + s * ystride] = float(acc);
    }
  }
}

}  // namespace dsv4::blocks
