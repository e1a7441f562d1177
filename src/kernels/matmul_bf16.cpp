#include "kernels/matmul_bf16.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "kernels/linear.h"

#if defined(__x86_64__)
// GCC 12's intrinsic headers seed some results with _mm*_undefined_*(), which -Wuninitialized reports.
#pragma GCC diagnostic ignored "-Wuninitialized"
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <cpuid.h>
#include <immintrin.h>
#define DSV4_BF16_ATTR __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,f16c,fma")))
#endif

namespace dsv4::bf16dot {
namespace {

// FP8 decodes through f16 (e4m3 bits placed as s.0eeee.mmm0000000 are the value times 2^-8,
// subnormals included), so the block scale is applied times 2^8: in one multiply, or in two where
// s·2^8 would overflow.
struct Fp8Steps {
  float m1, m2;
  bool one;
};
Fp8Steps fp8_steps(float s) {
  if (s <= 6.64613997892458e35f) return {s * 256.0f, 1.0f, true};  // s ≤ 2^119
  return {256.0f, s, false};
}
uint16_t fp8_f16_bits(uint8_t c) { return uint16_t(((c & 0x7F) << 7) | ((c & 0x80) << 8)); }

// FP4 codes times one E8M0 scale, as BF16: 16 entries per scale byte (an L1-resident 8 KiB table).
const std::array<uint16_t, 256 * 16>& fp4_table() {
  static const auto t = [] {
    std::array<uint16_t, 256 * 16> a{};
    for (int e = 0; e < 256; ++e)
      for (int c = 0; c < 16; ++c) a[size_t(e * 16 + c)] = f32_to_bf16(e2m1_to_f32(uint8_t(c)) * e8m0_to_f32(uint8_t(e)));
    return a;
  }();
  return t;
}

float fold16(const float* l) {
  float h[8], q[4], d[2];
  for (int i = 0; i < 8; ++i) h[i] = l[i] + l[i + 8];
  for (int i = 0; i < 4; ++i) q[i] = h[i] + h[i + 4];
  for (int i = 0; i < 2; ++i) d[i] = q[i] + q[i + 2];
  return d[0] + d[1];
}

// Row o of W in kernel order as floats (each exact in BF16).
void kernel_row(const Linear& W, int64_t o, float* dst) {
  const int64_t K = W.in;
  if (W.fmt == Linear::Format::FP8) {
    for (int64_t kb = 0; kb < K; kb += 128) {
      const Fp8Steps st = fp8_steps(W.scale_at(o / 128, kb / 128));
      for (int64_t k = kb; k < std::min(K, kb + 128); ++k)
        dst[k] = f16_to_f32(fp8_f16_bits(W.w[o * K + k])) * st.m1 * st.m2;
    }
    return;
  }
  const uint8_t* p = W.w + o * (K / 2);
  for (int64_t j = 0; j < K; j += 64)
    for (int i = 0; i < 32; ++i) {
      const uint8_t b = p[j / 2 + i];
      const float s = e8m0_to_f32(W.scale[o * W.scale_cols + (j + 2 * i) / 32]);
      dst[j + i] = e2m1_to_f32(b & 15) * s;
      dst[j + 32 + i] = e2m1_to_f32(b >> 4) * s;
    }
}

#if defined(__x86_64__)

DSV4_BF16_ATTR inline float fold16(__m512 a) {
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
  const __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  const __m128 d = _mm_add_ps(q, _mm_movehl_ps(q, q));
  return _mm_cvtss_f32(_mm_add_ss(d, _mm_shuffle_ps(d, d, 1)));
}

// 32 FP8 weights → 32 BF16 (×m1·m2, exact).
DSV4_BF16_ATTR inline __m512bh dec_fp8(const uint8_t* p, __m512 m1, __m512 m2, bool one) {
  const __m512i b = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  // b << 8 is s.eeee.mmm.00000000; an arithmetic shift by one copies s into bit 14, which is cleared.
  const __m512i h = _mm512_and_si512(_mm512_srai_epi16(_mm512_slli_epi16(b, 8), 1), _mm512_set1_epi16(short(0xBFFF)));
  __m512 lo = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(h)), m1);
  __m512 hi = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1)), m1);
  if (!one) {
    lo = _mm512_mul_ps(lo, m2);
    hi = _mm512_mul_ps(hi, m2);
  }
  return _mm512_cvtne2ps_pbh(hi, lo);
}

