// Compact latent-KV rows (architecture.md §5.3): e4m3 codes with one E8M0 scale per 64 nope dims, fp32
// RoPE dims. Encoding a row is the KV FP8 round-trip (§3.2 rule 2) itself.
#include "model/kv_cache.h"

#include <cstring>

#include "kernels/quant.h"

namespace dsv4 {

size_t KVRows::row_bytes() const {
  if (!compact_) return size_t(dim_) * 4;
  return size_t(nope_) + size_t(nope_ / 64) + size_t(dim_ - nope_) * 4;
}

void KVRows::resize(size_t rows) {
  size_ = rows;
  data_.resize(rows * row_bytes());
}

void KVRows::put(size_t i, const float* x) {
  uint8_t* r = data_.data() + i * row_bytes();
  if (!compact_) {
    std::memcpy(r, x, size_t(dim_) * 4);
    return;
  }
  const int nb = nope_ / 64;
  for (int b = 0; b < nb; ++b) r[nope_ + b] = fp8_encode_block(x + 64 * b, 64, r + 64 * b);
  std::memcpy(r + nope_ + nb, x + nope_, size_t(dim_ - nope_) * 4);
}

void KVRows::get(size_t i, float* out) const {
  const uint8_t* r = data_.data() + i * row_bytes();
  if (!compact_) {
    std::memcpy(out, r, size_t(dim_) * 4);
    return;
  }
  const int nb = nope_ / 64;
  for (int b = 0; b < nb; ++b) fp8_decode_block(r + 64 * b, r[nope_ + b], 64, out + 64 * b);
  std::memcpy(out + nope_, r + nope_ + nb, size_t(dim_ - nope_) * 4);
}

}  // namespace dsv4
