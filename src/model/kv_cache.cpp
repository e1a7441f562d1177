// Compact latent-KV rows (architecture.md §5.3): e4m3 codes with one E8M0 scale per 64 nope dims, fp32
// RoPE dims. Encoding a row is the KV FP8 round-trip (§3.2 rule 2) itself.
#include "model/kv_cache.h"

#include <cstring>

#include "core/error.h"
#include "kernels/quant.h"

namespace dsv4 {

void RowJournal::start(size_t limit) {
  active_ = true;
  limit_ = limit;
  idx_.clear();
  saved_.clear();
  seen_.clear();
}

void RowJournal::stop() { *this = RowJournal(); }

void RowJournal::save_slow(size_t i, const void* row, size_t row_bytes) {
  DSV4_CHECK(idx_.empty() || row_bytes == row_bytes_, "row journal: rows of {} and {} bytes mixed", row_bytes_,
             row_bytes);
  row_bytes_ = row_bytes;
  if (i >= seen_.size()) seen_.resize(i + 1, false);
  seen_[i] = true;
  idx_.push_back(i);
  const auto* b = static_cast<const uint8_t*>(row);
  saved_.insert(saved_.end(), b, b + row_bytes);
}

void RowJournal::restore(void* base) {
  auto* b = static_cast<uint8_t*>(base);
  for (size_t k = 0; k < idx_.size(); ++k)
    std::memcpy(b + idx_[k] * row_bytes_, saved_.data() + k * row_bytes_, row_bytes_);
  idx_.clear();
  saved_.clear();
  seen_.clear();
}

size_t KVRows::row_bytes() const {
  if (!compact_) return size_t(dim_) * 4;
  return size_t(nope_) + size_t(nope_ / 64) + size_t(dim_ - nope_) * 4;
}

void KVRows::resize(size_t rows) {
  const size_t rb = row_bytes();
  for (size_t i = rows; i < size_ && undo_.active(); ++i) undo_.save(i, data_.data() + i * rb, rb);
  size_ = rows;
  data_.resize(rows * rb);
}

void KVRows::assign_encoded(const uint8_t* p, size_t rows) {
  DSV4_CHECK(!undo_.active(), "KV rows replaced while marked");
  size_ = rows;
  data_.assign(p, p + rows * row_bytes());
}

void KVRows::rollback() {
  DSV4_CHECK(undo_.active(), "KV rows rolled back without a mark");
  size_ = undo_.limit();
  data_.resize(size_ * row_bytes());
  undo_.restore(data_.data());
}

void KVRows::put(size_t i, const float* x) {
  uint8_t* r = data_.data() + i * row_bytes();
  undo_.save(i, r, row_bytes());
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