// 64 FP4 weights (32 bytes, two scale blocks) → even and odd elements as BF16.
DSV4_BF16_ATTR inline void dec_fp4(const uint8_t* p, const uint16_t* t0, const uint16_t* t1, __m512i& lo,
                                   __m512i& hi) {
  const __m512i tbl = _mm512_inserti64x4(
      _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(t0))),
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t1)), 1);
  const __m512i b = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  // Lanes 16..31 hold the second scale block: their index reads the table's upper half.
  const __m512i half = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(16), 1);
  const __m512i i_lo = _mm512_ternarylogic_epi32(b, _mm512_set1_epi16(15), half, 0xEA);  // (b & 15) | half
  const __m512i i_hi = _mm512_or_si512(_mm512_srli_epi16(b, 4), half);
  lo = _mm512_permutexvar_epi16(i_lo, tbl);
  hi = _mm512_permutexvar_epi16(i_hi, tbl);
}

DSV4_BF16_ATTR inline __m512 dp(__m512 acc, __m512i w, const uint16_t* x) {
  return _mm512_dpbf16_ps(acc, (__m512bh)w, (__m512bh)_mm512_loadu_si512(x));
}

// acc[r][t] over kernel-order k in [k0, k1) for rows o..o+R-1 and tokens 0..T-1; between k ranges
// the accumulators wait in `park` (first: start from zero; last: fold into y).
template <int R, int T>
DSV4_BF16_ATTR void tile(const Linear& W, int64_t o, int64_t k0, int64_t k1, const uint16_t* x, int64_t xs,
                         float* park, bool first, bool last, float* y, int64_t ys, int64_t prefetch_rows) {
  const int64_t K = W.in;
  __m512 acc[R][T];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[r][t] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(park + (r * T + t) * 16);
  if (W.fmt == Linear::Format::FP8) {
    for (int64_t kb = k0; kb < k1; kb = std::min(k1, (kb / 128 + 1) * 128)) {
      const int64_t ke = std::min(k1, (kb / 128 + 1) * 128);
      __m512 m1[R], m2[R];
      bool one = true;
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const Fp8Steps st = fp8_steps(W.scale_at((o + r) / 128, kb / 128));
        one = one && st.one;
        m1[r] = _mm512_set1_ps(st.m1);
        m2[r] = _mm512_set1_ps(st.m2);
      }
      for (int64_t k = kb; k < ke; k += 32) {
        __m512i w[R];
        if (k % 64 == 0)
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r) __builtin_prefetch(W.w + (o + r + prefetch_rows) * K + k);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) w[r] = (__m512i)dec_fp8(W.w + (o + r) * K + k, m1[r], m2[r], one);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const __m512i xv = _mm512_loadu_si512(x + t * xs + k);
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], (__m512bh)w[r], (__m512bh)xv);
        }
      }
    }
  } else {
    const auto& lut = fp4_table();
    for (int64_t k = k0; k < k1; k += 64) {
      __m512i lo[R], hi[R];
      if (k % 128 == 0)
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) __builtin_prefetch(W.w + (o + r + prefetch_rows) * (K / 2) + k / 2);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const uint8_t* sc = W.scale + (o + r) * W.scale_cols + k / 32;
        dec_fp4(W.w + (o + r) * (K / 2) + k / 2, lut.data() + 16 * sc[0], lut.data() + 16 * sc[1], lo[r], hi[r]);
      }
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) acc[r][t] = dp(acc[r][t], lo[r], x + t * xs + k);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) acc[r][t] = dp(acc[r][t], hi[r], x + t * xs + k + 32);
      }
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      if (last)
        y[(o + r) + t * ys] = fold16(acc[r][t]);
      else
        _mm512_storeu_ps(park + (r * T + t) * 16, acc[r][t]);
    }
}

