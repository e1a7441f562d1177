#pragma once
// Rows of latent KV in their compact form (architecture.md §5.3): the nope dims as e4m3 codes with one E8M0
// scale per 64, the RoPE dims as fp32. Lossless because the current revision already rounds the
// nope dims onto that grid; with the round-trip off, rows are kept in fp32 instead.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace dsv4 {

class KVRows {
 public:
  KVRows() = default;
  KVRows(int dim, int nope, bool compact) : dim_(dim), nope_(nope), compact_(compact) {}
  // Encodes row i from x (dim floats). In compact mode x's nope dims are FP8-rounded on the way in,
  // so put() is the KV round-trip itself.
  void put(size_t i, const float* x);
  void get(size_t i, float* out) const;
  void append(const float* x) {
    resize(size_ + 1);
    put(size_ - 1, x);
  }
  void resize(size_t rows);
  size_t size() const { return size_; }
  size_t row_bytes() const;
  size_t bytes() const { return data_.size(); }

 private:
  int dim_ = 0, nope_ = 0;
  bool compact_ = true;
  size_t size_ = 0;
  std::vector<uint8_t> data_;
};

}  // namespace dsv4
