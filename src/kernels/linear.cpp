#include "kernels/linear.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "core/arena.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/blocks.h"
#include "kernels/matmul_bf16.h"
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
    case Format::Block:
      blocks::dequant_row(block, w + o * block_row_bytes(block, in), in, dst);
      break;
  }
}

int64_t Linear::scale_bytes() const {
  const int64_t entry = scale_f32 ? 4 : 1;
  switch (fmt) {
    case Format::FP8: return ((out + 127) / 128) * scale_cols * entry;
    case Format::FP4: return out * scale_cols * entry;
    default: return 0;
  }
}

int64_t Linear::weight_bytes() const {
  switch (fmt) {
    case Format::F32: return out * in * 4;
    case Format::BF16: return out * in * 2;
    case Format::FP8: return out * in + scale_bytes();
    case Format::FP4: return out * in / 2 + scale_bytes();
    case Format::Block: return out * block_row_bytes(block, in);
  }
  return 0;
}

namespace {

// y[s, o] for all rows of W; row o reads the activation slice of its group (groups = 1: the whole row).
// Block formats read natural-order activations in place; the others a padded copy in kernel order.
void matmul_ordered(const Linear& W, int groups, const float* x, int64_t S, float* y, ThreadPool& pool) {
  const int64_t in = W.in, out = W.out, band = out / groups;
  const bool block = W.fmt == Linear::Format::Block;
  const int64_t kp = block ? in : int64_t(simd::padded(in));
  // Otherwise one padded kernel-order row per (token, group), in the caller thread's scratch.
  Arena& arena = thread_arena();
  Arena::Frame frame(arena);
  const float* xo = x;
  if (!block) {
    float* o = arena.take<float>(size_t(S * groups * kp));
    for (int64_t s = 0; s < S; ++s)
      for (int g = 0; g < groups; ++g) simd::order_activation(W, x + (s * groups + g) * in, o + (s * groups + g) * kp);
    xo = o;
  }
  // Decode streams each weight once; prefill re-reads a unit of rows from L2 per token group. Either
  // way weights are dequantised in registers, never stored.
  pool.parallel_for(size_t(out), [&](size_t o0, size_t o1) {
    // Runs of rows within one group share their activations.
    for (int64_t a = int64_t(o0); a < int64_t(o1);) {
      const int64_t g = a / band, b = std::min<int64_t>(int64_t(o1), (g + 1) * band);
      if (block) blocks::dot_rows(W.block, W.w, in, a, b, xo + g * kp, groups * kp, S, y, out);
      else simd::dot_rows_fused(W, a, b, xo + g * kp, groups * kp, S, kp, y, out);
      a = b;
    }
  }, 32);
}

bool rounds_activations(const Linear& W) {
  return W.fmt == Linear::Format::FP8 || W.fmt == Linear::Format::FP4 || W.act_quant_site;
}

// The FP8 1x128 round trip of x in `arena`, or x itself when W is not quantised or act_quant is off.
const float* quantized_activations(const Linear& W, const float* x, int64_t S, bool act_quant, Arena& arena) {
  if (!act_quant || !rounds_activations(W)) return x;
  float* buf = arena.take<float>(size_t(S * W.in));
  std::memcpy(buf, x, size_t(S * W.in) * 4);
  for (int64_t s = 0; s < S; ++s) fp8_roundtrip(buf + s * W.in, size_t(W.in), 128);
  return buf;
}

size_t quantized_bytes(const Linear& W, int64_t S, bool act_quant) {
  return act_quant && rounds_activations(W) ? Arena::bytes_for<float>(size_t(S * W.in)) : 0;
}

// Round-tripped activations are exact in BF16, so covered formats multiply on BF16 dot products.
bool takes_bf16(const Linear& W, bool act_quant) {
  return act_quant && rounds_activations(W) && bf16dot::available() && bf16dot::covers(W);
}

// BF16 rows of x in W's kernel order. The row stride is 64 bytes past a multiple of 64: a token
// group's rows a multiple of 4 KiB apart would share L1 sets.
int64_t bf16_stride(const Linear& W) { return (W.in + 31) / 32 * 32 + 32; }
struct Bf16Activations {
  const uint16_t* data = nullptr;
  int64_t stride = 0;
  Bf16Activations(const Linear& W, const float* x, int64_t S, Arena& arena) : stride(bf16_stride(W)) {
    uint16_t* p = arena.take<uint16_t>(size_t(S * stride));  // 64-byte aligned
    for (int64_t s = 0; s < S; ++s) {
      bf16dot::order_activation(W, x + s * W.in, p + s * stride);
      std::fill(p + s * stride + W.in, p + (s + 1) * stride, uint16_t(0));
    }
    data = p;
  }
  static size_t bytes(const Linear& W, int64_t S) { return Arena::bytes_for<uint16_t>(size_t(S * bf16_stride(W))); }
};

}  // namespace