// Decode (S ≤ 4): each weight is read once, rows in lockstep groups over all of K.
template <int T>
void decode_rows(const Linear& W, int64_t o0, int64_t o1, const uint16_t* x, int64_t xs, float* y, int64_t ys) {
  // ≥ 8 accumulator chains hide the dot-product latency; 8 rows in flight keep the DRAM busy.
  constexpr int R = T == 1 ? 8 : T == 3 ? 3 : 4;
  int64_t o = o0;
  for (; o + R <= o1; o += R) tile<R, T>(W, o, 0, W.in, x, xs, nullptr, true, true, y, ys, R);
  for (; o < o1; ++o) tile<1, T>(W, o, 0, W.in, x, xs, nullptr, true, true, y, ys, 1);
}

// Prefill (S > 4): tiles of 3 rows × up to 8 tokens. Units of rows stay in L2 while every token
// group passes over them in K chunks that keep the group's activations in L1.
constexpr int kR = 3, kT = 8;
constexpr int64_t kUnit = 16 * kR, kChunk = 512;

template <int T>
void gemm_group(const Linear& W, int64_t u0, int64_t u1, int64_t k0, int64_t k1, const uint16_t* x, int64_t xs,
                float* park, float* y, int64_t ys) {
  const bool first = k0 == 0, last = k1 == W.in;
  int64_t o = u0;
  for (; o + kR <= u1; o += kR) tile<kR, T>(W, o, k0, k1, x, xs, park + (o - u0) * T * 16, first, last, y, ys, 8);
  for (; o < u1; ++o) tile<1, T>(W, o, k0, k1, x, xs, park + (o - u0) * T * 16, first, last, y, ys, 8);
}

void gemm_rows(const Linear& W, int64_t o0, int64_t o1, const uint16_t* x, int64_t xs, int64_t S, float* y,
               int64_t ys) {
  thread_local std::vector<float> park;
  park.resize(size_t(kUnit * kT * 16));
  const int64_t groups = (S + kT - 1) / kT;
  for (int64_t u0 = o0; u0 < o1; u0 += kUnit) {
    const int64_t u1 = std::min(o1, u0 + kUnit);
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t t0 = S * g / groups, tn = S * (g + 1) / groups - t0;  // even split: no short tail group
      for (int64_t k0 = 0; k0 < W.in; k0 += kChunk) {
        const int64_t k1 = std::min(W.in, k0 + kChunk);
        const uint16_t* xg = x + t0 * xs;
        float* yg = y + t0 * ys;
        switch (tn) {
#define DSV4_BF16_CASE(n) \
  case n: gemm_group<n>(W, u0, u1, k0, k1, xg, xs, park.data(), yg, ys); break;
          DSV4_BF16_CASE(1) DSV4_BF16_CASE(2) DSV4_BF16_CASE(3) DSV4_BF16_CASE(4)
          DSV4_BF16_CASE(5) DSV4_BF16_CASE(6) DSV4_BF16_CASE(7) DSV4_BF16_CASE(8)
#undef DSV4_BF16_CASE
        }
      }
    }
  }
}

DSV4_BF16_ATTR double burn_x86(int64_t iters, float* sink) {
  // 12 independent chains cover latency × throughput; the operands are constants in registers.
  const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3F80), b = (__m512bh)_mm512_set1_epi16(0x3400);
  __m512 c[12];
  for (int i = 0; i < 12; ++i) c[i] = _mm512_set1_ps(sink[0] + float(i));
  for (int64_t it = 0; it < iters; ++it)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) c[i] = _mm512_dpbf16_ps(c[i], a, b);
  __m512 s = c[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, c[i]);
  *sink = fold16(s);
  return double(iters) * 12.0 * 16.0 * 4.0;
}

#endif  // __x86_64__

}  // namespace

