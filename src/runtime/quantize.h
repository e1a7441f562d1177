#pragma once
// `dsv4 quantize`: rewrites a checkpoint folder with its routed experts (and optionally the dense FP8
// linears) in a ggml block format (core/block_format.h), in the same safetensors layout: one output shard per
// input shard, each re-encoded tensor U8 with its format named in the shard header, its scale tensor dropped,
// config.json noting the formats. Rows are dequantised exactly, then encoded, weighted by an importance matrix
// when one is given (runtime/imatrix.h).
#include <cstdint>
#include <functional>
#include <string>

#include "core/block_format.h"

namespace dsv4 {

struct QuantizeOptions {
  BlockFormat experts = BlockFormat::None;  // routed experts; None keeps them
  BlockFormat dense = BlockFormat::None;    // the other quantised linears (attention, shared expert, ...)
  std::string imatrix;                      // file from `dsv4 imatrix`, or empty
};

struct QuantizeReport {
  int64_t tensors_encoded = 0, tensors_fallback = 0, tensors_copied = 0;
  uint64_t bytes_in = 0, bytes_out = 0;
  int64_t imatrix_rows_weighted = 0;  // tensors whose encoding used importance weights
};

// The format a tensor of `cols` columns gets when `want` does not divide it (K-quants need 256-wide rows):
// the nearest 32-wide format, or None (kept as it is) when 32 does not divide it either.
BlockFormat block_fallback(BlockFormat want, int64_t cols);

QuantizeReport quantize_checkpoint(const std::string& in_dir, const std::string& out_dir, const QuantizeOptions& o,
                                   const std::function<void(uint64_t done, uint64_t total)>& progress = {});

}  // namespace dsv4
