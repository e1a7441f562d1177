#include "kernels/linear.h"

#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/matmul_simd.h"
#include "kernels/quant.h"

namespace dsv4 {

void Linear::dequant_row(int64_t o, float* dst) const {
  switch (fmt) {
    case Format::F32:
      std::memcpy(dst, w + 4 * o * in, size_t(4 * in));
      break;
    case Format::BF16: {
      auto* p = reinterpret_cast<const uint16_t*>(w) + o * in;
      for (int64_t k = 0; k < in; ++k) dst[k] = bf16_to_f32(p[k]);
      break;
    }
    case Format::FP8: {
      const uint8_t* p = w + o * in;
      for (int64_t kb = 0; kb < in; kb += 128) {
        float s = scale_at(o / 128, kb / 128);
        int64_t e = std::min<int64_t>(in, kb + 128);
        for (int64_t k = kb; k < e; ++k) dst[k] = e4m3_to_f32(p[k]) * s;
      }
      break;
    }
    case Format::FP4: {
      const uint8_t* p = w + o * (in / 2);
      for (int64_t kb = 0; kb < in; kb += 32) {
        float s = scale_at(o, kb / 32);
        for (int64_t k = kb; k < kb + 32; k += 2) {
          uint8_t b = p[k / 2];  // low nibble = even element
          dst[k] = e2m1_to_f32(b & 15) * s;
          dst[k + 1] = e2m1_to_f32(b >> 4) * s;
        }
      }
      break;
    }
  }
}

int64_t Linear::weight_bytes() const {
  switch (fmt) {
    case Format::F32: return out * in * 4;
    case Format::BF16: return out * in * 2;
    case Format::FP8: return out * in + ((out + 127) / 128) * scale_cols * (scale_f32 ? 4 : 1);
    case Format::FP4: return out * in / 2 + out * scale_cols * (scale_f32 ? 4 : 1);
  }
  return 0;
}

Linear make_linear(const TensorInfo& wt, const TensorInfo* sc, int64_t out, int64_t in) {
  Linear L;
  L.out = out;
  L.in = in;
  L.w = wt.data;
  auto shape_is = [](const TensorInfo& t, int64_t a, int64_t b) {
    return t.shape.size() == 2 && t.shape[0] == a && t.shape[1] == b;
  };
  auto need_scale = [&](int64_t r, int64_t c) {
    if (!sc) fail("tensor '{}' is {} but its scale tensor is missing", wt.name, dtype_name(wt.dtype));
    if (sc->dtype != DType::F8_E8M0 && sc->dtype != DType::F32)
      fail("scale tensor '{}' has dtype {}, expected F8_E8M0 or F32", sc->name, dtype_name(sc->dtype));
    if (!shape_is(*sc, r, c))
      fail("scale tensor '{}' has shape {}, expected [{}, {}]", sc->name, sc->shape_str(), r, c);
    L.scale = sc->data;
    L.scale_f32 = sc->dtype == DType::F32;
    L.scale_cols = c;
  };
  switch (wt.dtype) {
    case DType::F32:
    case DType::BF16:
      L.fmt = wt.dtype == DType::F32 ? Linear::Format::F32 : Linear::Format::BF16;
      if (!shape_is(wt, out, in))
        fail("tensor '{}' has shape {}, expected [{}, {}]", wt.name, wt.shape_str(), out, in);
      break;
    case DType::F8_E4M3:
      L.fmt = Linear::Format::FP8;
      if (!shape_is(wt, out, in))
        fail("tensor '{}' has shape {}, expected [{}, {}]", wt.name, wt.shape_str(), out, in);
      need_scale((out + 127) / 128, (in + 127) / 128);
      break;
    case DType::I8:
    case DType::U8:
      L.fmt = Linear::Format::FP4;
      if (in % 32 || !shape_is(wt, out, in / 2))
        fail("tensor '{}' (packed FP4) has shape {}, expected [{}, {}]", wt.name, wt.shape_str(), out, in / 2);
      need_scale(out, in / 32);
      break;
    default:
      fail("tensor '{}' has dtype {}, not a supported linear weight format", wt.name, dtype_name(wt.dtype));
  }
  if (L.scale_f32)
    for (int64_t i = 0; i < sc->numel(); ++i) {
      float f;
      std::memcpy(&f, sc->data + 4 * i, 4);
      int e;
      if (!(f > 0) || std::frexp(f, &e) != 0.5f)
        fail("scale tensor '{}' holds {} at index {}, not a power of two", sc->name, f, i);
    }
  return L;
}

namespace {

// y[s, o] for all rows of W; row o reads the activation slice of its group (groups = 1: the whole row).
void matmul_ordered(const Linear& W, int groups, const float* x, int64_t S, float* y, ThreadPool& pool) {
  const int64_t in = W.in, out = W.out, band = out / groups;
  const int64_t kp = int64_t(simd::padded(in));
  // Activations in kernel order, one padded row per (token, group).
  std::vector<float> xo(size_t(S * groups * kp));
  for (int64_t s = 0; s < S; ++s)
    for (int g = 0; g < groups; ++g)
      simd::order_activation(W, x + (s * groups + g) * in, xo.data() + (s * groups + g) * kp);
  // Decode streams each weight once; prefill re-reads a unit of rows from L2 per token group. Either
  // way weights are dequantised in registers, never stored.
  pool.parallel_for(size_t(out), [&](size_t o0, size_t o1) {
    // Runs of rows within one group share their activations.
    for (int64_t a = int64_t(o0); a < int64_t(o1);) {
      const int64_t g = a / band, b = std::min<int64_t>(int64_t(o1), (g + 1) * band);
      simd::dot_rows_fused(W, a, b, xo.data() + g * kp, groups * kp, S, kp, y, out);
      a = b;
    }
  }, 32);
}

}  // namespace

const float* quantized_activations(const Linear& W, const float* x, int64_t S, bool act_quant,
                                   std::vector<float>& buf) {
  if (!act_quant || !W.quantized()) return x;
  buf.assign(x, x + S * W.in);
  for (int64_t s = 0; s < S; ++s) fp8_roundtrip(buf.data() + s * W.in, size_t(W.in), 128);
  return buf.data();
}

void matmul(const Linear& W, const float* x, int64_t S, float* y, bool act_quant, ThreadPool& pool) {
  std::vector<float> xq;
  matmul_ordered(W, 1, quantized_activations(W, x, S, act_quant, xq), S, y, pool);
}

}  // namespace dsv4

namespace dsv4 {
void matmul_grouped(const Linear& W, int groups, const float* x, int64_t S, float* y, ThreadPool& pool) {
  if (W.out % groups) fail("grouped linear: {} rows do not split into {} groups", W.out, groups);
  matmul_ordered(W, groups, x, S, y, pool);
}
}  // namespace dsv4
