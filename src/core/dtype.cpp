#include "core/dtype.h"

#include <array>

namespace dsv4 {

namespace {
struct Entry {
  DType t;
  std::string_view name;
  size_t size;
};
constexpr Entry kEntries[] = {
    {DType::BF16, "BF16", 2},    {DType::F16, "F16", 2},          {DType::F32, "F32", 4},
    {DType::F64, "F64", 8},      {DType::I64, "I64", 8},          {DType::I32, "I32", 4},
    {DType::I16, "I16", 2},      {DType::I8, "I8", 1},            {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1},    {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E8M0, "F8_E8M0", 1},
};

constexpr float pow2(int e) {
  float v = 1.0f;
  for (; e > 0; --e) v *= 2.0f;
  for (; e < 0; ++e) v *= 0.5f;
  return v;
}
constexpr std::array<float, 256> make_e4m3() {
  std::array<float, 256> t{};
  for (int c = 0; c < 256; ++c) {
    int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
    float v = e == 0 ? float(m) / 8.0f * pow2(-6) : (1.0f + float(m) / 8.0f) * pow2(e - 7);
    if (e == 15 && m == 7) v = __builtin_nanf("");
    t[c] = s ? -v : v;
  }
  return t;
}
constexpr std::array<float, 256> kE4M3 = make_e4m3();
}  // namespace

const float kE4M3Table[256] = {
#define X(i) kE4M3[i]
#define X8(i) X(i), X(i + 1), X(i + 2), X(i + 3), X(i + 4), X(i + 5), X(i + 6), X(i + 7)
#define X64(i) X8(i), X8(i + 8), X8(i + 16), X8(i + 24), X8(i + 32), X8(i + 40), X8(i + 48), X8(i + 56)
    X64(0), X64(64), X64(128), X64(192)
#undef X64
#undef X8
#undef X
};
const float kE2M1Table[16] = {0.f, .5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f,
                              -0.f, -.5f, -1.f, -1.5f, -2.f, -3.f, -4.f, -6.f};

uint8_t f32_to_e4m3(float x) {
  if (std::isnan(x)) return 0x7f;
  uint8_t sign = std::signbit(x) ? 0x80 : 0;
  float a = std::fabs(x);
  if (a >= 448.0f) return sign | 0x7e;
  int k;
  std::frexp(a, &k);  // a = f * 2^k, f in [0.5, 1)
  int e = k - 1;
  if (a == 0.0f || e < -6) {
    // Subnormal grid 2^-9; rint rounds half to even. m == 8 is exactly the smallest normal (code 8).
    int m = int(std::rint(a * 512.0f));
    return sign | uint8_t(m);
  }
  int q = int(std::rint(std::ldexp(a, 3 - e)));  // in [8, 16]
  if (q == 16) {
    q = 8;
    ++e;
  }
  if (e > 8 || (e == 8 && q > 14)) return sign | 0x7e;
  return sign | uint8_t(((e + 7) << 3) | (q - 8));
}

uint8_t f32_to_e2m1(float x) {
  uint8_t sign = std::signbit(x) ? 8 : 0;
  float a = std::fabs(x);
  uint8_t c;
  // Midpoints between grid values; "<=" where the lower code is even, "<" where the upper one is.
  if (!(a > 0.25f)) c = 0;
  else if (a < 0.75f) c = 1;
  else if (a <= 1.25f) c = 2;
  else if (a < 1.75f) c = 3;
  else if (a <= 2.5f) c = 4;
  else if (a < 3.5f) c = 5;
  else if (a <= 5.0f) c = 6;
  else c = 7;
  return sign | c;
}

size_t dtype_size(DType t) {
  for (auto& e : kEntries)
    if (e.t == t) return e.size;
  return 0;
}
std::string_view dtype_name(DType t) {
  for (auto& e : kEntries)
    if (e.t == t) return e.name;
  return "?";
}
bool parse_dtype(std::string_view s, DType& out) {
  for (auto& e : kEntries)
    if (e.name == s) {
      out = e.t;
      return true;
    }
  return false;
}

float f16_to_f32(uint16_t h) {
  uint32_t s = uint32_t(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023;
  if (e == 0) {
    float v = std::ldexp(float(m), -24);
    return s ? -v : v;
  }
  if (e == 31) return bits_to_f32(s | 0x7f800000u | (m << 13));
  return bits_to_f32(s | ((e + 112) << 23) | (m << 13));
}

}  // namespace dsv4
