// Rung 1–2: Linear layers in every weight format (architecture.md §3.3, §2.5, §4.15; fixtures README §6 rule 1)
// against a double-precision reference that dequantises the raw checkpoint bytes straight from the
// format definitions and, with act_quant, FP8-round-trips each 1×128 block of x first.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/ref_numerics.h"
#include "core/thread_pool.h"
#include "io/safetensors.h"
#include "kernels/linear.h"
#include "model/weights.h"

using namespace dsv4;
namespace ref = dsv4_ref;

namespace {

// A tensor that owns its bytes, viewed as a TensorInfo.
struct Tensor {
  TensorInfo info;
  std::vector<uint8_t> bytes;
  Tensor(std::string name, DType dt, std::vector<int64_t> shape, std::vector<uint8_t> b) : bytes(std::move(b)) {
    info.name = std::move(name);
    info.dtype = dt;
    info.shape = std::move(shape);
    info.data = bytes.data();
    info.nbytes = bytes.size();
  }
};

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

std::vector<uint8_t> random_e4m3_codes(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<uint8_t> v(n);
  for (auto& c : v) {
    do c = uint8_t(g()); while ((c & 0x7f) == 0x7f);  // no NaN codes
  }
  return v;
}
std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<uint8_t> v(n);
  for (auto& c : v) c = uint8_t(g());
  return v;
}
std::vector<uint8_t> random_e8m0(size_t n, uint32_t seed, int lo = 119, int hi = 133) {
  std::mt19937 g(seed);
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<uint8_t> v(n);
  for (auto& c : v) c = uint8_t(d(g));
  return v;
}
// Same scales as F32 values (what a Base checkpoint may store).
std::vector<uint8_t> e8m0_as_f32(const std::vector<uint8_t>& s) {
  std::vector<uint8_t> out(s.size() * 4);
  for (size_t i = 0; i < s.size(); ++i) {
    const float f = float(ref::e8m0_decode(s[i]));
    std::memcpy(out.data() + 4 * i, &f, 4);
  }
  return out;
}
std::vector<uint8_t> floats_to_bytes(const std::vector<float>& f) {
  std::vector<uint8_t> b(f.size() * 4);
  std::memcpy(b.data(), f.data(), b.size());
  return b;
}
std::vector<uint8_t> floats_to_bf16_bytes(const std::vector<float>& f) {
  std::vector<uint8_t> b(f.size() * 2);
  for (size_t i = 0; i < f.size(); ++i) {
    const uint16_t h = ref::bf16_encode(f[i]);
    std::memcpy(b.data() + 2 * i, &h, 2);
  }
  return b;
}

// ---- reference dequantisation, straight from architecture.md §3.1/§3.3 ----
std::vector<double> ref_dequant_fp8(const std::vector<uint8_t>& w, const std::vector<uint8_t>& s, int64_t out,
                                    int64_t in) {
  std::vector<double> W(static_cast<size_t>(out * in));
  const int64_t sc = cdiv(in, 128);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t k = 0; k < in; ++k)
      W[size_t(o * in + k)] = ref::e4m3_decode(w[size_t(o * in + k)]) * ref::e8m0_decode(s[size_t((o / 128) * sc + k / 128)]);
  return W;
}
// FP4: byte [o, k/2] holds element k in its low nibble when k is even, high nibble when odd (OCP MXFP4);
// scale [o, k/32].
std::vector<double> ref_dequant_fp4(const std::vector<uint8_t>& w, const std::vector<uint8_t>& s, int64_t out,
                                    int64_t in) {
  std::vector<double> W(static_cast<size_t>(out * in));
  for (int64_t o = 0; o < out; ++o)
    for (int64_t k = 0; k < in; ++k) {
      const uint8_t byte = w[size_t(o * (in / 2) + k / 2)];
      const uint8_t nib = (k % 2 == 0) ? (byte & 15) : (byte >> 4);
      W[size_t(o * in + k)] = ref::e2m1_decode(nib) * ref::e8m0_decode(s[size_t(o * (in / 32) + k / 32)]);
    }
  return W;
}

