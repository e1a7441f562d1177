#pragma once
// 64-bit FNV-1a: the identity of a model and the checksums of cache files. Not cryptographic; it
// catches damage and mismatches, not an adversary who can write the cache directory.
#include <cstddef>
#include <cstdint>

namespace dsv4 {

inline constexpr uint64_t kFnvBasis = 0xcbf29ce484222325ull;

inline uint64_t fnv1a(uint64_t h, const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}

}  // namespace dsv4