namespace {
std::atomic<MatmulObserver*> g_observer{nullptr};
void observe(const Linear& W, const float* x, int64_t S, int64_t xstride) {
  if (MatmulObserver* o = g_observer.load(std::memory_order_relaxed)) o->observe(W, x, S, xstride);
}
}  // namespace

void set_matmul_observer(MatmulObserver* o) { g_observer.store(o); }

void matmul(const Linear& W, const float* x, int64_t S, float* y, bool act_quant, ThreadPool& pool) {
  observe(W, x, S, W.in);
  Arena& arena = thread_arena();
  Arena::Frame frame(arena);
  const float* xa = quantized_activations(W, x, S, act_quant, arena);
  if (!takes_bf16(W, act_quant)) return matmul_ordered(W, 1, xa, S, y, pool);
  const Bf16Activations xb(W, xa, S, arena);
  pool.parallel_for(size_t(W.out), [&](size_t o0, size_t o1) {
    bf16dot::rows(W, int64_t(o0), int64_t(o1), xb.data, xb.stride, S, y, W.out);
  }, 32);
}

void matmul_pair(const Linear& A, const Linear& B, const float* x, int64_t S, float* ya, float* yb, bool act_quant,
                 ThreadPool& pool) {
  if (A.fmt != B.fmt || A.in != B.in || !takes_bf16(A, act_quant) || !takes_bf16(B, act_quant)) {
    matmul(A, x, S, ya, act_quant, pool);  // each its own round trip: the same bits, a small cost
    matmul(B, x, S, yb, act_quant, pool);
    return;
  }
  observe(A, x, S, A.in);
  observe(B, x, S, B.in);
  Arena& arena = thread_arena();
  Arena::Frame frame(arena);
  const Bf16Activations xb(A, quantized_activations(A, x, S, act_quant, arena), S, arena);
  // One pass over A's rows then B's: one barrier instead of two.
  pool.parallel_for(size_t(A.out + B.out), [&](size_t o0, size_t o1) {
    const int64_t a0 = std::min<int64_t>(int64_t(o0), A.out), a1 = std::min<int64_t>(int64_t(o1), A.out);
    if (a0 < a1) bf16dot::rows(A, a0, a1, xb.data, xb.stride, S, ya, A.out);
    const int64_t b0 = std::max<int64_t>(int64_t(o0), A.out) - A.out, b1 = std::max<int64_t>(int64_t(o1), A.out) - A.out;
    if (b0 < b1) bf16dot::rows(B, b0, b1, xb.data, xb.stride, S, yb, B.out);
  }, 32);
}

size_t matmul_scratch_bytes(const Linear& W, int64_t S, bool act_quant, int groups) {
  if (W.fmt == Linear::Format::Block) return quantized_bytes(W, S, act_quant);
  const size_t ordered = takes_bf16(W, act_quant) ? Bf16Activations::bytes(W, S)
                                                  : Arena::bytes_for<float>(size_t(S * groups) * simd::padded(W.in));
  return quantized_bytes(W, S, act_quant) + ordered;
}

size_t matmul_pair_scratch_bytes(const Linear& A, const Linear& B, int64_t S, bool act_quant) {
  if (A.fmt != B.fmt || A.in != B.in || !takes_bf16(A, act_quant) || !takes_bf16(B, act_quant))
    return std::max(matmul_scratch_bytes(A, S, act_quant), matmul_scratch_bytes(B, S, act_quant));
  return quantized_bytes(A, S, act_quant) + Bf16Activations::bytes(A, S);
}

}  // namespace dsv4

namespace dsv4 {
void matmul_grouped(const Linear& W, int groups, const float* x, int64_t S, float* y, ThreadPool& pool) {
  if (W.out % groups) fail("grouped linear: {} rows do not split into {} groups", W.out, groups);
  for (int g = 0; g < groups; ++g) observe(W, x + g * W.in, S, groups * W.in);
  matmul_ordered(W, groups, x, S, y, pool);
}
}  // namespace dsv4
