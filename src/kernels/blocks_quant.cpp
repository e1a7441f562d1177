// Encoders of the ggml block formats. Every scale (and min) is picked by a small search that
// minimises the weighted squared error Σ w·(x − x̂)² of its group, w = the importance weights (all ones
// when none are given); the super-block scales of the K formats are fitted the same way with each
// sub-block weighted by its total weight, and the quants are re-rounded against the stored scales.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/blocks.h"

namespace dsv4::blocks {
using namespace detail;

namespace {

constexpr float kEps = 1e-15f;

inline int nearest(float v) { return int(std::lrintf(v)); }
inline void put_half(uint8_t* p, float v) {
  const uint16_t h = f32_to_f16(v);
  std::memcpy(p, &h, 2);
}
inline float stored_half(uint8_t* p, float v) {
  put_half(p, v);
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

// x ≈ s·l with integer l in [lo, hi]: the extreme value is mapped near the wider side (lo) and the
// scale is refitted by least squares for each candidate rounding; returns s (0 for an all-zero group).
float fit_sym(int n, const float* x, const float* w, int lo, int hi, int* L) {
  float amax = 0, vmax = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), vmax = x[i];
  if (amax < kEps) {
    std::fill(L, L + n, 0);
    return 0.0f;
  }
  double best = -1;
  float best_s = 0;
  int tmp[256];
  for (int is = -9; is <= 9; ++is) {
    const float iscale = -(float(-lo) + 0.1f * float(is)) / vmax;
    double sxl = 0, sll = 0;
    for (int i = 0; i < n; ++i) {
      tmp[i] = std::clamp(nearest(iscale * x[i]), lo, hi);
      sxl += double(w[i]) * x[i] * tmp[i];
      sll += double(w[i]) * tmp[i] * tmp[i];
    }
    if (sll <= 0) continue;
    const double gain = sxl * sxl / sll;  // error = Σwx² − gain
    if (gain > best) {
      best = gain;
      best_s = float(sxl / sll);
      std::copy(tmp, tmp + n, L);
    }
  }
  if (best < 0) {  // every weight zero: plain rounding
    const float s = vmax / float(lo);
    for (int i = 0; i < n; ++i) L[i] = std::clamp(nearest(x[i] / s), lo, hi);
    return s;
  }
  return best_s;
}

// x ≈ s·l − m with l in [0, nmax], m ≥ 0; returns s and sets *m.
float fit_asym(int n, const float* x, const float* w, int nmax, int* L, float* mout) {
  float mn = x[0], mx = x[0];
  double sw = 0, swx = 0;
  for (int i = 0; i < n; ++i) {
    mn = std::min(mn, x[i]);
    mx = std::max(mx, x[i]);
    sw += w[i];
    swx += double(w[i]) * x[i];
  }
  mn = std::min(mn, 0.0f);
  if (mx <= mn) {
    std::fill(L, L + n, 0);
    *mout = -mn;
    return 0.0f;
  }
  double best = INFINITY;
  float best_s = (mx - mn) / float(nmax), best_b = mn;
  for (int i = 0; i < n; ++i) L[i] = std::clamp(nearest((x[i] - mn) / best_s), 0, nmax);
  int tmp[256];
  for (int is = 0; is <= 36; ++is) {
    const float iscale = (float(nmax) - 0.9f + 0.05f * float(is)) / (mx - mn);
    double sl = 0, sll = 0, sxl = 0;
    for (int i = 0; i < n; ++i) {
      tmp[i] = std::clamp(nearest(iscale * (x[i] - mn)), 0, nmax);
      sl += double(w[i]) * tmp[i];
      sll += double(w[i]) * tmp[i] * tmp[i];
      sxl += double(w[i]) * tmp[i] * x[i];
    }
    const double D = sw * sll - sl * sl;
    if (!(D > 0)) continue;
    double s = (sw * sxl - swx * sl) / D, b = (sll * swx - sl * sxl) / D;
    if (b > 0) b = 0, s = sxl / sll;  // the offset may only lower the values
    double err = 0;
    for (int i = 0; i < n; ++i) {
      const double e = s * tmp[i] + b - x[i];
      err += w[i] * e * e;
    }
    if (err < best) {
      best = err;
      best_s = float(s);
      best_b = float(b);
      std::copy(tmp, tmp + n, L);
    }
  }
  *mout = -best_b;
  return best_s;
}

// Non-negative sub-block scales (or mins) v ≈ d·l, l in [0, nmax], each weighted by w; returns d.
float fit_pos(int n, const float* v, const float* w, int nmax, int* L) {
  float mx = 0;
  for (int i = 0; i < n; ++i) mx = std::max(mx, v[i]);
  if (mx < kEps) {
    std::fill(L, L + n, 0);
    return 0.0f;
  }
  double best = -1;
  float best_d = mx / float(nmax);
  for (int i = 0; i < n; ++i) L[i] = std::clamp(nearest(v[i] / best_d), 0, nmax);
  int tmp[16];
  for (int is = -6; is <= 6; ++is) {
    const float iscale = (float(nmax) + 0.1f * float(is)) / mx;
    double sxl = 0, sll = 0;
    for (int i = 0; i < n; ++i) {
      tmp[i] = std::clamp(nearest(iscale * v[i]), 0, nmax);
      sxl += double(w[i]) * v[i] * tmp[i];
      sll += double(w[i]) * tmp[i] * tmp[i];
    }
    if (sll <= 0) continue;
    const double gain = sxl * sxl / sll;
    if (gain > best) {
      best = gain;
      best_d = float(sxl / sll);
      std::copy(tmp, tmp + n, L);
    }
  }
  return best_d;
}

void quant_q8_0(const float* x, const float* w, uint8_t* b) {
  int L[32];
  const float s = fit_sym(32, x, w, -127, 127, L);
  const float d = stored_half(b, s);
  for (int i = 0; i < 32; ++i) b[2 + i] = uint8_t(int8_t(d ? std::clamp(nearest(x[i] / d), -127, 127) : 0));
}

void quant_q4_0(const float* x, const float* w, uint8_t* b) {
  int L[32];
  const float s = fit_sym(32, x, w, -8, 7, L);
  const float d = stored_half(b, s);
  for (int i = 0; i < 32; ++i) L[i] = d ? std::clamp(nearest(x[i] / d), -8, 7) + 8 : 8;
  for (int i = 0; i < 16; ++i) b[2 + i] = uint8_t(L[i] | (L[i + 16] << 4));
}

// MXFP4: the power-of-two scale putting the block maximum at 4..8 (×e2m1), or one step larger.
void quant_mxfp4(const float* x, const float* w, uint8_t* b) {
  float amax = 0;
  for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
  int e0 = amax > 0 ? int(std::floor(std::log2(amax))) - 2 + 127 : 0;
  double best = INFINITY;
  uint8_t codes[32], tmp[32];
  uint8_t best_e = 0;
  for (int e = std::max(e0, 0); e <= std::min(e0 + 1, 254); ++e) {
    const float d = e8m0_half(uint8_t(e));
    double err = 0;
    for (int i = 0; i < 32; ++i) {
      int bi = 0;
      float be = std::fabs(float(kMxfp4Values[0]) * d - x[i]);
      for (int c = 1; c < 16; ++c) {
        const float ce = std::fabs(float(kMxfp4Values[c]) * d - x[i]);
        if (ce < be) be = ce, bi = c;
      }
      tmp[i] = uint8_t(bi);
      err += double(w[i]) * be * be;
    }
    if (err < best) {
      best = err;
      best_e = uint8_t(e);
      std::memcpy(codes, tmp, 32);
    }
  }
  b[0] = best_e;
  for (int i = 0; i < 16; ++i) b[1 + i] = uint8_t(codes[i] | (codes[i + 16] << 4));
}

// Q2_K / Q3_K 2-bit planes: element e at bits 2·((e%128)/32) of qs[32·(e/128) + e%32].
void pack_2bit(const int* L, uint8_t* qs) {
  std::memset(qs, 0, 64);
  for (int e = 0; e < 256; ++e) qs[32 * (e / 128) + e % 32] |= uint8_t((L[e] & 3) << (2 * ((e % 128) / 32)));
}

void quant_q2_k(const float* x, const float* w, uint8_t* b) {
  int L[256], Ls[16], Lm[16];
  float sc[16], mn[16], sw[16];
  for (int j = 0; j < 16; ++j) {
    sc[j] = fit_asym(16, x + 16 * j, w + 16 * j, 3, L + 16 * j, &mn[j]);
    sw[j] = 0;
    for (int l = 0; l < 16; ++l) sw[j] += w[16 * j + l];
  }
  const float dm = stored_half(b + 80, fit_pos(16, sc, sw, 15, Ls));
  const float mm = stored_half(b + 82, fit_pos(16, mn, sw, 15, Lm));
  for (int j = 0; j < 16; ++j) {
    b[j] = uint8_t(Ls[j] | (Lm[j] << 4));
    const float d = dm * float(Ls[j]), m = mm * float(Lm[j]);
    if (!d) continue;
    for (int l = 0; l < 16; ++l) L[16 * j + l] = std::clamp(nearest((x[16 * j + l] + m) / d), 0, 3);
  }
  pack_2bit(L, b + 16);
}

void quant_q3_k(const float* x, const float* w, uint8_t* b) {
  int L[256], Ls[16];
  float sc[16], sw[16];
  for (int j = 0; j < 16; ++j) {
    sc[j] = fit_sym(16, x + 16 * j, w + 16 * j, -4, 3, L + 16 * j);
    sw[j] = 0;
    for (int l = 0; l < 16; ++l) sw[j] += w[16 * j + l];
  }
  const float d = stored_half(b + 108, fit_sym(16, sc, sw, -32, 31, Ls));
  uint8_t* s = b + 96;
  std::memset(s, 0, 12);
  for (int j = 0; j < 16; ++j) {
    const int l = Ls[j] + 32;
    s[j % 8] |= uint8_t((l & 15) << (j < 8 ? 0 : 4));
    s[8 + j % 4] |= uint8_t((l >> 4) << (2 * (j / 4)));
  }
  for (int j = 0; j < 16; ++j) {
    const float dl = d * float(q3k_scale(j, s));
    for (int l = 0; l < 16; ++l) L[16 * j + l] = dl ? std::clamp(nearest(x[16 * j + l] / dl), -4, 3) : 0;
  }
  std::memset(b, 0, 32);  // hmask: bit set = no −4 offset
  for (int e = 0; e < 256; ++e) {
    const int q = L[e] + 4;
    if (q > 3) b[e % 32] |= uint8_t(1 << (4 * (e / 128) + (e % 128) / 32));
    L[e] = q & 3;
  }
  pack_2bit(L, b + 32);
}

// Q4_K / Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins packed as get_scale_min_k4 reads them.
void quant_k4k5(const float* x, const float* w, uint8_t* b, int nmax) {
  int L[256], Ls[8], Lm[8];
  float sc[8], mn[8], sw[8];
  for (int j = 0; j < 8; ++j) {
    sc[j] = fit_asym(32, x + 32 * j, w + 32 * j, nmax, L + 32 * j, &mn[j]);
    sw[j] = 0;
    for (int l = 0; l < 32; ++l) sw[j] += w[32 * j + l];
  }
  const float dm = stored_half(b, fit_pos(8, sc, sw, 63, Ls));
  const float mm = stored_half(b + 2, fit_pos(8, mn, sw, 63, Lm));
  uint8_t* s = b + 4;
  std::memset(s, 0, 12);
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      s[j] = uint8_t(Ls[j]);
      s[j + 4] = uint8_t(Lm[j]);
    } else {
      s[j + 4] = uint8_t((Ls[j] & 15) | ((Lm[j] & 15) << 4));
      s[j - 4] |= uint8_t((Ls[j] >> 4) << 6);
      s[j] |= uint8_t((Lm[j] >> 4) << 6);
    }
  }
  for (int j = 0; j < 8; ++j) {
    uint8_t a, m;
    scale_min_k4(j, s, a, m);
    const float d = dm * float(a), mv = mm * float(m);
    if (!d) continue;
    for (int l = 0; l < 32; ++l) L[32 * j + l] = std::clamp(nearest((x[32 * j + l] + mv) / d), 0, nmax);
  }
  const bool five = nmax == 31;
  uint8_t* qh = b + 16;
  uint8_t* qs = b + (five ? 48 : 16);
  if (five) std::memset(qh, 0, 32);
  for (int j = 0; j < 8; ++j)
    for (int l = 0; l < 32; ++l) {
      const int q = L[32 * j + l];
      uint8_t& c = qs[32 * (j / 2) + l];
      if (j % 2 == 0) c = uint8_t(q & 15);
      else c = uint8_t(c | ((q & 15) << 4));
      if (five && q > 15) qh[l] |= uint8_t(1 << j);
    }
}