struct RefOut {
  std::vector<double> y, mag;  // mag = Σ|w·x| for the tolerance
};
RefOut ref_matmul(const std::vector<double>& W, int64_t out, int64_t in, const std::vector<float>& x, int64_t S,
                  bool quantise_x) {
  RefOut r;
  r.y.assign(size_t(S * out), 0.0);
  r.mag.assign(size_t(S * out), 0.0);
  for (int64_t s = 0; s < S; ++s) {
    std::vector<float> xs(x.begin() + s * in, x.begin() + (s + 1) * in);
    if (quantise_x) xs = ref::fp8_roundtrip(xs, 128);
    for (int64_t o = 0; o < out; ++o) {
      double acc = 0, mag = 0;
      for (int64_t k = 0; k < in; ++k) {
        const double p = W[size_t(o * in + k)] * double(xs[size_t(k)]);
        acc += p;
        mag += std::fabs(p);
      }
      r.y[size_t(s * out + o)] = acc;
      r.mag[size_t(s * out + o)] = mag;
    }
  }
  return r;
}

void expect_close(const std::vector<float>& y, const RefOut& r, const std::string& what, double rel = 1e-5) {
  ASSERT_EQ(y.size(), r.y.size());
  for (size_t i = 0; i < y.size(); ++i)
    ASSERT_NEAR(double(y[i]), r.y[i], rel * r.mag[i] + 1e-30) << what << " at flat index " << i;
}

std::vector<float> run(const Linear& L, const std::vector<float>& x, int64_t S, bool aq) {
  std::vector<float> y(size_t(S * L.out), NAN);
  matmul(L, x.data(), S, y.data(), aq, ThreadPool::global());
  return y;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no dsv4::Error thrown>";
}

#define EXPECT_CONTAINS(hay, needle) \
  EXPECT_NE(std::string(hay).find(needle), std::string::npos) << "message: " << (hay) << "\nexpected: " << (needle)

}  // namespace

// ------------------------------------------------------------------------------------------- FP8

TEST(LinearFp8, E8M0ScalesOddSizesVsReference) {
  for (auto [out, in] : {std::pair<int64_t, int64_t>{200, 300}, {201, 129}, {1, 128}}) {
  SCOPED_TRACE("out=" + std::to_string(out) + " in=" + std::to_string(in));
  auto wb = random_e4m3_codes(size_t(out * in), 11);
  auto sb = random_e8m0(size_t(cdiv(out, 128) * cdiv(in, 128)), 12);
  Tensor w("blk.w.weight", DType::F8_E4M3, {out, in}, wb);
  Tensor s("blk.w.scale", DType::F8_E8M0, {cdiv(out, 128), cdiv(in, 128)}, sb);
  Linear L = make_linear(w.info, &s.info, out, in);
  EXPECT_EQ(L.fmt, Linear::Format::FP8);
  EXPECT_TRUE(L.quantized());
  const auto W = ref_dequant_fp8(wb, sb, out, in);
  // dequant_row is exact (e4m3 × 2^k).
  std::vector<float> row(static_cast<size_t>(in));
  for (int64_t o : {int64_t(0), std::min<int64_t>(127, out - 1), std::min<int64_t>(128, out - 1), out - 1}) {
    L.dequant_row(o, row.data());
    for (int64_t k = 0; k < in; ++k) ASSERT_EQ(double(row[size_t(k)]), W[size_t(o * in + k)]) << o << "," << k;
  }
  for (int64_t S : {int64_t(1), int64_t(2), int64_t(3), int64_t(5), int64_t(9)}) {
    // Per-row magnitudes vary and each row has an outlier, so act_quant visibly changes the result.
    auto x = ref::randn(size_t(S * in), 100 + uint32_t(S));
    for (int64_t i = 0; i < S * in; i += 131) x[size_t(i)] *= 30.0f;
    for (bool aq : {false, true}) {
      auto y = run(L, x, S, aq);
      expect_close(y, ref_matmul(W, out, in, x, S, aq), "fp8 S=" + std::to_string(S) + " aq=" + std::to_string(aq));
    }
    // act_quant must really change the input (otherwise the test above proves nothing about it).
    auto y0 = run(L, x, S, false), y1 = run(L, x, S, true);
    EXPECT_NE(y0, y1);
  }
  }
}