bool supported() {
#if defined(__x86_64__)
  static const bool ok = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");  // F16C comes with AVX-512
  }();
  return ok;
#else
  return false;
#endif
}

// Where vdpbf16ps retires as many instructions per cycle as an FMA (AMD Zen 4 and later), it does
// twice the multiply-adds; on Intel cores up to Sapphire Rapids it issues on one port at a quarter
// of the FMA rate (measured: 1.1 vs 4.5 G instructions/s per core), so the fp32 path is faster there.
// The choice goes by CPU family, not by a timing, so that it cannot flip between runs and change
// greedy output.
static bool fast_on_this_cpu() {
#if defined(__x86_64__)
  unsigned a, b, c, d;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return false;
  const bool amd = b == 0x68747541 && d == 0x69746e65 && c == 0x444d4163;  // "AuthenticAMD"
  if (!amd || !__get_cpuid(1, &a, &b, &c, &d)) return false;
  unsigned family = (a >> 8) & 0xF;
  if (family == 0xF) family += (a >> 20) & 0xFF;
  return family >= 0x19;
#else
  return false;
#endif
}

bool available() {
  static const bool ok = [] {
    const char* e = std::getenv("DSV4_DOT");
    const std::string_view v = e ? e : "auto";
    if (v == "fp32") return false;
    if (v == "bf16") return supported();
    return supported() && fast_on_this_cpu();
  }();
  return ok;
}

bool covers(const Linear& W) {
  if (W.fmt == Linear::Format::FP8) return W.in % 32 == 0;
  return W.fmt == Linear::Format::FP4 && W.in % 64 == 0 && !W.scale_f32;
}

void order_activation(const Linear& W, const float* x, uint16_t* dst) {
  const int64_t K = W.in;
  if (W.fmt != Linear::Format::FP4) {
    for (int64_t k = 0; k < K; ++k) dst[k] = f32_to_bf16(x[k]);
    return;
  }
  for (int64_t j = 0; j < K; j += 64)
    for (int i = 0; i < 32; ++i) {
      dst[j + i] = f32_to_bf16(x[j + 2 * i]);
      dst[j + 32 + i] = f32_to_bf16(x[j + 2 * i + 1]);
    }
}

void rows(const Linear& W, int64_t o0, int64_t o1, const uint16_t* x, int64_t xs, int64_t S, float* y, int64_t ys) {
#if defined(__x86_64__)
  switch (S) {
    case 1: return decode_rows<1>(W, o0, o1, x, xs, y, ys);
    case 2: return decode_rows<2>(W, o0, o1, x, xs, y, ys);
    case 3: return decode_rows<3>(W, o0, o1, x, xs, y, ys);
    case 4: return decode_rows<4>(W, o0, o1, x, xs, y, ys);
    default: return gemm_rows(W, o0, o1, x, xs, S, y, ys);
  }
#else
  reference_rows(W, o0, o1, x, xs, S, y, ys);
#endif
}

void reference_rows(const Linear& W, int64_t o0, int64_t o1, const uint16_t* x, int64_t xs, int64_t S, float* y,
                    int64_t ys) {
  std::vector<float> w(size_t(W.in));
  for (int64_t o = o0; o < o1; ++o) {
    kernel_row(W, o, w.data());
    for (int64_t s = 0; s < S; ++s) {
      float l[16] = {};
      for (int64_t k = 0; k < W.in; k += 32)
        for (int i = 0; i < 16; ++i) {
          const int64_t a = k + 2 * i;
          l[i] += bf16_to_f32(x[s * xs + a + 1]) * w[size_t(a + 1)];
          l[i] += bf16_to_f32(x[s * xs + a]) * w[size_t(a)];
        }
      y[o + s * ys] = fold16(l);
    }
  }
}

double burn(int64_t iters, float* sink) {
#if defined(__x86_64__)
  if (supported()) return burn_x86(iters, sink);
#endif
  (void)iters;
  (void)sink;
  return 0;
}

}  // namespace dsv4::bf16dot