void quant_q6_k(const float* x, const float* w, uint8_t* b) {
  int L[256], Ls[16];
  float sc[16], sw[16];
  for (int j = 0; j < 16; ++j) {
    sc[j] = fit_sym(16, x + 16 * j, w + 16 * j, -32, 31, L + 16 * j);
    sw[j] = 0;
    for (int l = 0; l < 16; ++l) sw[j] += w[16 * j + l];
  }
  const float d = stored_half(b + 208, fit_sym(16, sc, sw, -128, 127, Ls));
  for (int j = 0; j < 16; ++j) {
    b[192 + j] = uint8_t(int8_t(Ls[j]));
    const float dl = d * float(Ls[j]);
    for (int l = 0; l < 16; ++l) L[16 * j + l] = (dl ? std::clamp(nearest(x[16 * j + l] / dl), -32, 31) : 0) + 32;
  }
  std::memset(b, 0, 192);
  for (int e = 0; e < 256; ++e) {
    const int h = e / 128, qq = (e % 128) / 32, l = e % 32;
    b[64 * h + 32 * (qq % 2) + l] |= uint8_t((L[e] & 15) << (qq < 2 ? 0 : 4));
    b[128 + 32 * h + l] |= uint8_t((L[e] >> 4) << (2 * qq));
  }
}

}  // namespace