TEST(LinearFp8, F32PowerOfTwoScalesEqualE8M0) {
  const int64_t out = 130, in = 260;
  auto wb = random_e4m3_codes(size_t(out * in), 21);
  auto sb = random_e8m0(size_t(cdiv(out, 128) * cdiv(in, 128)), 22, 100, 150);
  Tensor w("base.w.weight", DType::F8_E4M3, {out, in}, wb);
  Tensor s8("base.w.scale", DType::F8_E8M0, {2, 3}, sb);
  Tensor s32("base.w.scale", DType::F32, {2, 3}, e8m0_as_f32(sb));
  Linear a = make_linear(w.info, &s8.info, out, in);
  Linear b = make_linear(w.info, &s32.info, out, in);
  EXPECT_TRUE(b.scale_f32);
  for (int64_t r = 0; r < 2; ++r)
    for (int64_t c = 0; c < 3; ++c) EXPECT_EQ(a.scale_at(r, c), b.scale_at(r, c));
  auto x = ref::randn(size_t(3 * in), 23);
  for (bool aq : {false, true}) {
    auto ya = run(a, x, 3, aq), yb = run(b, x, 3, aq);
    EXPECT_EQ(ya, yb);
    expect_close(yb, ref_matmul(ref_dequant_fp8(wb, sb, out, in), out, in, x, 3, aq), "fp8 f32 scale");
  }
}

TEST(LinearFp8, NonPowerOfTwoF32ScaleRejectedNamingTensor) {
  const int64_t out = 64, in = 64;
  Tensor w("layers.3.ffn.shared.w2.weight", DType::F8_E4M3, {out, in}, random_e4m3_codes(64 * 64, 1));
  for (float bad : {0.75f, 3.0f, 0.0f, -0.5f, NAN, INFINITY}) {
    Tensor s("layers.3.ffn.shared.w2.scale", DType::F32, {1, 1}, floats_to_bytes({bad}));
    const std::string msg = error_of([&] { make_linear(w.info, &s.info, out, in); });
    EXPECT_CONTAINS(msg, "layers.3.ffn.shared.w2.scale");
    EXPECT_CONTAINS(msg, "power of two");
  }
  // A subnormal power of two is still a power of two.
  Tensor ok("x.scale", DType::F32, {1, 1}, floats_to_bytes({std::ldexp(1.0f, -130)}));
  EXPECT_NO_THROW(make_linear(w.info, &ok.info, out, in));
}

// ------------------------------------------------------------------------------------------- FP4

