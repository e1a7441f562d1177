#pragma once
// A linear layer viewed in place over weight bytes, in any of the V4 weight formats, and the matrix
// products over it. y[s, o] = sum_k W[o, k] x[s, k], accumulated in fp32. Building a view from a
// checkpoint tensor is model work (model/weights.h: make_linear).
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/block_format.h"
#include "core/dtype.h"

namespace dsv4 {

class ThreadPool;

struct Linear {
  enum class Format { F32, BF16, FP8, FP4, Block };
  Format fmt = Format::F32;
  BlockFormat block = BlockFormat::None;  // Format::Block: rows of ggml blocks (core/block_format.h), no scale tensor
  int64_t out = 0, in = 0;
  const uint8_t* w = nullptr;
  const uint8_t* scale = nullptr;  // FP8: [ceil(out/128), ceil(in/128)]; FP4: [out, in/32]
  bool scale_f32 = false;          // Base checkpoints may store power-of-two scales as F32
  int64_t scale_cols = 0;
  // The activation round trip of the numerics contract applies beyond FP8/FP4 storage: to block formats
  // requantised from them, and to BF16/F32 weights a converter (GGUF) dequantised from them; not to a
  // block-quantised embedding or head, which the official model keeps in BF16 (model/weights.cpp decides).
  bool act_quant_site = false;

  bool quantized() const { return fmt == Format::FP8 || fmt == Format::FP4 || fmt == Format::Block; }
  bool empty() const { return w == nullptr; }
  float scale_at(int64_t r, int64_t c) const {
    if (scale_f32) {
      float f;
      std::memcpy(&f, scale + 4 * (r * scale_cols + c), 4);
      return f;
    }
    return e8m0_to_f32(scale[r * scale_cols + c]);
  }
  // Writes the exactly dequantised row o (in floats).
  void dequant_row(int64_t o, float* dst) const;
  int64_t weight_bytes() const;  // the weights and their scales
  int64_t scale_bytes() const;
};

// Sees the input activations of every product (before any round trip), for `dsv4 imatrix`. Products run
// on several threads at once: observe() must be thread-safe. Unset, it costs one load per product.
struct MatmulObserver {
  virtual ~MatmulObserver() = default;
  // S rows of W.in activations, xstride floats apart.
  virtual void observe(const Linear& W, const float* x, int64_t S, int64_t xstride) = 0;
};
void set_matmul_observer(MatmulObserver* o);  // nullptr to stop

// y[S, out] = x[S, in] · Wᵀ. With act_quant, each row of x goes through the FP8 1x128 round-trip
// first (only for FP8/FP4 weights, as the numerics contract says); the round-tripped activations
// are then exact in BF16 and the product runs on BF16 dot products where that path is selected
// (kernels/matmul_bf16.h: available()), otherwise on fp32 FMAs.
void matmul(const Linear& W, const float* x, int64_t S, float* y, bool act_quant, ThreadPool& pool);
// ya = x · Aᵀ and yb = x · Bᵀ over the same activations (w1 and w3 of an expert): one round trip.
void matmul_pair(const Linear& A, const Linear& B, const float* x, int64_t S, float* ya, float* yb, bool act_quant,
                 ThreadPool& pool);
// The scratch these products take from the calling thread's arena (core/arena.h) for S rows of x:
// reserving it lets a caller whose S varies below a bound keep every later take in place.
size_t matmul_scratch_bytes(const Linear& W, int64_t S, bool act_quant, int groups = 1);
size_t matmul_pair_scratch_bytes(const Linear& A, const Linear& B, int64_t S, bool act_quant);

}  // namespace dsv4

namespace dsv4 {
// Grouped product: W's rows split into `groups` equal bands; band g reads input slice g of x.
// x is [S, groups*W.in], y is [S, W.out]. No activation quantisation (wo_a runs as a plain GEMM).
void matmul_grouped(const Linear& W, int groups, const float* x, int64_t S, float* y, ThreadPool& pool);
}  // namespace dsv4