bool can_quantize(BlockFormat f) { return f != BlockFormat::None && f != BlockFormat::IQ2_XXS; }

void quantize_row(BlockFormat f, const float* src, int64_t k, const float* imp, uint8_t* dst) {
  if (!can_quantize(f)) fail("quantize_row: no quantizer for {}", block_name(f));
  const auto& info = block_info(f);
  DSV4_CHECK(k % info.elems == 0, "quantize_row: {} row of {} weights", info.name, k);
  float ones[256];
  std::fill(ones, ones + 256, 1.0f);
  for (int64_t i = 0; i < k / info.elems; ++i) {
    const float* x = src + i * info.elems;
    const float* w = imp ? imp + i * info.elems : ones;
    uint8_t* b = dst + i * info.bytes;
    switch (f) {
      case BlockFormat::Q8_0: quant_q8_0(x, w, b); break;
      case BlockFormat::Q4_0: quant_q4_0(x, w, b); break;
      case BlockFormat::MXFP4: quant_mxfp4(x, w, b); break;
      case BlockFormat::Q2_K: quant_q2_k(x, w, b); break;
      case BlockFormat::Q3_K: quant_q3_k(x, w, b); break;
      case BlockFormat::Q4_K: quant_k4k5(x, w, b, 15); break;
      case BlockFormat::Q5_K: quant_k4k5(x, w, b, 31); break;
      case BlockFormat::Q6_K: quant_q6_k(x, w, b); break;
      default: fail("quantize_row: no quantizer for {}", block_name(f));
    }
  }
}

}  // namespace dsv4::blocks