TEST(LinearFp4, HandMade2x64NibbleOrderAndScaleIndexing) {
  // Row 0 element k has code (k % 16); row 1 element k has code (15 − k % 16), so every nibble position
  // carries a different value. Per-row, per-32-block scales: row 0: 2^0, 2^1; row 1: 2^-1, 2^3.
  const int64_t out = 2, in = 64;
  std::vector<uint8_t> wb(static_cast<size_t>(out * in / 2));
  auto code = [](int64_t o, int64_t k) { return uint8_t(o == 0 ? k % 16 : 15 - k % 16); };
  for (int64_t o = 0; o < out; ++o)
    for (int64_t k = 0; k < in; k += 2)
      wb[size_t(o * 32 + k / 2)] = uint8_t(code(o, k) | (code(o, k + 1) << 4));  // low nibble = even index
  const std::vector<uint8_t> sb = {127, 128, 126, 130};
  Tensor w("experts.0.w1.weight", DType::I8, {out, in / 2}, wb);
  Tensor s("experts.0.w1.scale", DType::F8_E8M0, {out, in / 32}, sb);
  Linear L = make_linear(w.info, &s.info, out, in);
  EXPECT_EQ(L.fmt, Linear::Format::FP4);
  static const float mag[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
  auto value = [&](int64_t o, int64_t k) {
    const uint8_t c = code(o, k);
    const float v = (c & 8) ? -mag[c & 7] : mag[c & 7];
    const float sc[2][2] = {{1.0f, 2.0f}, {0.5f, 8.0f}};
    return v * sc[o][k / 32];
  };
  // x = identity rows: y[s, o] = W[o, s].
  std::vector<float> x(size_t(in * in), 0.0f);
  for (int64_t i = 0; i < in; ++i) x[size_t(i * in + i)] = 1.0f;
  auto y = run(L, x, in, false);
  for (int64_t k = 0; k < in; ++k)
    for (int64_t o = 0; o < out; ++o) EXPECT_EQ(y[size_t(k * out + o)], value(o, k)) << "W[" << o << "][" << k << "]";
  // Spot values written out by hand: row 0, k = 1 → code 1 → 0.5 · 2^0; k = 33 → code 1 → 0.5 · 2^1;
  // row 1, k = 0 → code 15 → −6 · 2^-1; k = 62 → code 1 → 0.5 · 2^3.
  EXPECT_EQ(y[size_t(1 * out + 0)], 0.5f);
  EXPECT_EQ(y[size_t(33 * out + 0)], 1.0f);
  EXPECT_EQ(y[size_t(0 * out + 1)], -3.0f);
  EXPECT_EQ(y[size_t(62 * out + 1)], 4.0f);
  EXPECT_EQ(y[size_t(8 * out + 0)], -0.0f);  // code 8 = −0
}

TEST(LinearFp4, RandomVsReferenceE8M0AndF32Scales) {
  const int64_t out = 200, in = 320;
  auto wb = random_bytes(size_t(out * in / 2), 31);
  auto sb = random_e8m0(size_t(out * in / 32), 32, 118, 128);
  const auto W = ref_dequant_fp4(wb, sb, out, in);
  for (bool f32 : {false, true}) {
    Tensor w("ffn.experts.7.w3.weight", DType::I8, {out, in / 2}, wb);
    Tensor s("ffn.experts.7.w3.scale", f32 ? DType::F32 : DType::F8_E8M0, {out, in / 32}, f32 ? e8m0_as_f32(sb) : sb);
    Linear L = make_linear(w.info, &s.info, out, in);
    for (int64_t S : {int64_t(1), int64_t(2), int64_t(3), int64_t(5), int64_t(9)}) {
      auto x = ref::randn(size_t(S * in), 200 + uint32_t(S), 0.7);
      for (int64_t i = 5; i < S * in; i += 97) x[size_t(i)] *= 25.0f;
      for (bool aq : {false, true}) {
        auto y = run(L, x, S, aq);
        expect_close(y, ref_matmul(W, out, in, x, S, aq), "fp4 S=" + std::to_string(S) + " aq=" + std::to_string(aq));
      }
    }
  }
  // U8 weights are accepted as packed FP4 too.
  Tensor wu("u8.weight", DType::U8, {out, in / 2}, wb);
  Tensor su("u8.scale", DType::F8_E8M0, {out, in / 32}, sb);
  EXPECT_EQ(make_linear(wu.info, &su.info, out, in).fmt, Linear::Format::FP4);
}

// ------------------------------------------------------------------------------------------- BF16 / F32

TEST(LinearPlain, Bf16AndF32VsReferenceActQuantIgnored) {
  const int64_t out = 200, in = 300;
  auto wf = ref::randn(size_t(out * in), 41, 0.05);
  auto bf = floats_to_bf16_bytes(wf);
  std::vector<double> Wbf(static_cast<size_t>(out * in)), Wf(size_t(out * in));
  for (size_t i = 0; i < wf.size(); ++i) {
    uint16_t h;
    std::memcpy(&h, bf.data() + 2 * i, 2);
    Wbf[i] = ref::bf16_bits_to_float(h);
    Wf[i] = wf[i];
  }
  Tensor tb("wo_a.weight", DType::BF16, {out, in}, bf);
  Tensor tf("gate.weight", DType::F32, {out, in}, floats_to_bytes(wf));
  Linear Lb = make_linear(tb.info, nullptr, out, in);
  Linear Lf = make_linear(tf.info, nullptr, out, in);
  EXPECT_EQ(Lb.fmt, Linear::Format::BF16);
  EXPECT_EQ(Lf.fmt, Linear::Format::F32);
  EXPECT_FALSE(Lb.quantized());
  for (int64_t S : {int64_t(1), int64_t(2), int64_t(3), int64_t(5), int64_t(9)}) {
    auto x = ref::randn(size_t(S * in), 300 + uint32_t(S));
    for (int64_t i = 0; i < S * in; i += 77) x[size_t(i)] *= 50.0f;
    auto yb = run(Lb, x, S, false);
    expect_close(yb, ref_matmul(Wbf, out, in, x, S, false), "bf16");
    EXPECT_EQ(run(Lb, x, S, true), yb) << "act_quant applies only to FP8/FP4 weights";
    auto yf = run(Lf, x, S, false);
    expect_close(yf, ref_matmul(Wf, out, in, x, S, false), "f32");
    EXPECT_EQ(run(Lf, x, S, true), yf) << "act_quant applies only to FP8/FP4 weights";
  }
}

TEST(LinearPlain, ResultIndependentOfThreadCount) {
  const int64_t out = 333, in = 257;
  Tensor w("w.weight", DType::F8_E4M3, {out, in}, random_e4m3_codes(size_t(out * in), 51));
  Tensor s("w.scale", DType::F8_E8M0, {3, 3}, random_e8m0(9, 52));
  Linear L = make_linear(w.info, &s.info, out, in);
  auto x = ref::randn(size_t(7 * in), 53);
  std::vector<float> y1(static_cast<size_t>(7 * out)), y3(size_t(7 * out));
  ThreadPool p1(1), p3(3);
  matmul(L, x.data(), 7, y1.data(), true, p1);
  matmul(L, x.data(), 7, y3.data(), true, p3);
  EXPECT_EQ(y1, y3);
}

TEST(LinearPlain, BatchCompositionDoesNotChangeARow) {
  // architecture.md §9 rung 5: the same input row gives bit-identical outputs whatever else is in the batch.
  // 1184 = 37·32: FP8 blocks with a 32-wide tail, prefill K-chunks of 512, 512, 160; 30 tokens make
  // prefill token groups of 7 and 8 (decode runs them one by one).
  const int64_t out = 201, in = 1184;
  Tensor w8("a.weight", DType::F8_E4M3, {out, in}, random_e4m3_codes(size_t(out * in), 91));
  Tensor s8("a.scale", DType::F8_E8M0, {2, 10}, random_e8m0(20, 92));
  Tensor w4("b.weight", DType::I8, {out, in / 2}, random_bytes(size_t(out * in / 2), 93));
  Tensor s4("b.scale", DType::F8_E8M0, {out, in / 32}, random_e8m0(size_t(out * in / 32), 94, 120, 128));
  Tensor wb("c.weight", DType::BF16, {out, in}, floats_to_bf16_bytes(ref::randn(size_t(out * in), 95, 0.1)));
  Tensor wf("d.weight", DType::F32, {out, in}, floats_to_bytes(ref::randn(size_t(out * in), 96, 0.1)));
  const Linear Ls[] = {make_linear(w8.info, &s8.info, out, in), make_linear(w4.info, &s4.info, out, in),
                       make_linear(wb.info, nullptr, out, in), make_linear(wf.info, nullptr, out, in)};
  const int64_t S = 30;
  auto x = ref::randn(size_t(S * in), 97);
  for (const Linear& L : Ls) {
    for (bool aq : {false, true}) {
      auto all = run(L, x, S, aq);
      for (int64_t s = 0; s < S; ++s) {
        std::vector<float> xs(x.begin() + s * in, x.begin() + (s + 1) * in);
        auto one = run(L, xs, 1, aq);
        for (int64_t o = 0; o < out; ++o)
          ASSERT_EQ(one[size_t(o)], all[size_t(s * out + o)]) << "fmt=" << int(L.fmt) << " aq=" << aq << " s=" << s << " o=" << o;
      }
    }
  }
}

// ------------------------------------------------------------------------------------------- make_linear errors

TEST(MakeLinear, ShapeAndDtypeErrorsNameTheTensor) {
  auto codes = random_e4m3_codes(256 * 256, 61);
  auto e8 = random_e8m0(4, 62);
  // FP8 weight with the wrong shape.
  {
    Tensor w("layers.0.attn.wq_a.weight", DType::F8_E4M3, {128, 256}, codes);
    Tensor s("layers.0.attn.wq_a.scale", DType::F8_E8M0, {1, 2}, e8);
    auto msg = error_of([&] { make_linear(w.info, &s.info, 256, 128); });
    EXPECT_CONTAINS(msg, "layers.0.attn.wq_a.weight");
    EXPECT_CONTAINS(msg, "[128, 256]");
    EXPECT_CONTAINS(msg, "shape");
  }
  // FP8 weight without its scale.
  {
    Tensor w("layers.1.attn.wkv.weight", DType::F8_E4M3, {128, 256}, codes);
    auto msg = error_of([&] { make_linear(w.info, nullptr, 128, 256); });
    EXPECT_CONTAINS(msg, "layers.1.attn.wkv.weight");
    EXPECT_CONTAINS(msg, "scale");
  }
  // Scale with the wrong shape ([1, 1] for a [128, 256] weight that needs [1, 2]).
  {
    Tensor w("a.weight", DType::F8_E4M3, {128, 256}, codes);
    Tensor s("a.scale", DType::F8_E8M0, {1, 1}, e8);
    auto msg = error_of([&] { make_linear(w.info, &s.info, 128, 256); });
    EXPECT_CONTAINS(msg, "a.scale");
    EXPECT_CONTAINS(msg, "[1, 2]");
  }
  // Scale with an unsupported dtype.
  {
    Tensor w("b.weight", DType::F8_E4M3, {128, 256}, codes);
    Tensor s("b.scale", DType::BF16, {1, 2}, std::vector<uint8_t>(4, 0x3f));
    auto msg = error_of([&] { make_linear(w.info, &s.info, 128, 256); });
    EXPECT_CONTAINS(msg, "b.scale");
    EXPECT_CONTAINS(msg, "BF16");
  }
  // FP4 with in not a multiple of 32.
  {
    Tensor w("c.weight", DType::I8, {4, 24}, std::vector<uint8_t>(96, 0x21));
    Tensor s("c.scale", DType::F8_E8M0, {4, 1}, std::vector<uint8_t>(4, 127));
    auto msg = error_of([&] { make_linear(w.info, &s.info, 4, 48); });
    EXPECT_CONTAINS(msg, "c.weight");
    EXPECT_CONTAINS(msg, "FP4");
  }
  // FP4 with a packed shape that is not [out, in/2].
  {
    Tensor w("d.weight", DType::I8, {4, 64}, std::vector<uint8_t>(256, 0x21));
    Tensor s("d.scale", DType::F8_E8M0, {4, 2}, std::vector<uint8_t>(8, 127));
    auto msg = error_of([&] { make_linear(w.info, &s.info, 4, 64); });
    EXPECT_CONTAINS(msg, "d.weight");
    EXPECT_CONTAINS(msg, "[4, 32]");
  }
  // FP4 scale with the wrong shape.
  {
    Tensor w("e.weight", DType::I8, {4, 32}, std::vector<uint8_t>(128, 0x21));
    Tensor s("e.scale", DType::F8_E8M0, {1, 2}, std::vector<uint8_t>(2, 127));
    auto msg = error_of([&] { make_linear(w.info, &s.info, 4, 64); });
    EXPECT_CONTAINS(msg, "e.scale");
    EXPECT_CONTAINS(msg, "[4, 2]");
  }
  // Unsupported weight dtype.
  {
    Tensor w("f.weight", DType::I32, {4, 4}, std::vector<uint8_t>(64, 0));
    auto msg = error_of([&] { make_linear(w.info, nullptr, 4, 4); });
    EXPECT_CONTAINS(msg, "f.weight");
    EXPECT_CONTAINS(msg, "I32");
  }
  // BF16 / F32 with the wrong shape, including a 1-D and a 3-D tensor.
  {
    Tensor w("g.weight", DType::BF16, {4, 8}, std::vector<uint8_t>(64, 0));
    auto msg = error_of([&] { make_linear(w.info, nullptr, 8, 4); });
    EXPECT_CONTAINS(msg, "g.weight");
    EXPECT_CONTAINS(msg, "[4, 8]");
    Tensor v("h.weight", DType::F32, {32}, std::vector<uint8_t>(128, 0));
    EXPECT_CONTAINS(error_of([&] { make_linear(v.info, nullptr, 4, 8); }), "h.weight");
    Tensor t3("i.weight", DType::F32, {2, 2, 8}, std::vector<uint8_t>(128, 0));
    EXPECT_CONTAINS(error_of([&] { make_linear(t3.info, nullptr, 4, 8); }), "i.weight");
  }
}

TEST(MakeLinear, WeightBytes) {
  Tensor w("w.weight", DType::F8_E4M3, {200, 300}, random_e4m3_codes(60000, 71));
  Tensor s("w.scale", DType::F8_E8M0, {2, 3}, random_e8m0(6, 72));
  EXPECT_EQ(make_linear(w.info, &s.info, 200, 300).weight_bytes(), 60000 + 6);
  Tensor w4("v.weight", DType::I8, {10, 32}, random_bytes(320, 73));
  Tensor s4("v.scale", DType::F8_E8M0, {10, 2}, random_e8m0(20, 74));
  EXPECT_EQ(make_linear(w4.info, &s4.info, 10, 64).weight_bytes(), 320 + 20);
  Tensor wb("b.weight", DType::BF16, {10, 64}, std::vector<uint8_t>(1280, 0x3c));
  EXPECT_EQ(make_linear(wb.info, nullptr, 10, 64).weight_bytes(), 1280);
}

// ------------------------------------------------------------------------------------------- grouped (wo_a)

TEST(MatmulGrouped, BandGReadsInputSliceG) {
  // architecture.md §4.15: rows g·L … (g+1)·L−1 of W belong to group g and read x[g·in … (g+1)·in).
  for (int64_t Lo : {int64_t(40), int64_t(41)}) {  // odd bands: a row pair straddles two groups
  const int G = 3;
  const int64_t in = 96, out = G * Lo;
  auto wf = ref::randn(size_t(out * in), 81, 0.1);
  Tensor tb("layers.0.attn.wo_a.weight", DType::BF16, {out, in}, floats_to_bf16_bytes(wf));
  Tensor tf("wf.weight", DType::F32, {out, in}, floats_to_bytes(wf));
  auto fp8codes = random_e4m3_codes(size_t(out * in), 82);
  auto fp8s = random_e8m0(1, 83);
  Tensor t8("w8.weight", DType::F8_E4M3, {out, in}, fp8codes);
  Tensor s8("w8.scale", DType::F8_E8M0, {1, 1}, fp8s);
  for (int which = 0; which < 3; ++which) {
    Linear L = which == 0 ? make_linear(tb.info, nullptr, out, in)
             : which == 1 ? make_linear(tf.info, nullptr, out, in)
                          : make_linear(t8.info, &s8.info, out, in);
    std::vector<double> W(static_cast<size_t>(out * in));
    for (int64_t i = 0; i < out * in; ++i) {
      if (which == 0) W[size_t(i)] = ref::bf16_bits_to_float(ref::bf16_encode(wf[size_t(i)]));
      else if (which == 1) W[size_t(i)] = wf[size_t(i)];
      else W[size_t(i)] = ref::e4m3_decode(fp8codes[size_t(i)]) * ref::e8m0_decode(fp8s[0]);
    }
    for (int64_t S : {int64_t(1), int64_t(3), int64_t(4), int64_t(6)}) {
      auto x = ref::randn(size_t(S * G * in), 90 + uint32_t(S) + uint32_t(which));
      for (int64_t i = 0; i < S * G * in; i += 61) x[size_t(i)] *= 40.0f;  // no act quant: outliers survive
      std::vector<float> y(size_t(S * out), NAN);
      matmul_grouped(L, G, x.data(), S, y.data(), ThreadPool::global());
      for (int64_t s = 0; s < S; ++s)
        for (int64_t o = 0; o < out; ++o) {
          const int64_t g = o / Lo;
          double acc = 0, mag = 0;
          for (int64_t k = 0; k < in; ++k) {
            const double p = W[size_t(o * in + k)] * double(x[size_t(s * G * in + g * in + k)]);
            acc += p;
            mag += std::fabs(p);
          }
          ASSERT_NEAR(double(y[size_t(s * out + o)]), acc, 1e-5 * mag)
              << "Lo=" << Lo << " which=" << which << " s=" << s << " o=" << o;
        }
    }
  }
  }
}

// ------------------------------------------------------------------------------------------- real checkpoint tensors

TEST(LinearFixture, TinyFlashFp8AndFp4TensorsVsReference) {
  const std::string shard = std::string(DSV4_TEST_DATA) + "/fixtures/tiny-flash/model-00001-of-00002.safetensors";
  if (!std::filesystem::exists(shard)) GTEST_SKIP() << "fixture not present: " << shard;
  SafetensorsFile f(shard);
  auto& T = f.tensors();
  struct Case { const char* w; const char* s; int64_t out, in; bool fp4; };
  for (Case c : {Case{"layers.1.attn.wq_a.weight", "layers.1.attn.wq_a.scale", 128, 256, false},
                 Case{"layers.0.ffn.experts.0.w1.weight", "layers.0.ffn.experts.0.w1.scale", 128, 256, true}}) {
    ASSERT_TRUE(T.count(c.w) && T.count(c.s)) << c.w;
    const TensorInfo& w = T.at(c.w);
    const TensorInfo& s = T.at(c.s);
    Linear L = make_linear(w, &s, c.out, c.in);
    EXPECT_EQ(L.fmt, c.fp4 ? Linear::Format::FP4 : Linear::Format::FP8);
    std::vector<uint8_t> wb(w.data, w.data + w.nbytes), sb(s.data, s.data + s.nbytes);
    auto W = c.fp4 ? ref_dequant_fp4(wb, sb, c.out, c.in) : ref_dequant_fp8(wb, sb, c.out, c.in);
    auto x = ref::randn(size_t(3 * c.in), 99);
    for (bool aq : {false, true}) expect_close(run(L, x, 3, aq), ref_matmul(W, c.out, c.in, x, 3, aq), c.w);
  }
}
