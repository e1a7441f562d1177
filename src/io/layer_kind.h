#pragma once
// The attention kind of a layer (architecture.md §2.3). config.json states it only as the layer's
// compression ratio; code decides by kind and keeps the ratio for the arithmetic (group size, pooling).
#include <optional>

namespace dsv4 {

// A new kind (V4.1's CSA2, say) joins here with its ratio and helper answers; the parser then accepts it.
enum class LayerKind {
  SlidingWindow,  // ratio 0: the window only (also every MTP/DSpark stage)
  CSA,            // ratio 4: overlapping compressor; the lightning indexer picks top-k entries
  HCA,            // ratio 128: non-overlapping compressor; every compressed entry is read
};

// The kind whose layers have compression ratio `ratio`; nullopt when no kind has it.
constexpr std::optional<LayerKind> layer_kind_of_ratio(int ratio) {
  switch (ratio) {
    case 0: return LayerKind::SlidingWindow;
    case 4: return LayerKind::CSA;
    case 128: return LayerKind::HCA;
    default: return std::nullopt;
  }
}

constexpr int compress_ratio(LayerKind k) {
  switch (k) {
    case LayerKind::SlidingWindow: return 0;
    case LayerKind::CSA: return 4;
    case LayerKind::HCA: return 128;
  }
  return 0;
}

constexpr const char* layer_kind_name(LayerKind k) {
  switch (k) {
    case LayerKind::SlidingWindow: return "SWA";
    case LayerKind::CSA: return "CSA";
    case LayerKind::HCA: return "HCA";
  }
  return "?";
}

// Compressed kinds also use the compressed RoPE table (architecture.md §2.4).
constexpr bool has_compressor(LayerKind k) { return k != LayerKind::SlidingWindow; }
constexpr bool has_indexer(LayerKind k) { return k == LayerKind::CSA; }
// Each group of the compressor pools over itself and the previous group (architecture.md §4.11).
constexpr bool overlapping_compressor(LayerKind k) { return k == LayerKind::CSA; }
// Queries read every compressed entry instead of the indexer's picks.
constexpr bool reads_all_compressed(LayerKind k) { return has_compressor(k) && !has_indexer(k); }

}  // namespace dsv4
