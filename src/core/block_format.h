#pragma once
// Block-quantised weight formats (the ggml layouts, so GGUF files map in place): a row of K weights is
// K / block_elems() blocks of block_bytes() each, rows stored one after another.
#include <cstdint>
#include <string_view>

namespace dsv4 {

enum class BlockFormat : uint8_t { None, Q8_0, Q4_0, MXFP4, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ2_XXS };

struct BlockFormatInfo {
  BlockFormat fmt;
  std::string_view name;  // lower case, as `dsv4 quantize` and the safetensors metadata spell it
  int elems;              // weights per block
  int bytes;              // bytes per block
  int ggml_type;          // the GGUF tensor type id
};

// One row per format except None, in enum order.
inline constexpr BlockFormatInfo kBlockFormats[] = {
    {BlockFormat::Q8_0, "q8_0", 32, 34, 8},     {BlockFormat::Q4_0, "q4_0", 32, 18, 2},
    {BlockFormat::MXFP4, "mxfp4", 32, 17, 39},  {BlockFormat::Q2_K, "q2_k", 256, 84, 10},
    {BlockFormat::Q3_K, "q3_k", 256, 110, 11},  {BlockFormat::Q4_K, "q4_k", 256, 144, 12},
    {BlockFormat::Q5_K, "q5_k", 256, 176, 13},  {BlockFormat::Q6_K, "q6_k", 256, 210, 14},
    {BlockFormat::IQ2_XXS, "iq2_xxs", 256, 66, 16},
};

inline const BlockFormatInfo& block_info(BlockFormat f) { return kBlockFormats[int(f) - 1]; }
inline std::string_view block_name(BlockFormat f) { return f == BlockFormat::None ? "none" : block_info(f).name; }
// Bytes of one row of k weights; k must be a multiple of the block size.
inline int64_t block_row_bytes(BlockFormat f, int64_t k) { return k / block_info(f).elems * block_info(f).bytes; }
inline double block_bits_per_weight(BlockFormat f) { return 8.0 * block_info(f).bytes / block_info(f).elems; }
// Case-insensitive name lookup; false for unknown names.
inline bool parse_block_format(std::string_view s, BlockFormat& out) {
  for (const auto& e : kBlockFormats) {
    if (e.name.size() != s.size()) continue;
    bool same = true;
    for (size_t i = 0; i < s.size() && same; ++i) {
      char c = s[i];
      if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
      same = c == e.name[i];
    }
    if (same) {
      out = e.fmt;
      return true;
    }
  }
  return false;
}
inline bool block_format_from_ggml(int type, BlockFormat& out) {
  for (const auto& e : kBlockFormats)
    if (e.ggml_type == type) {
      out = e.fmt;
      return true;
    }
  return false;
}

}  // namespace dsv4
